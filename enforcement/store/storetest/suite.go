// Package storetest holds the conformance suite every store.Store backend
// passes, and StartRedis, which runs a private redis-server for tests.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"testing"
	"time"

	"sealgate/enforcement/store"
)

// Opener opens, or reopens after Close, one backing store.
type Opener func() (store.Store, error)

// Run runs the conformance suite. fresh is called once per subtest and
// returns an Opener for an empty backing store (a new bbolt file, a
// flushed Redis database); the suite closes what it opens.
func Run(t *testing.T, fresh func(t *testing.T) Opener) {
	tests := []struct {
		name string
		fn   func(t *testing.T, open Opener)
	}{
		{name: "RoundTrip", fn: testRoundTrip},
		{name: "NotFound", fn: testNotFound},
		{name: "Overwrite", fn: testOverwrite},
		{name: "Delete", fn: testDelete},
		{name: "List", fn: testList},
		{name: "ExpiryPreserved", fn: testExpiryPreserved},
		{name: "Prune", fn: testPrune},
		{name: "InvalidArguments", fn: testInvalid},
		{name: "Counters", fn: testCounters},
		{name: "ConcurrentWriters", fn: testConcurrent},
		{name: "Restart", fn: testRestart},
		{name: "AddCounters", fn: testAddCounters},
		{name: "Lock", fn: testLock},
		{name: "LockSurvivesRestart", fn: testLockRestart},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, fresh(t))
		})
	}
}

func mustOpen(t *testing.T, open Opener) store.Store {
	t.Helper()
	s, err := open()
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// base is a fixed instant; times are compared with Equal.
var base = time.Date(2026, 3, 1, 12, 0, 0, 123456789, time.UTC)

func policy(domain, id string, fetched time.Time) *store.CachedPolicy {
	return &store.CachedPolicy{
		Domain:    domain,
		ID:        id,
		Policy:    "version: STSv1\nmode: enforce\nmx: mx." + domain + "\nmax_age: 86400\n",
		FetchedAt: fetched,
		ExpiresAt: fetched.Add(24 * time.Hour),
	}
}

// samePolicy compares two entries, times with Equal.
func samePolicy(a, b *store.CachedPolicy) bool {
	return a.Domain == b.Domain && a.ID == b.ID && a.Policy == b.Policy &&
		a.FetchedAt.Equal(b.FetchedAt) && a.ExpiresAt.Equal(b.ExpiresAt)
}

func mustGet(t *testing.T, s store.Store, domain string, want *store.CachedPolicy) {
	t.Helper()
	got, err := s.GetPolicy(context.Background(), domain)
	if err != nil {
		t.Fatalf("GetPolicy(%q): %v", domain, err)
	}
	if !samePolicy(got, want) {
		t.Fatalf("GetPolicy(%q) = %+v, want %+v", domain, got, want)
	}
}

func mustPut(t *testing.T, s store.Store, p *store.CachedPolicy) {
	t.Helper()
	if err := s.PutPolicy(context.Background(), p); err != nil {
		t.Fatalf("PutPolicy(%s): %v", p.Domain, err)
	}
}

// far returns a time far enough ahead that no TTL can interfere.
func far() time.Time { return time.Now().Add(30 * 24 * time.Hour) }

func testRoundTrip(t *testing.T, open Opener) {
	s := mustOpen(t, open)
	p := policy("example.test", "20160831085700Z", base)
	p.ExpiresAt = far()
	mustPut(t, s, p)
	mustGet(t, s, "example.test", p)
	// Lookups ignore case and a trailing dot; the entry keeps the
	// normalized domain.
	mustGet(t, s, "EXAMPLE.Test.", p)
	upper := policy("Other.TEST.", "1", base)
	upper.ExpiresAt = far()
	mustPut(t, s, upper)
	want := *upper
	want.Domain = "other.test"
	mustGet(t, s, "other.test", &want)
	if err := s.Ping(context.Background()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
}

func testNotFound(t *testing.T, open Opener) {
	s := mustOpen(t, open)
	_, err := s.GetPolicy(context.Background(), "absent.test")
	if !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetPolicy of an absent domain: %v, want ErrNotFound", err)
	}
	if err := s.DeletePolicy(context.Background(), "absent.test"); err != nil {
		t.Fatalf("DeletePolicy of an absent domain: %v", err)
	}
	list, err := s.ListPolicies(context.Background())
	if err != nil || len(list) != 0 {
		t.Fatalf("ListPolicies of an empty store = %v, %v", list, err)
	}
}

func testOverwrite(t *testing.T, open Opener) {
	s := mustOpen(t, open)
	first := policy("example.test", "1", base)
	first.ExpiresAt = far()
	second := policy("example.test", "2", base.Add(time.Hour))
	second.Policy = "version: STSv1\nmode: testing\nmx: other.example.test\nmax_age: 3600\n"
	second.ExpiresAt = far().Add(time.Hour)
	mustPut(t, s, first)
	mustPut(t, s, second)
	mustGet(t, s, "example.test", second)
	list, err := s.ListPolicies(context.Background())
	if err != nil || len(list) != 1 {
		t.Fatalf("ListPolicies after overwrite = %d entries, %v; want 1", len(list), err)
	}
}

func testDelete(t *testing.T, open Opener) {
	s := mustOpen(t, open)
	a, b := policy("a.test", "1", base), policy("b.test", "1", base)
	a.ExpiresAt, b.ExpiresAt = far(), far()
	mustPut(t, s, a)
	mustPut(t, s, b)
	if err := s.DeletePolicy(context.Background(), "A.test."); err != nil {
		t.Fatalf("DeletePolicy: %v", err)
	}
	if _, err := s.GetPolicy(context.Background(), "a.test"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("GetPolicy after delete: %v, want ErrNotFound", err)
	}
	mustGet(t, s, "b.test", b)
}

func testList(t *testing.T, open Opener) {
	s := mustOpen(t, open)
	expires := far()
	var want []*store.CachedPolicy
	for _, d := range []string{"c.test", "a.test", "b.example.test", "b.test"} {
		p := policy(d, "1", base)
		p.ExpiresAt = expires
		mustPut(t, s, p)
	}
	for _, d := range []string{"a.test", "b.example.test", "b.test", "c.test"} {
		p := policy(d, "1", base)
		p.ExpiresAt = expires
		want = append(want, p)
	}
	got, err := s.ListPolicies(context.Background())
	if err != nil {
		t.Fatalf("ListPolicies: %v", err)
	}
	if len(got) != len(want) {
		t.Fatalf("ListPolicies returned %d entries, want %d", len(got), len(want))
	}
	for i := range want {
		if !samePolicy(got[i], want[i]) {
			t.Fatalf("ListPolicies[%d] = %+v, want %+v (sorted by domain)", i, got[i], want[i])
		}
	}
}

func testExpiryPreserved(t *testing.T, open Opener) {
	s := mustOpen(t, open)
	now := time.Now()
	expired := &store.CachedPolicy{
		Domain: "expired.test", ID: "abc", Policy: "version: STSv1\nmode: none\nmax_age: 60\n",
		FetchedAt: now.Add(-2 * time.Hour), ExpiresAt: now.Add(-time.Hour),
	}
	local := &store.CachedPolicy{
		Domain: "zone.test", ID: "z", Policy: "x",
		FetchedAt: time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("X", 5*3600+1800)),
		ExpiresAt: far().In(time.FixedZone("Y", -7*3600)),
	}
	forever := &store.CachedPolicy{Domain: "forever.test", ID: "f", Policy: "y", FetchedAt: base}
	for _, p := range []*store.CachedPolicy{expired, local, forever} {
		mustPut(t, s, p)
		mustGet(t, s, p.Domain, p) // expired entries are still returned
	}
	got, err := s.GetPolicy(context.Background(), "forever.test")
	if err != nil || !got.ExpiresAt.IsZero() {
		t.Fatalf("zero ExpiresAt came back as %v, %v", got.ExpiresAt, err)
	}
}

