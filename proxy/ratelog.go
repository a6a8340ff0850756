package proxy

import (
	"context"
	"log/slog"
	"sync"
	"time"
)

// rateLog writes warnings about refusals without letting a flood flood
// the log: at most one line per key (reason and address) per interval.
// The next line of a key says how many of its lines were held back, and
// once per interval a summary line counts all lines held back since the
// previous summary.
type rateLog struct {
	every time.Duration
	now   func() time.Time

	mu          sync.Mutex
	seen        *lru[string, rateEntry]
	held        int // lines held back since the last summary
	lastSummary time.Time
}

type rateEntry struct {
	last time.Time
	held int
}

func newRateLog(every time.Duration, size int, now func() time.Time) *rateLog {
	return &rateLog{every: every, now: now, seen: newLRU[string, rateEntry](size), lastSummary: now()}
}

// warn logs msg with args to log, unless a line of key was logged less
// than an interval ago.
func (r *rateLog) warn(log *slog.Logger, key, msg string, args ...any) {
	r.mu.Lock()
	now := r.now()
	e, ok := r.seen.get(key)
	write := !ok || now.Sub(e.last) >= r.every
	held := e.held
	if write {
		e = rateEntry{last: now}
	} else {
		e.held++
		r.held++
	}
	r.seen.put(key, e)
	summary := 0
	if r.held > 0 && now.Sub(r.lastSummary) >= r.every {
		summary, r.held, r.lastSummary = r.held, 0, now
	}
	r.mu.Unlock()

	if write {
		if held > 0 {
			args = append(args, "suppressed", held)
		}
		log.Warn(msg, args...)
	}
	if summary > 0 {
		log.LogAttrs(context.Background(), slog.LevelWarn, "refusals not logged", slog.Int("count", summary), slog.Duration("since", r.every))
	}
}
