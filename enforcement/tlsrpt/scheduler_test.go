package tlsrpt

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"sealgate/enforcement"
	"sealgate/enforcement/store"
)

// timerReq is one wait a scheduler asked of its fakeClock.
type timerReq struct {
	who string
	d   time.Duration
	at  time.Time // the fake time when it was asked
	c   chan time.Time
}

// fakeClock is a Reporter.Now and Scheduler.After that never sleep: each
// wait is handed to the test on reqs, which moves the time on with fire.
type fakeClock struct {
	who  string
	reqs chan<- timerReq
	// stop, once closed, lets a scheduler's waits go unanswered
	// instead of blocking it (at the end of the test).
	stop chan struct{}

	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	select {
	case c.reqs <- timerReq{who: c.who, d: d, at: c.Now(), c: ch}:
	case <-c.stop:
	}
	return ch
}

// fire moves the clock to the end of the wait r and ends it.
func (c *fakeClock) fire(r timerReq) {
	c.mu.Lock()
	c.now = r.at.Add(r.d)
	now := c.now
	c.mu.Unlock()
	r.c <- now
}

// nextWait returns the next wait asked on reqs, failing the test when
// none comes (a scheduler stuck elsewhere).
func nextWait(t *testing.T, reqs <-chan timerReq) timerReq {
	t.Helper()
	select {
	case r := <-reqs:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("the scheduler asked for no wait")
		return timerReq{}
	}
}

// mailbox is a MailFunc that records each delivery attempt per address
// and fails the first failures[to] of them.
type mailbox struct {
	mu       sync.Mutex
	failures map[string]int
	tries    map[string][]time.Time
	// block, if set, holds every delivery until it is closed; started
	// is told of each delivery that waits on it.
	block   chan struct{}
	started chan string
	now     func() time.Time
}

var errMailbox = errors.New("mailbox: 451 try again later")

func (m *mailbox) Mail(ctx context.Context, from, to string, msg []byte) error {
	if m.block != nil {
		m.started <- to
		<-m.block
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.tries == nil {
		m.tries = map[string][]time.Time{}
	}
	var at time.Time
	if m.now != nil {
		at = m.now()
	}
	m.tries[to] = append(m.tries[to], at)
	if len(m.tries[to]) <= m.failures[to] {
		return errMailbox
	}
	return nil
}

func (m *mailbox) attempts(to string) []time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.tries[to])
}

func (m *mailbox) total() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, ts := range m.tries {
		n += len(ts)
	}
	return n
}

// schedDay is the UTC day whose reports the scheduler tests send; the
// tests start at 10:00 on it.
var schedDay = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

// schedStore is a store holding one session of example.test on
// schedDay, closed at the end of the test, and the channel of the waits
// the tests' schedulers ask for.
func schedStore(t *testing.T) (store.Store, chan timerReq) {
	st := openBolt(t, filepath.Join(t.TempDir(), "s.db"))
	t.Cleanup(func() { st.Close() })
	record(t, st, []enforcement.Attempt{{Time: schedDay.Add(time.Hour), Domain: "example.test", PolicyType: enforcement.PolicyTypeNone}})
	return st, make(chan timerReq)
}

// newFakeClock is the clock of scheduler who at 10:00 on schedDay.
func newFakeClock(who string, reqs chan<- timerReq) *fakeClock {
	return &fakeClock{who: who, reqs: reqs, stop: make(chan struct{}), now: schedDay.Add(10 * time.Hour)}
}

// newScheduler is a scheduler on st with the clock c, a fixed random
// offset after midnight, and a report record with the rua addresses.
func newScheduler(st store.Store, c *fakeClock, mb *mailbox, offset time.Duration, spreads *[]time.Duration, rua ...string) *Scheduler {
	record := "v=TLSRPTv1; rua="
	for i, a := range rua {
		if i > 0 {
			record += ","
		}
		record += "mailto:" + a
	}
	r := &Reporter{
		Store: st, Submitter: exampleSubmitter, From: "tlsrpt@mail.company-x.example",
		LookupTXT: func(ctx context.Context, name string) ([]string, error) {
			return []string{record}, nil
		},
		Mail: mb.Mail,
		Now:  c.Now,
	}
	var mu sync.Mutex
	return &Scheduler{Reporter: r, Owner: c.who, After: c.After, Rand: func(n time.Duration) time.Duration {
		mu.Lock()
		defer mu.Unlock()
		if spreads != nil {
			*spreads = append(*spreads, n)
		}
		return offset
	}}
}