func testPrune(t *testing.T, open Opener) {
	s := mustOpen(t, open)
	now := time.Now()
	old1 := policy("old1.test", "1", now.Add(-3*time.Hour))
	old1.ExpiresAt = now.Add(-2 * time.Hour)
	old2 := policy("old2.test", "1", now.Add(-3*time.Hour))
	old2.ExpiresAt = now.Add(-time.Hour)
	recent := policy("recent.test", "1", now.Add(-time.Hour))
	recent.ExpiresAt = now.Add(time.Hour)
	forever := &store.CachedPolicy{Domain: "forever.test", ID: "1", Policy: "x", FetchedAt: now}
	for _, p := range []*store.CachedPolicy{old1, old2, recent, forever} {
		mustPut(t, s, p)
	}
	n, err := s.PrunePolicies(context.Background(), now.Add(-90*time.Minute))
	if err != nil || n != 1 {
		t.Fatalf("PrunePolicies = %d, %v; want 1 (only old1)", n, err)
	}
	n, err = s.PrunePolicies(context.Background(), now)
	if err != nil || n != 1 {
		t.Fatalf("second PrunePolicies = %d, %v; want 1 (old2)", n, err)
	}
	for _, d := range []string{"old1.test", "old2.test"} {
		if _, err := s.GetPolicy(context.Background(), d); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s survived the prune: %v", d, err)
		}
	}
	mustGet(t, s, "recent.test", recent)
	mustGet(t, s, "forever.test", forever)
}

func testInvalid(t *testing.T, open Opener) {
	s := mustOpen(t, open)
	ctx := context.Background()
	checks := []struct {
		name string
		err  error
	}{
		{name: "put nil", err: s.PutPolicy(ctx, nil)},
		{name: "put without domain", err: s.PutPolicy(ctx, &store.CachedPolicy{ID: "1"})},
		{name: "put domain dot", err: s.PutPolicy(ctx, &store.CachedPolicy{Domain: "."})},
		{name: "delete empty", err: s.DeletePolicy(ctx, "")},
		{name: "incr empty bucket", err: s.IncrCounter(ctx, "", "f", 1)},
		{name: "incr empty field", err: s.IncrCounter(ctx, "b", "", 1)},
	}
	for _, c := range checks {
		if !errors.Is(c.err, store.ErrInvalid) {
			t.Errorf("%s: %v, want ErrInvalid", c.name, c.err)
		}
	}
	if _, err := s.GetPolicy(ctx, ""); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("get empty: %v, want ErrInvalid", err)
	}
}

