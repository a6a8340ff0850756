package tlsrpt

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"sealgate/enforcement"
	"sealgate/enforcement/store"
)

// Store key layout: the aggregates of one UTC day and policy domain are
// the counter bucket "tlsrpt/<YYYY-MM-DD>/<domain>"; each field is the
// JSON of a key (one line of failure details, or one policy's successes).
const bucketPrefix = "tlsrpt/"

// DayFormat is the form of a day in buckets and on the command line.
const DayFormat = "2006-01-02"

func bucketOf(day time.Time, domain string) string {
	return bucketPrefix + day.UTC().Format(DayFormat) + "/" + domain
}

// key is what one aggregate counts. A success leaves the connection
// fields empty: the summary counts successes per policy only.
type key struct {
	Type     string   `json:"t"`
	Policy   []string `json:"p,omitempty"`
	MX       []string `json:"m,omitempty"`
	Result   string   `json:"r,omitempty"`
	Sending  string   `json:"s,omitempty"`
	Receive  string   `json:"i,omitempty"`
	MXHost   string   `json:"h,omitempty"`
	Reason   string   `json:"c,omitempty"`
	Failures bool     `json:"f,omitempty"`
}

// maxReason bounds the failure-reason-code kept per aggregate.
const maxReason = 256

func keyOf(a enforcement.Attempt) key {
	k := key{Type: a.PolicyType, Policy: a.Policy, MX: a.MXHosts, Result: a.Result}
	if k.Type == "" {
		k.Type = enforcement.PolicyTypeNone
	}
	if a.Result == "" {
		return k
	}
	k.Failures = true
	k.Sending, k.Receive = addrString(a.SendingIP), addrString(a.ReceivingIP)
	k.MXHost = strings.ToLower(strings.TrimSuffix(a.MXHost, "."))
	k.Reason = a.Reason
	if len(k.Reason) > maxReason {
		k.Reason = k.Reason[:maxReason]
	}
	return k
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.Unmap().String()
}

func (k key) field() string {
	b, _ := json.Marshal(k)
	return string(b)
}

// Recorder collects attempts and adds them to the store in batches. It
// never blocks the caller: when its buffer is full the attempt is dropped
// and counted (Dropped). Run must be running for anything to be stored.
type Recorder struct {
	// Store keeps the aggregates (required).
	Store store.Store
	// Now is the clock of attempts without a time; time.Now if nil.
	Now func() time.Time
	// Buffer is how many attempts may wait; 4096 if 0.
	Buffer int
	// Interval is how often batches are written; 1s if 0.
	Interval time.Duration
	// Counted, if set, is called for every attempt accepted, with its
	// result type ("" for a success), for metrics.
	Counted func(result string)
	// Log reports store failures; slog.Default if nil.
	Log *slog.Logger

	once    sync.Once
	ch      chan enforcement.Attempt
	flush   chan chan struct{}
	dropped atomic.Uint64
}

var _ enforcement.AttemptRecorder = (*Recorder)(nil)

func (r *Recorder) init() {
	r.once.Do(func() {
		n := r.Buffer
		if n <= 0 {
			n = 4096
		}
		r.ch = make(chan enforcement.Attempt, n)
		r.flush = make(chan chan struct{})
	})
}

// RecordAttempt implements enforcement.AttemptRecorder without blocking.
func (r *Recorder) RecordAttempt(a enforcement.Attempt) {
	r.init()
	if a.Time.IsZero() {
		a.Time = r.now()
	}
	select {
	case r.ch <- a:
		if r.Counted != nil {
			r.Counted(a.Result)
		}
	default:
		r.dropped.Add(1)
	}
}

// Dropped is how many attempts were lost because the buffer was full.
func (r *Recorder) Dropped() uint64 { return r.dropped.Load() }

func (r *Recorder) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

// Run writes batches until ctx ends, then writes what is left.
func (r *Recorder) Run(ctx context.Context) {
	r.init()
	iv := r.Interval
	if iv <= 0 {
		iv = time.Second
	}
	t := time.NewTicker(iv)
	defer t.Stop()
	batch := map[string]map[string]int64{}
	for {
		select {
		case a := <-r.ch:
			add(batch, a)
		case <-t.C:
			r.write(context.WithoutCancel(ctx), batch)
		case done := <-r.flush:
			r.drain(batch)
			r.write(context.WithoutCancel(ctx), batch)
			close(done)
		case <-ctx.Done():
			r.drain(batch)
			wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			r.write(wctx, batch)
			cancel()
			return
		}
	}
}

// Flush writes every attempt recorded so far to the store, for reports
// of the current day. Without Run it waits until ctx ends.
func (r *Recorder) Flush(ctx context.Context) error {
	r.init()
	done := make(chan struct{})
	select {
	case r.flush <- done:
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *Recorder) drain(batch map[string]map[string]int64) {
	for {
		select {
		case a := <-r.ch:
			add(batch, a)
		default:
			return
		}
	}
}

func add(batch map[string]map[string]int64, a enforcement.Attempt) {
	domain := store.NormalizeDomain(a.Domain)
	if domain == "" {
		return
	}
	b := bucketOf(a.Time, domain)
	if batch[b] == nil {
		batch[b] = map[string]int64{}
	}
	batch[b][keyOf(a).field()]++
}

// write stores the batch; a bucket that cannot be written is kept for
// the next round.
func (r *Recorder) write(ctx context.Context, batch map[string]map[string]int64) {
	for b, m := range batch {
		if err := r.Store.AddCounters(ctx, b, m); err != nil {
			log := r.Log
			if log == nil {
				log = slog.Default()
			}
			log.Warn("TLS-RPT aggregates not stored; retrying", "bucket", b, "error", err)
			continue
		}
		delete(batch, b)
	}
}
