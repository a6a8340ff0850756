package mtasts

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"sealgate/enforcement/store"
)

// countingStore counts the policy reads of the store it wraps.
type countingStore struct {
	store.Store
	gets atomic.Int32
}

func (s *countingStore) GetPolicy(ctx context.Context, domain string) (*store.CachedPolicy, error) {
	s.gets.Add(1)
	return s.Store.GetPolicy(ctx, domain)
}

const testingBody = "version: STSv1\nmode: testing\nmax_age: 86400\nmx: mx.example.test\n"

// TestManagerMemoryAnswersWithoutStoreReads: once a domain's store entry
// (a policy, or none) is known, messages read nothing from the store until
// the copy is MemoryMaxAge old.
func TestManagerMemoryAnswersWithoutStoreReads(t *testing.T) {
	tests := []struct {
		name       string
		id         string // "": no MTA-STS record
		wantStatus Status
	}{
		{name: "policy in force", id: "1", wantStatus: StatusCached},
		{name: "no policy", wantStatus: StatusNone},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, n, c, st := newManager(t)
			counted := &countingStore{Store: st}
			m.Store = counted
			ctx := context.Background()
			n.set("example.test", tc.id, enforceBody)
			if _, err := m.Policy(ctx, "example.test"); err != nil {
				t.Fatal(err)
			}
			counted.gets.Store(0)
			for range 10 {
				l, err := m.Policy(ctx, "example.test")
				if err != nil || l.Status != tc.wantStatus {
					t.Fatalf("Policy: %+v, %v; want status %v", l, err, tc.wantStatus)
				}
				c.t = c.t.Add(5 * time.Second)
			}
			if got := counted.gets.Load(); got != 0 {
				t.Fatalf("%d store reads within MemoryMaxAge, want 0", got)
			}
			c.t = c.t.Add(DefaultMemoryMaxAge)
			if _, err := m.Policy(ctx, "example.test"); err != nil {
				t.Fatal(err)
			}
			if got := counted.gets.Load(); got != 1 {
				t.Fatalf("%d store reads once the copy is MemoryMaxAge old, want 1", got)
			}
		})
	}
	t.Run("negative MemoryMaxAge: every message reads the store", func(t *testing.T) {
		m, n, _, st := newManager(t)
		counted := &countingStore{Store: st}
		m.Store, m.MemoryMaxAge = counted, -1
		n.set("example.test", "1", enforceBody)
		for range 3 {
			if _, err := m.Policy(context.Background(), "example.test"); err != nil {
				t.Fatal(err)
			}
		}
		if got := counted.gets.Load(); got != 3 {
			t.Fatalf("%d store reads for 3 messages, want 3", got)
		}
	})
}

// TestManagerMemoryFollowsItsOwnWrites: a refresh and a purge are seen by
// the next message at once.
func TestManagerMemoryFollowsItsOwnWrites(t *testing.T) {
	m, n, _, st := newManager(t)
	ctx := context.Background()
	n.set("example.test", "1", enforceBody)
	if l, _ := m.Policy(ctx, "example.test"); l.Status != StatusFetched {
		t.Fatalf("first contact: %+v", l)
	}
	n.set("example.test", "1", testingBody)
	if _, err := m.Refresh(ctx, "example.test"); err != nil {
		t.Fatal(err)
	}
	if l, _ := m.Policy(ctx, "example.test"); l.Status != StatusCached || l.Policy.Mode != ModeTesting {
		t.Fatalf("after refresh: %+v, want the refreshed testing policy", l)
	}
	if err := m.Purge(ctx, "Example.Test."); err != nil {
		t.Fatal(err)
	}
	if _, err := st.GetPolicy(ctx, "example.test"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("store entry after purge: %v", err)
	}
	fetches := n.fetches.Load()
	if l, _ := m.Policy(ctx, "example.test"); l.Status != StatusFetched || n.fetches.Load() != fetches+1 {
		t.Fatalf("after purge: %+v, %d fetches; want a new fetch", l, n.fetches.Load()-fetches)
	}
}