func testCounters(t *testing.T, open Opener) {
	s := mustOpen(t, open)
	ctx := context.Background()
	m, err := s.Counters(ctx, "absent")
	if err != nil || len(m) != 0 {
		t.Fatalf("Counters of an absent bucket = %v, %v; want empty", m, err)
	}
	steps := []struct {
		bucket, field string
		delta         int64
	}{
		{bucket: "2026-03-01/example.test", field: "success", delta: 3},
		{bucket: "2026-03-01/example.test", field: "success", delta: 2},
		{bucket: "2026-03-01/example.test", field: "failure/certificate-expired", delta: 1},
		{bucket: "2026-03-01/example.test", field: "negative", delta: -4},
		{bucket: "2026-03-01/other.test", field: "success", delta: 1 << 40},
	}
	for _, st := range steps {
		if err := s.IncrCounter(ctx, st.bucket, st.field, st.delta); err != nil {
			t.Fatalf("IncrCounter(%s, %s): %v", st.bucket, st.field, err)
		}
	}
	want := map[string]int64{"success": 5, "failure/certificate-expired": 1, "negative": -4}
	if m, err := s.Counters(ctx, "2026-03-01/example.test"); err != nil || !reflect.DeepEqual(m, want) {
		t.Fatalf("Counters = %v, %v; want %v", m, err, want)
	}
	buckets, err := s.CounterBuckets(ctx)
	if want := []string{"2026-03-01/example.test", "2026-03-01/other.test"}; err != nil || !reflect.DeepEqual(buckets, want) {
		t.Fatalf("CounterBuckets = %v, %v; want %v", buckets, err, want)
	}
	took, err := s.TakeCounters(ctx, "2026-03-01/other.test")
	if want := map[string]int64{"success": 1 << 40}; err != nil || !reflect.DeepEqual(took, want) {
		t.Fatalf("TakeCounters = %v, %v; want %v", took, err, want)
	}
	if m, err := s.Counters(ctx, "2026-03-01/other.test"); err != nil || len(m) != 0 {
		t.Fatalf("Counters after TakeCounters = %v, %v; want empty", m, err)
	}
	buckets, err = s.CounterBuckets(ctx)
	if want := []string{"2026-03-01/example.test"}; err != nil || !reflect.DeepEqual(buckets, want) {
		t.Fatalf("CounterBuckets after take = %v, %v; want %v", buckets, err, want)
	}
	// Counters and policies do not see each other.
	if list, err := s.ListPolicies(ctx); err != nil || len(list) != 0 {
		t.Fatalf("ListPolicies with only counters = %v, %v", list, err)
	}
}

func testConcurrent(t *testing.T, open Opener) {
	s := mustOpen(t, open)
	ctx := context.Background()
	const (
		workers = 8
		rounds  = 50
	)
	var wg sync.WaitGroup
	errs := make(chan error, workers*rounds*3)
	for w := range workers {
		wg.Go(func() {
			for i := range rounds {
				if err := s.IncrCounter(ctx, "shared", "hits", 1); err != nil {
					errs <- err
				}
				if err := s.IncrCounter(ctx, "shared", fmt.Sprintf("worker%d", w), int64(i)); err != nil {
					errs <- err
				}
				p := policy(fmt.Sprintf("d%d.test", w), fmt.Sprint(i), base)
				p.ExpiresAt = far()
				if err := s.PutPolicy(ctx, p); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("concurrent write: %v", err)
	}
	m, err := s.Counters(ctx, "shared")
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int64{"hits": workers * rounds}
	for w := range workers {
		want[fmt.Sprintf("worker%d", w)] = rounds * (rounds - 1) / 2
	}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("counters after concurrent increments = %v, want %v", m, want)
	}
	list, err := s.ListPolicies(ctx)
	if err != nil || len(list) != workers {
		t.Fatalf("ListPolicies = %d entries, %v; want %d", len(list), err, workers)
	}
	for _, p := range list {
		if p.ID != fmt.Sprint(rounds-1) {
			t.Errorf("%s has id %s, want the last write %d", p.Domain, p.ID, rounds-1)
		}
	}
}

func testRestart(t *testing.T, open Opener) {
	s, err := open()
	if err != nil {
		t.Fatal(err)
	}
	p := policy("example.test", "1", base)
	p.ExpiresAt = far()
	mustPut(t, s, p)
	if err := s.IncrCounter(context.Background(), "b", "f", 7); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s = mustOpen(t, open)
	mustGet(t, s, "example.test", p)
	m, err := s.Counters(context.Background(), "b")
	if err != nil || m["f"] != 7 {
		t.Fatalf("counter after reopen = %v, %v; want f=7", m, err)
	}
}
