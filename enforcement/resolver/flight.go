package resolver

import (
	"context"
	"sync"

	"github.com/miekg/dns"
)

// flights lets concurrent identical questions share one exchange. Unlike
// golang.org/x/sync/singleflight, the shared exchange ends as soon as
// every caller waiting for it has given up (its context ended), so that no
// exchange outlives its callers, and a caller that joins later never
// inherits the cancellation of one that left. The zero value is ready.
type flights struct {
	mu sync.Mutex
	m  map[question]*flight
}

type flight struct {
	done    chan struct{}
	msg     *dns.Msg
	err     error
	waiters int
	cancel  context.CancelFunc
}

// do returns the outcome of fn for q, running fn once for the callers
// asking at the same time. fn runs under a context that carries the values
// of the first caller's ctx but not its deadline, and that ends when every
// caller has given up; a caller whose ctx ends gets ctx.Err().
func (f *flights) do(ctx context.Context, q question, fn func(ctx context.Context) (*dns.Msg, error)) (*dns.Msg, error) {
	f.mu.Lock()
	if f.m == nil {
		f.m = make(map[question]*flight)
	}
	fl, ok := f.m[q]
	if !ok {
		fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		fl = &flight{done: make(chan struct{}), cancel: cancel}
		f.m[q] = fl
		go func() {
			defer close(fl.done)
			defer cancel()
			msg, err := fn(fctx)
			f.mu.Lock()
			fl.msg, fl.err = msg, err
			f.forgetLocked(q, fl)
			f.mu.Unlock()
		}()
	}
	fl.waiters++
	f.mu.Unlock()

	select {
	case <-fl.done:
		return fl.msg, fl.err
	case <-ctx.Done():
		f.mu.Lock()
		fl.waiters--
		if fl.waiters == 0 {
			fl.cancel()
			f.forgetLocked(q, fl)
		}
		f.mu.Unlock()
		return nil, ctx.Err()
	}
}

// forgetLocked removes fl from the flights in progress, unless another
// flight has taken its place. Callers hold f.mu.
func (f *flights) forgetLocked(q question, fl *flight) {
	if f.m[q] == fl {
		delete(f.m, q)
	}
}
