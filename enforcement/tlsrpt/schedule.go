package tlsrpt

import (
	"context"
	"math/rand/v2"
	"time"
)

// Scheduler sends each day's reports once the UTC day is over, at a
// random time within Spread after midnight (RFC 8460 §4.1 asks senders
// not to send all at midnight), retrying failed deliveries with a
// doubling backoff for RetryFor. With replicas sharing the store, the
// replica holding the lock "tlsrpt-send" sends; the others find the
// reports marked sent.
type Scheduler struct {
	Reporter *Reporter
	// Owner names this replica in the lock (required).
	Owner string
	// Spread bounds the random delay after midnight; 1h if 0.
	Spread time.Duration
	// RetryFor bounds the retries of a day's reports; 12h if 0.
	RetryFor time.Duration
	// Backoff is the first retry delay; 1m if 0. It doubles up to 1h.
	Backoff time.Duration
	// Keep is how long aggregates are kept; 14 days if 0.
	Keep time.Duration
	// Rand returns a delay in [0, n); a uniform random one if nil.
	Rand func(n time.Duration) time.Duration
	// After waits like time.After; time.After if nil.
	After func(d time.Duration) <-chan time.Time
}

// LockName is the store lock held while reports are sent.
const LockName = "tlsrpt-send"

func or(v, def time.Duration) time.Duration {
	if v > 0 {
		return v
	}
	return def
}

func (s *Scheduler) wait(ctx context.Context, d time.Duration) bool {
	after := s.After
	if after == nil {
		after = time.After
	}
	if d < 0 {
		d = 0
	}
	select {
	case <-ctx.Done():
		return false
	case <-after(d):
		return true
	}
}

func (s *Scheduler) random(n time.Duration) time.Duration {
	if s.Rand != nil {
		return s.Rand(n)
	}
	return rand.N(n)
}

// Run sends the reports of each finished day until ctx ends. It starts
// with yesterday, whose reports may not have gone out (a restart); marks
// in the store keep a report from being sent twice.
func (s *Scheduler) Run(ctx context.Context) {
	r := s.Reporter
	day := dayStart(r.now()).Add(-24 * time.Hour)
	for {
		due := day.Add(24 * time.Hour).Add(s.random(or(s.Spread, time.Hour)))
		if !s.wait(ctx, due.Sub(r.now())) {
			return
		}
		s.SendDay(ctx, day, due.Add(or(s.RetryFor, 12*time.Hour)))
		if err := r.Prune(ctx, r.now().Add(-or(s.Keep, 14*24*time.Hour))); err != nil {
			r.log().Warn("TLS-RPT aggregates not pruned", "error", err)
		}
		day = day.Add(24 * time.Hour)
	}
}

// SendDay sends day's reports under the lock, retrying until every rua
// has its report or until deadline.
func (s *Scheduler) SendDay(ctx context.Context, day, deadline time.Time) {
	r := s.Reporter
	backoff := or(s.Backoff, time.Minute)
	for {
		again := true
		if held, err := r.Store.TryLock(ctx, LockName, s.Owner, time.Hour); err != nil {
			r.log().Warn("TLS-RPT send lock unavailable", "error", err)
		} else if held {
			out, err := r.Send(ctx, day, nil)
			if err != nil {
				r.log().Warn("TLS reports not sent", "day", day.Format(DayFormat), "error", err)
			}
			again = err != nil || pending(out)
			r.Store.Unlock(context.WithoutCancel(ctx), LockName, s.Owner)
		}
		if !again || !r.now().Add(backoff).Before(deadline) || !s.wait(ctx, backoff) {
			return
		}
		backoff = min(2*backoff, time.Hour)
	}
}
