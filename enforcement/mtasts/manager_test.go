package mtasts

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"sealgate/enforcement/store"
)

// fakeNet is the TXT records and policy bodies of a few domains.
type fakeNet struct {
	mu      sync.Mutex
	txt     map[string][]string
	txtErr  error
	body    map[string]string
	down    bool
	fetches atomic.Int32
	active  atomic.Int32
	peak    atomic.Int32
}

func (n *fakeNet) lookupTXT(_ context.Context, name string) ([]string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.txtErr != nil {
		return nil, n.txtErr
	}
	return n.txt[name], nil
}

func (n *fakeNet) Fetch(_ context.Context, domain string) (*Policy, error) {
	n.fetches.Add(1)
	a := n.active.Add(1)
	defer n.active.Add(-1)
	for {
		p := n.peak.Load()
		if a <= p || n.peak.CompareAndSwap(p, a) {
			break
		}
	}
	time.Sleep(5 * time.Millisecond)
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.down {
		return nil, &FetchError{Domain: domain, Kind: KindFetch, Err: errors.New("connection refused")}
	}
	return ParsePolicy([]byte(n.body[domain]))
}

func (n *fakeNet) set(domain, id, body string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if id == "" {
		delete(n.txt, TXTName(domain))
	} else {
		n.txt[TXTName(domain)] = []string{"v=STSv1; id=" + id + ";"}
	}
	if body != "" {
		n.body[domain] = body
	}
}

type clock struct{ t time.Time }

func (c *clock) now() time.Time { return c.t }

func newManager(t testing.TB) (*Manager, *fakeNet, *clock, store.Store) {
	st, err := store.OpenBolt(filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	n := &fakeNet{txt: map[string][]string{}, body: map[string]string{}}
	c := &clock{t: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)}
	return &Manager{Store: st, Fetcher: n, LookupTXT: n.lookupTXT, Now: c.now}, n, c, st
}

const enforceBody = "version: STSv1\nmode: enforce\nmax_age: 86400\nmx: mx.example.test\n"

func TestManagerLifecycle(t *testing.T) {
	m, n, c, _ := newManager(t)
	ctx := context.Background()
	want := func(step string, l Lookup, status Status, mode Mode) {
		t.Helper()
		if l.Status != status {
			t.Fatalf("%s: status %v, want %v", step, l.Status, status)
		}
		if mode == 0 && l.Policy != nil || mode != 0 && (l.Policy == nil || l.Policy.Mode != mode) {
			t.Fatalf("%s: policy %+v, want mode %v", step, l.Policy, mode)
		}
	}
	l, _ := m.Policy(ctx, "example.test")
	want("no TXT", l, StatusNone, 0)

	n.set("example.test", "1", enforceBody)
	l, _ = m.Policy(ctx, "Example.Test.")
	want("first contact", l, StatusFetched, ModeEnforce)
	l, _ = m.Policy(ctx, "example.test")
	want("same id", l, StatusCached, ModeEnforce)
	if n.fetches.Load() != 1 {
		t.Fatalf("%d fetches, want 1", n.fetches.Load())
	}

	// The attacker removes the TXT record and takes the host down.
	n.set("example.test", "", "")
	n.down = true
	l, _ = m.Policy(ctx, "example.test")
	want("TXT gone", l, StatusCached, ModeEnforce)
	n.set("example.test", "2", "")
	l, _ = m.Policy(ctx, "example.test")
	want("new id, host down", l, StatusStale, ModeEnforce)
	if l.Problem == nil {
		t.Error("a failed fetch is not reported")
	}
	n.txtErr = errors.New("SERVFAIL")
	l, _ = m.Policy(ctx, "example.test")
	want("TXT lookup fails", l, StatusStale, ModeEnforce)
	n.txtErr = nil

	// Only a successful fetch of mode none removes protection.
	n.down = false
	n.set("example.test", "3", "version: STSv1\nmode: none\nmax_age: 86400\n")
	l, _ = m.Policy(ctx, "example.test")
	want("mode none fetched", l, StatusFetched, ModeNone)

	// An expired policy is no longer in force.
	n.set("example.test", "4", enforceBody)
	m.Policy(ctx, "example.test")
	n.set("example.test", "", "")
	c.t = c.t.Add(25 * time.Hour)
	l, _ = m.Policy(ctx, "example.test")
	want("expired", l, StatusNone, 0)
}

func TestManagerGarbageKeepsCache(t *testing.T) {
	m, n, _, _ := newManager(t)
	ctx := context.Background()
	n.set("example.test", "1", enforceBody)
	m.Policy(ctx, "example.test")
	n.set("example.test", "2", "this is not a policy")
	l, _ := m.Policy(ctx, "example.test")
	if l.Status != StatusStale || l.Policy == nil || l.Policy.Mode != ModeEnforce {
		t.Fatalf("garbage replaced the cached policy: %+v", l)
	}
}

func TestManagerRefreshDue(t *testing.T) {
	m, n, c, st := newManager(t)
	m.RefreshConcurrency = 2
	ctx := context.Background()
	domains := []string{"a.test", "b.test", "c.test", "d.test", "e.test"}
	for _, d := range domains {
		n.set(d, "1", "version: STSv1\nmode: enforce\nmax_age: 3600\nmx: mx."+d+"\n")
		if _, err := m.Policy(ctx, d); err != nil {
			t.Fatal(err)
		}
	}
	// A long-expired entry is pruned.
	st.PutPolicy(ctx, &store.CachedPolicy{Domain: "old.test", ID: "1", Policy: enforceBody, FetchedAt: c.t.Add(-72 * time.Hour), ExpiresAt: c.t.Add(-48 * time.Hour)})
	n.fetches.Store(0)
	n.peak.Store(0)
	c.t = c.t.Add(50 * time.Minute)
	got, err := m.RefreshDue(ctx, 30*time.Minute)
	if err != nil || got != len(domains) {
		t.Fatalf("refreshed %d (%v), want %d", got, err, len(domains))
	}
	if p := n.peak.Load(); p > 2 {
		t.Errorf("%d concurrent fetches, want at most 2", p)
	}
	e, err := st.GetPolicy(ctx, "a.test")
	if err != nil || !e.ExpiresAt.Equal(c.t.Add(time.Hour)) {
		t.Errorf("entry not renewed: %+v %v", e, err)
	}
	if _, err := st.GetPolicy(ctx, "old.test"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("long-expired entry not pruned: %v", err)
	}
	// Nothing is due right after.
	if got, _ := m.RefreshDue(ctx, 30*time.Minute); got != 0 {
		t.Errorf("refreshed %d right after a refresh", got)
	}
}