// TestManagerMemorySeesOtherReplicas: two Managers share a store, as
// replicas share Redis. A policy the other stored for a new id is used at
// once without fetching; a change under the same id and a purge are seen
// within MemoryMaxAge.
func TestManagerMemorySeesOtherReplicas(t *testing.T) {
	a, n, c, st := newManager(t)
	b := &Manager{Store: st, Fetcher: n, LookupTXT: n.lookupTXT, Now: c.now}
	ctx := context.Background()
	mode := func(m *Manager) Mode {
		t.Helper()
		l, err := m.Policy(ctx, "example.test")
		if err != nil {
			t.Fatal(err)
		}
		if l.Policy == nil {
			return 0
		}
		return l.Policy.Mode
	}
	n.set("example.test", "1", enforceBody)
	if got := mode(a); got != ModeEnforce {
		t.Fatalf("replica a: %v", got)
	}

	// Same id, a new body that b fetches on the operator's request.
	n.set("example.test", "1", testingBody)
	if _, err := b.Refresh(ctx, "example.test"); err != nil {
		t.Fatal(err)
	}
	c.t = c.t.Add(DefaultMemoryMaxAge - time.Second)
	if got := mode(a); got != ModeEnforce {
		t.Fatalf("replica a within MemoryMaxAge: %v, want its copy (enforce)", got)
	}
	c.t = c.t.Add(time.Second)
	if got := mode(a); got != ModeTesting {
		t.Fatalf("replica a after MemoryMaxAge: %v, want b's policy (testing)", got)
	}

	// A new id: b fetches; a finds b's policy in the store, no fetch.
	n.set("example.test", "2", enforceBody)
	if got := mode(b); got != ModeEnforce {
		t.Fatalf("replica b, id 2: %v", got)
	}
	fetches := n.fetches.Load()
	if l, err := a.Policy(ctx, "example.test"); err != nil || l.Status != StatusCached || l.ID != "2" || l.Policy.Mode != ModeEnforce {
		t.Fatalf("replica a, id 2: %+v %v; want b's stored policy", l, err)
	}
	if got := n.fetches.Load(); got != fetches {
		t.Fatalf("replica a fetched %d times, want 0", got-fetches)
	}

	// b purges; the TXT record is gone, so a keeps its copy until
	// MemoryMaxAge, then has none.
	n.set("example.test", "", "")
	if err := b.Purge(ctx, "example.test"); err != nil {
		t.Fatal(err)
	}
	if got := mode(a); got != ModeEnforce {
		t.Fatalf("replica a right after b's purge: %v, want its copy", got)
	}
	c.t = c.t.Add(DefaultMemoryMaxAge)
	if got := mode(a); got != 0 {
		t.Fatalf("replica a MemoryMaxAge after b's purge: %v, want no policy", got)
	}
}

// TestManagerMemoryIsBounded: at most MaxMemory domains are kept, and a
// domain that made room is read from the store again.
func TestManagerMemoryIsBounded(t *testing.T) {
	m, n, c, st := newManager(t)
	counted := &countingStore{Store: st}
	m.Store, m.MaxMemory = counted, 2
	ctx := context.Background()
	domains := []string{"a.test", "b.test", "c.test", "d.test"}
	for _, d := range domains {
		n.set(d, "1", "version: STSv1\nmode: enforce\nmax_age: 86400\nmx: mx."+d+"\n")
		if _, err := m.Policy(ctx, d); err != nil {
			t.Fatal(err)
		}
		c.t = c.t.Add(time.Second)
		if got := len(m.memory); got > 2 {
			t.Fatalf("%d domains in memory, want at most 2", got)
		}
	}
	counted.gets.Store(0)
	for _, d := range domains {
		l, err := m.Policy(ctx, d)
		if err != nil || l.Status != StatusCached || l.Policy.MX[0] != "mx."+d {
			t.Fatalf("%s: %+v %v", d, l, err)
		}
	}
	if got := counted.gets.Load(); got < 2 {
		t.Fatalf("%d store reads for 4 domains with room for 2, want at least 2", got)
	}
}

// TestManagerMemoryFailedTXTReadsTheStore: replica a remembers that
// nothing is stored; replica b then stores an enforce policy; when a's
// TXT lookup fails, a still finds b's policy in the store at once.
func TestManagerMemoryFailedTXTReadsTheStore(t *testing.T) {
	a, n, c, st := newManager(t)
	b := &Manager{Store: st, Fetcher: n, LookupTXT: n.lookupTXT, Now: c.now}
	ctx := context.Background()
	if l, err := a.Policy(ctx, "example.test"); err != nil || l.Policy != nil {
		t.Fatalf("before: %+v, %v", l, err)
	}
	n.set("example.test", "1", enforceBody)
	if l, err := b.Policy(ctx, "example.test"); err != nil || l.Policy == nil {
		t.Fatalf("replica b: %+v, %v", l, err)
	}
	n.mu.Lock()
	n.txtErr = errors.New("SERVFAIL")
	n.mu.Unlock()
	l, err := a.Policy(ctx, "example.test")
	if err != nil || l.Policy == nil || l.Policy.Mode != ModeEnforce {
		t.Fatalf("replica a with a failed TXT lookup: %+v, %v; want b's enforce policy", l, err)
	}
}
