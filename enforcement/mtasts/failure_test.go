package mtasts

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fetchMode is how scriptFetcher answers.
type fetchMode int

const (
	fetchRefused fetchMode = iota // fails at once
	fetchHangs                    // a policy host that accepts and never answers
	fetchServes                   // serves enforceBody
)

// scriptFetcher is a PolicyFetcher whose behaviour the test switches.
type scriptFetcher struct {
	mu    sync.Mutex
	mode  fetchMode
	calls atomic.Int32
}

func (f *scriptFetcher) set(mode fetchMode) {
	f.mu.Lock()
	f.mode = mode
	f.mu.Unlock()
}

func (f *scriptFetcher) Fetch(ctx context.Context, domain string) (*Policy, error) {
	f.calls.Add(1)
	f.mu.Lock()
	mode := f.mode
	f.mu.Unlock()
	switch mode {
	case fetchHangs:
		<-ctx.Done()
		return nil, &FetchError{Domain: domain, Kind: KindFetch, Err: ctx.Err()}
	case fetchServes:
		return ParsePolicy([]byte(enforceBody))
	}
	return nil, &FetchError{Domain: domain, Kind: KindFetch, Err: errors.New("connection refused")}
}

// noWait bounds a message that must not wait for a fetch, or whose fetch
// fails at once. Where it matters the policy host hangs and FetchTimeout
// is an hour, so a message that waits would wait an hour: the bound only
// has to tell the two apart, with room for a loaded machine running the
// race detector, where a fixed second or two is not.
const noWait = 15 * time.Second

// policyWithin calls m.Policy and fails the test if it takes longer than
// noWait: a message that waits for a fetch.
func policyWithin(t *testing.T, m *Manager, domain string) Lookup {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel) // releases a hung fetch when the test has failed
	ch := make(chan Lookup, 1)
	go func() {
		l, err := m.Policy(ctx, domain)
		if err != nil {
			t.Errorf("Policy: %v", err)
		}
		ch <- l
	}()
	select {
	case l := <-ch:
		return l
	case <-time.After(noWait):
		t.Fatalf("Policy(%s) waited more than %v", domain, noWait)
		return Lookup{}
	}
}

func TestManagerRemembersFirstContactFailure(t *testing.T) {
	m, n, c, _ := newManager(t)
	f := &scriptFetcher{}
	m.Fetcher = f
	m.FetchTimeout = time.Hour // a message that waits hangs the test
	t.Cleanup(m.waitBackground)
	n.set("example.test", "1", "")

	// First contact, policy host down: the message waits for the fetch
	// (here it fails at once) and proceeds as if there were no policy.
	l := policyWithin(t, m, "example.test")
	if l.Status != StatusNone || l.Policy != nil || l.Problem == nil {
		t.Fatalf("first contact, host down: %+v, want no policy with a problem", l)
	}
	if got := f.calls.Load(); got != 1 {
		t.Fatalf("%d fetches at first contact, want 1", got)
	}

	// The host now hangs: the next message must not wait for it.
	f.set(fetchHangs)
	l = policyWithin(t, m, "example.test")
	if l.Status != StatusNone || l.Policy != nil {
		t.Fatalf("second message: %+v, want no policy", l)
	}
	var fe *FetchError
	if !errors.As(l.Problem, &fe) || fe.Kind != KindFetch {
		t.Errorf("second message: problem %v, want the remembered *FetchError", l.Problem)
	}
	if got := f.calls.Load(); got != 1 {
		t.Fatalf("%d fetches, want no new fetch before the retry interval", got)
	}

	// After the retry interval a message starts one background fetch and
	// still does not wait; its success replaces the failure.
	f.set(fetchServes)
	c.t = c.t.Add(DefaultRetryInterval)
	l = policyWithin(t, m, "example.test")
	if l.Status != StatusNone || l.Policy != nil || l.Problem == nil {
		t.Fatalf("message starting the background fetch: %+v, want no policy yet", l)
	}
	m.waitBackground()
	if got := f.calls.Load(); got != 2 {
		t.Fatalf("%d fetches, want one background fetch", got)
	}
	l = policyWithin(t, m, "example.test")
	if l.Status != StatusCached || l.Policy == nil || l.Policy.Mode != ModeEnforce || l.Problem != nil {
		t.Fatalf("after a successful background fetch: %+v, want the cached enforce policy", l)
	}
}

