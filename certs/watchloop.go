package certs

import (
	"context"
	"errors"
	"time"

	"github.com/fsnotify/fsnotify"
)

// WatchLoop is the event loop of a watch on files that are reloaded as a
// whole (key pairs here, the local policy file): once a burst of events
// that relevant accepts has been quiet for delay, it calls reload; an
// overflow of the watch's queue, which may have lost such events, counts
// as one. Errors of the watch are passed to logErr. With ticks set, it
// calls tick on each of them. It returns nil when ctx is done and an
// error naming what (e.g. "certs") when the watch closes under it.
func WatchLoop(ctx context.Context, what string, fsw *fsnotify.Watcher, delay time.Duration,
	relevant func(fsnotify.Event) bool, reload func(), logErr func(error),
	ticks <-chan time.Time, tick func()) error {
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	closed := errors.New(what + ": watch closed")
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-fsw.Events:
			if !ok {
				return closed
			}
			if relevant(ev) {
				timer.Reset(delay)
			}
		case err, ok := <-fsw.Errors:
			if !ok {
				return closed
			}
			logErr(err)
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				timer.Reset(delay)
			}
		case <-timer.C:
			reload()
		case <-ticks:
			tick()
		}
	}
}