// runScheduler runs s, whose clock is c, until the test ends.
func runScheduler(t *testing.T, s *Scheduler, c *fakeClock) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	t.Cleanup(func() {
		close(c.stop)
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after its context ended")
		}
	})
}

// TestSchedulerSendsAfterMidnight: started during a day, the scheduler
// first catches up on the day before (nothing to send here), then waits
// exactly until the next UTC midnight plus its random offset within the
// first hour; nothing is sent before, and when that wait ends the day's
// report goes out once, after which it waits for the next midnight.
func TestSchedulerSendsAfterMidnight(t *testing.T) {
	tests := []struct {
		name   string
		offset time.Duration
	}{
		{name: "at midnight", offset: 0},
		{name: "17 minutes after", offset: 17 * time.Minute},
		{name: "end of the hour", offset: time.Hour - time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, reqs := schedStore(t)
			c := newFakeClock("a", reqs)
			mb := &mailbox{now: c.Now}
			var spreads []time.Duration
			runScheduler(t, newScheduler(st, c, mb, tc.offset, &spreads, "tls@example.test"), c)

			// The day before, due long ago: no wait, nothing to send.
			if w := nextWait(t, reqs); w.d != 0 {
				t.Fatalf("first wait %v; want none (the day before is due)", w.d)
			} else {
				c.fire(w)
			}
			midnight := schedDay.Add(24 * time.Hour)
			w := nextWait(t, reqs)
			if got := w.at.Add(w.d); !got.Equal(midnight.Add(tc.offset)) {
				t.Fatalf("waits until %v; want midnight UTC + %v = %v", got, tc.offset, midnight.Add(tc.offset))
			}
			if n := mb.total(); n != 0 {
				t.Fatalf("%d reports sent before midnight", n)
			}
			c.fire(w)
			// The next wait is for the following midnight: the send is over.
			next := nextWait(t, reqs)
			if got := next.at.Add(next.d); !got.Equal(midnight.Add(24 * time.Hour).Add(tc.offset)) {
				t.Fatalf("then waits until %v; want the next midnight + %v", got, tc.offset)
			}
			tries := mb.attempts("tls@example.test")
			if len(tries) != 1 || !tries[0].Equal(midnight.Add(tc.offset)) {
				t.Fatalf("report sent at %v; want once at %v", tries, midnight.Add(tc.offset))
			}
			for _, n := range spreads {
				if n != time.Hour {
					t.Errorf("random offset drawn in [0, %v); want [0, 1h)", n)
				}
			}
			if len(spreads) < 2 {
				t.Errorf("%d random offsets drawn; want one per day", len(spreads))
			}
		})
	}
}

// TestSchedulerRetryBackoff: a failed delivery is retried after 1, 2, 4
// ... minutes, doubling up to an hour, and given up once the next retry
// would come 12 hours or more after the first try; a rua that already
// has the report is not sent it again while another is retried.
func TestSchedulerRetryBackoff(t *testing.T) {
	const ok, flaky = "ok@example.test", "flaky@example.test"
	m := time.Minute
	hours := func(n int) []time.Duration {
		var out []time.Duration
		for range n {
			out = append(out, time.Hour)
		}
		return out
	}
	tests := []struct {
		name     string
		failures int
		// wantWaits are the retry delays in order.
		wantWaits []time.Duration
		wantSent  bool
	}{
		{name: "delivered at once", failures: 0, wantSent: true},
		{name: "delivered at the third try", failures: 2, wantWaits: []time.Duration{m, 2 * m}, wantSent: true},
		{name: "delivered after an hour-long wait", failures: 7,
			wantWaits: []time.Duration{m, 2 * m, 4 * m, 8 * m, 16 * m, 32 * m, time.Hour}, wantSent: true},
		// 1+2+4+8+16+32 minutes, then ten hours end at 11h03; one hour
		// more would reach 12h03, past the 12 hours.
		{name: "never delivered: given up after 12 hours", failures: 1000,
			wantWaits: append([]time.Duration{m, 2 * m, 4 * m, 8 * m, 16 * m, 32 * m}, hours(10)...)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			st, reqs := schedStore(t)
			c := newFakeClock("a", reqs)
			mb := &mailbox{now: c.Now, failures: map[string]int{flaky: tc.failures}}
			const offset = 20 * time.Minute
			runScheduler(t, newScheduler(st, c, mb, offset, nil, ok, flaky), c)
			c.fire(nextWait(t, reqs)) // the day before: nothing
			c.fire(nextWait(t, reqs)) // until midnight + offset
			first := schedDay.Add(24 * time.Hour).Add(offset)
			var waits []time.Duration
			for {
				w := nextWait(t, reqs)
				if w.d > time.Hour {
					// The wait for the next day: retries are over.
					break
				}
				waits = append(waits, w.d)
				c.fire(w)
			}
			if !slices.Equal(waits, tc.wantWaits) {
				t.Fatalf("retry delays %v; want %v", waits, tc.wantWaits)
			}
			tries := mb.attempts(flaky)
			if len(tries) != len(tc.wantWaits)+1 {
				t.Fatalf("%d tries to the failing rua; want %d", len(tries), len(tc.wantWaits)+1)
			}
			if last := tries[len(tries)-1]; last.Sub(first) >= 12*time.Hour {
				t.Fatalf("last try %v after the first; want less than 12h", last.Sub(first))
			}
			if got := mb.attempts(ok); len(got) != 1 || !got[0].Equal(first) {
				t.Fatalf("the rua that took the report at once got it at %v; want once at %v", got, first)
			}
			out, err := newScheduler(st, c, &mailbox{failures: map[string]int{flaky: 1}}, 0, nil, ok, flaky).Reporter.Send(context.Background(), schedDay, nil)
			if err != nil {
				t.Fatal(err)
			}
			wantFlaky := StatusFailed
			if tc.wantSent {
				wantFlaky = StatusAlreadySent
			}
			want := []Outcome{{Domain: "example.test", RUA: "mailto:" + ok, Status: StatusAlreadySent}, {Domain: "example.test", RUA: "mailto:" + flaky, Status: wantFlaky}}
			for i := range out {
				out[i].Error = ""
			}
			if !slices.Equal(out, want) {
				t.Fatalf("marks after the retries: %+v; want %+v", out, want)
			}
		})
	}
}