func TestManagerFailureKeyedByID(t *testing.T) {
	m, n, c, _ := newManager(t)
	f := &scriptFetcher{}
	m.Fetcher = f
	m.FetchTimeout = time.Hour
	t.Cleanup(m.waitBackground)
	n.set("example.test", "1", "")
	policyWithin(t, m, "example.test") // fails, remembered for id 1

	// A new id is fetched at once (and waited for).
	n.set("example.test", "2", "")
	f.set(fetchServes)
	l := policyWithin(t, m, "example.test")
	if l.Status != StatusFetched || l.Policy == nil {
		t.Fatalf("new id: %+v, want the policy fetched at once", l)
	}

	// A cached policy and a new id whose fetch fails: the cached policy
	// stays in force and the next message does not wait either.
	n.set("example.test", "3", "")
	f.set(fetchRefused)
	l = policyWithin(t, m, "example.test")
	if l.Status != StatusStale || l.Policy == nil || l.Problem == nil {
		t.Fatalf("id 3, host down: %+v, want the cached policy, stale", l)
	}
	f.set(fetchHangs)
	l = policyWithin(t, m, "example.test")
	if l.Status != StatusStale || l.Policy == nil || l.Policy.Mode != ModeEnforce {
		t.Fatalf("id 3 again: %+v, want the cached policy at once", l)
	}

	// Once the failure is forgotten, a message waits again (bounded).
	f.set(fetchRefused)
	before := f.calls.Load()
	c.t = c.t.Add(DefaultFailureTTL + time.Second)
	policyWithin(t, m, "example.test")
	if f.calls.Load() != before+1 {
		t.Fatalf("after the failure TTL: %d fetches, want 1", f.calls.Load()-before)
	}
}

func TestManagerFailureMemoryBounded(t *testing.T) {
	m, n, c, _ := newManager(t)
	f := &scriptFetcher{}
	m.Fetcher = f
	m.MaxFailures = 3
	for i := range 10 {
		d := fmt.Sprintf("d%d.test", i)
		n.set(d, "1", "")
		c.t = c.t.Add(time.Second)
		policyWithin(t, m, d)
		if got := m.failureCount(); got > 3 {
			t.Fatalf("%d failures remembered, want at most 3", got)
		}
	}
	// The most recent failures are the ones kept.
	before := f.calls.Load()
	f.set(fetchHangs)
	m.FetchTimeout = time.Hour
	policyWithin(t, m, "d9.test")
	if f.calls.Load() != before {
		t.Fatal("the latest failure was not kept")
	}
}

func TestManagerLogsDiscardedTXT(t *testing.T) {
	m, n, _, _ := newManager(t)
	var buf bytes.Buffer
	m.Log = slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	n.mu.Lock()
	n.txt[TXTName("example.test")] = []string{"v=STSv1; id=abc "}
	n.mu.Unlock()
	l, err := m.Policy(context.Background(), "example.test")
	if err != nil || l.Policy != nil || !errors.Is(l.Problem, ErrInvalidRecord) {
		t.Fatalf("Policy = %+v, %v; want no policy, an invalid record", l, err)
	}
	out := buf.String()
	for _, want := range []string{"MTA-STS TXT record discarded", "domain=example.test", "whitespace at the end", `v=STSv1; id=abc `} {
		if !strings.Contains(out, want) {
			t.Errorf("log %q lacks %q", out, want)
		}
	}
}

// failureCount returns how many failures m remembers.
func (m *Manager) failureCount() int {
	m.fmu.Lock()
	defer m.fmu.Unlock()
	return len(m.failures)
}

// waitBackground waits for the background fetches m started so far.
func (m *Manager) waitBackground() { m.bg.Wait() }