// TestSchedulersShareLock: two schedulers on one store wake at the same
// time; the one that takes the store's lock sends while the other finds
// the lock held, waits, and then finds the report marked as sent: the
// collector gets it once.
func TestSchedulersShareLock(t *testing.T) {
	st, reqs := schedStore(t)
	mb := &mailbox{block: make(chan struct{}), started: make(chan string, 2)}
	var unblock sync.Once
	release := func() { unblock.Do(func() { close(mb.block) }) }
	clocks := map[string]*fakeClock{}
	const offset = 5 * time.Minute
	for _, who := range []string{"a", "b"} {
		c := newFakeClock(who, reqs)
		clocks[who] = c
		runScheduler(t, newScheduler(st, c, mb, offset, nil, "tls@example.test"), c)
	}
	// Cleanups run last first: deliveries end before Run is awaited.
	t.Cleanup(release)
	// Each catches up on the day before (nothing to send; one may find
	// the other holding the lock and retry), then waits for midnight +
	// offset; both wake then.
	midnight := map[string]timerReq{}
	for len(midnight) < 2 {
		w := nextWait(t, reqs)
		if w.d > time.Hour {
			midnight[w.who] = w
			continue
		}
		clocks[w.who].fire(w)
	}
	for _, w := range midnight {
		if due := schedDay.Add(24 * time.Hour).Add(offset); !w.at.Add(w.d).Equal(due) {
			t.Fatalf("%s waits until %v; want %v", w.who, w.at.Add(w.d), due)
		}
		clocks[w.who].fire(w)
	}
	// One holds the lock and is delivering (held up by the mailbox);
	// the other must not deliver but wait its backoff.
	var sender string
	select {
	case <-mb.started:
		// The first delivery; sender is whoever does not ask for the
		// backoff below.
	case <-time.After(10 * time.Second):
		t.Fatal("no scheduler delivered")
	}
	var loser timerReq
	select {
	case loser = <-reqs:
	case to := <-mb.started:
		t.Fatalf("both schedulers deliver to %s at once: the lock did not hold", to)
	case <-time.After(10 * time.Second):
		t.Fatal("the scheduler without the lock asked for no wait")
	}
	if loser.d != time.Minute {
		t.Fatalf("%s waits %v while the other sends; want the 1m backoff", loser.who, loser.d)
	}
	sender = "a"
	if loser.who == "a" {
		sender = "b"
	}
	release()
	if w := nextWait(t, reqs); w.who != sender || w.d <= time.Hour {
		t.Fatalf("after its delivery %s waits %v; want %s to wait for the next day", w.who, w.d, sender)
	}
	// The loser retries: the lock is free, the report marked as sent.
	clocks[loser.who].fire(loser)
	if w := nextWait(t, reqs); w.who != loser.who || w.d <= time.Hour {
		t.Fatalf("after its retry %s waits %v; want it to wait for the next day", w.who, w.d)
	}
	if n := mb.total(); n != 1 {
		t.Fatalf("the report was delivered %d times; want once", n)
	}
}
