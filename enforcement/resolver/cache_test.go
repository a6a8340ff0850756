package resolver_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"sealgate/enforcement"
	"sealgate/enforcement/resolver"
)

// reply is what the scripted server answers to one question.
type reply struct {
	rcode  int
	answer []string // records in zone-file syntax
	ns     []string
	ad     bool
	err    error // instead of a reply
}

// scripted is a server whose replies a test sets per question, counting
// the exchanges.
type scripted struct {
	t       *testing.T
	mu      sync.Mutex
	replies map[string]reply // by "name TYPE"
	asked   map[string]int
	// gate, if set, holds every exchange until it is closed or the
	// exchange's context ends.
	gate chan struct{}
}

func newScripted(t *testing.T) *scripted {
	return &scripted{t: t, replies: map[string]reply{}, asked: map[string]int{}}
}

func (s *scripted) set(name string, qtype uint16, r reply) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.replies[name+" "+dns.TypeToString[qtype]] = r
}

// exchanges returns how many exchanges name/qtype took.
func (s *scripted) exchanges(name string, qtype uint16) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.asked[name+" "+dns.TypeToString[qtype]]
}

func (s *scripted) exchange(ctx context.Context, _, _ string, m *dns.Msg) (*dns.Msg, error) {
	key := m.Question[0].Name + " " + dns.TypeToString[m.Question[0].Qtype]
	s.mu.Lock()
	s.asked[key]++
	r, ok := s.replies[key]
	gate := s.gate
	s.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if !ok {
		return nil, fmt.Errorf("no reply scripted for %s", key)
	}
	if r.err != nil {
		return nil, r.err
	}
	resp := new(dns.Msg)
	resp.SetReply(m)
	resp.Rcode = r.rcode
	resp.AuthenticatedData = r.ad
	for _, text := range r.answer {
		resp.Answer = append(resp.Answer, mustRR(s.t, text))
	}
	for _, text := range r.ns {
		resp.Ns = append(resp.Ns, mustRR(s.t, text))
	}
	return resp, nil
}

func mustRR(t *testing.T, text string) dns.RR {
	rr, err := dns.NewRR(text)
	if err != nil || rr == nil {
		t.Fatalf("record %q: %v", text, err)
	}
	return rr
}

// testClock is a clock that moves only when told.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock() *testClock {
	return &testClock{t: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// cachedResolver is a resolver on the scripted server at 127.0.0.1:53 with
// a cache on clock.
func cachedResolver(s *scripted, clock *testClock, o resolver.CacheOptions) *resolver.Resolver {
	o.Now = clock.Now
	return &resolver.Resolver{
		Servers:  []string{"127.0.0.1:53"},
		Timeout:  2 * time.Second,
		Exchange: s.exchange,
		Shuffle:  noShuffle,
		Cache:    resolver.NewCache(o),
	}
}

const soa = "example.test. %d IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 %d"

// TestCacheKeepsRepliesForTheirTTL: an answer is reused until its TTL (the
// lowest of the answer section, capped at MaxTTL) runs out; negative
// answers are kept for the SOA's negative TTL (RFC 2308 §5); a TTL of 0,
// a negative answer without SOA and every failure are not kept.
func TestCacheKeepsRepliesForTheirTTL(t *testing.T) {
	tests := []struct {
		name   string
		qtype  uint16
		reply  reply
		maxTTL time.Duration
		// kept is how long the reply is reused; 0: not at all.
		kept    time.Duration
		wantErr error
	}{
		{name: "answer: its TTL", qtype: dns.TypeA,
			reply: reply{answer: []string{"host.example.test. 60 IN A 192.0.2.1"}}, kept: 60 * time.Second},
		{name: "answer: the lowest TTL of the RRset", qtype: dns.TypeA,
			reply: reply{answer: []string{"host.example.test. 300 IN A 192.0.2.1", "host.example.test. 30 IN A 192.0.2.2"}}, kept: 30 * time.Second},
		{name: "answer: capped at MaxTTL", qtype: dns.TypeA,
			reply: reply{answer: []string{"host.example.test. 86400 IN A 192.0.2.1"}}, kept: time.Hour},
		{name: "answer: a smaller MaxTTL", qtype: dns.TypeA, maxTTL: 10 * time.Second,
			reply: reply{answer: []string{"host.example.test. 300 IN A 192.0.2.1"}}, kept: 10 * time.Second},
		{name: "answer: TTL 0 is not kept", qtype: dns.TypeA,
			reply: reply{answer: []string{"host.example.test. 0 IN A 192.0.2.1"}}},
		{name: "NXDOMAIN: SOA MINIMUM below its TTL", qtype: dns.TypeA, wantErr: enforcement.ErrNotFound,
			reply: reply{rcode: dns.RcodeNameError, ns: []string{fmt.Sprintf(soa, 3600, 120)}}, kept: 120 * time.Second},
		{name: "NXDOMAIN: SOA TTL below its MINIMUM", qtype: dns.TypeA, wantErr: enforcement.ErrNotFound,
			reply: reply{rcode: dns.RcodeNameError, ns: []string{fmt.Sprintf(soa, 90, 3600)}}, kept: 90 * time.Second},
		{name: "NODATA: the SOA's negative TTL", qtype: dns.TypeA,
			reply: reply{ns: []string{fmt.Sprintf(soa, 3600, 300)}}, kept: 300 * time.Second},
		{name: "NODATA after a CNAME: the lower of the CNAME and the SOA", qtype: dns.TypeA,
			reply: reply{answer: []string{"host.example.test. 40 IN CNAME other.example.test."}, ns: []string{fmt.Sprintf(soa, 3600, 300)}}, kept: 40 * time.Second},
		{name: "a CNAME not followed, without SOA: the CNAME's TTL", qtype: dns.TypeA,
			reply: reply{answer: []string{"host.example.test. 45 IN CNAME other.example.test."}}, kept: 45 * time.Second},
		{name: "NXDOMAIN without SOA is not kept", qtype: dns.TypeA, wantErr: enforcement.ErrNotFound,
			reply: reply{rcode: dns.RcodeNameError}},
		{name: "NODATA without SOA is not kept", qtype: dns.TypeA,
			reply: reply{}},
		{name: "SERVFAIL is not kept", qtype: dns.TypeA, wantErr: enforcement.ErrDNSTemporary,
			reply: reply{rcode: dns.RcodeServerFailure, ns: []string{fmt.Sprintf(soa, 3600, 300)}}},
		{name: "REFUSED is not kept", qtype: dns.TypeA, wantErr: enforcement.ErrDNSTemporary,
			reply: reply{rcode: dns.RcodeRefused}},
		{name: "a timeout is not kept", qtype: dns.TypeA, wantErr: enforcement.ErrDNSTemporary,
			reply: reply{err: context.DeadlineExceeded}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newScripted(t)
			s.set("host.example.test.", tc.qtype, tc.reply)
			s.set("host.example.test.", dns.TypeAAAA, reply{ns: []string{fmt.Sprintf(soa, 3600, 3600)}})
			s.set("other.example.test.", tc.qtype, reply{ns: []string{fmt.Sprintf(soa, 3600, 3600)}})
			clock := newTestClock()
			r := cachedResolver(s, clock, resolver.CacheOptions{MaxTTL: tc.maxTTL})
			ctx := context.Background()
			lookup := func() {
				t.Helper()
				_, err := r.LookupAddrs(ctx, "host.example.test")
				if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
					t.Fatalf("LookupAddrs: %v, want %v", err, tc.wantErr)
				}
			}
			lookup()
			if tc.kept == 0 {
				lookup()
				if n := s.exchanges("host.example.test.", tc.qtype); n != 2 {
					t.Fatalf("two lookups took %d exchanges, want 2 (not kept)", n)
				}
				return
			}
			clock.Add(tc.kept - time.Second)
			lookup()
			if n := s.exchanges("host.example.test.", tc.qtype); n != 1 {
				t.Fatalf("a lookup within the TTL took %d exchanges in all, want 1", n)
			}
			clock.Add(time.Second)
			lookup()
			if n := s.exchanges("host.example.test.", tc.qtype); n != 2 {
				t.Fatalf("a lookup once the TTL ran out took %d exchanges in all, want 2", n)
			}
		})
	}
}

// TestCacheKeepsTheTrustDecision: a cached answer is as secure as it was
// when it arrived: AD from a trusted server stays secure, AD from a server
// whose AD flag is not believed stays insecure.
func TestCacheKeepsTheTrustDecision(t *testing.T) {
	tests := []struct {
		name  string
		trust func(string) bool
		want  bool
	}{
		{name: "trusted server", want: true},
		{name: "untrusted server", trust: func(string) bool { return false }, want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := newScripted(t)
			s.set("example.test.", dns.TypeMX, reply{ad: true, answer: []string{"example.test. 300 IN MX 10 mx.example.test."}})
			s.set("_25._tcp.mx.example.test.", dns.TypeTLSA, reply{ad: true,
				answer: []string{"_25._tcp.mx.example.test. 300 IN TLSA 3 1 1 000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"}})
			r := cachedResolver(s, newTestClock(), resolver.CacheOptions{})
			r.TrustAD = tc.trust
			ctx := context.Background()
			for i := range 3 {
				mx, err := r.LookupMX(ctx, "example.test")
				if err != nil {
					t.Fatal(err)
				}
				tlsa, err := r.LookupTLSA(ctx, "_25._tcp.mx.example.test")
				if err != nil {
					t.Fatal(err)
				}
				if mx.Secure != tc.want || tlsa.Secure != tc.want {
					t.Fatalf("lookup %d: MX secure %v, TLSA secure %v, want %v", i, mx.Secure, tlsa.Secure, tc.want)
				}
			}
			if n := s.exchanges("example.test.", dns.TypeMX) + s.exchanges("_25._tcp.mx.example.test.", dns.TypeTLSA); n != 2 {
				t.Fatalf("%d exchanges, want 2 (the others from the cache)", n)
			}
		})
	}
}

// TestCacheFollowsCNAMEChainsHopByHop: each hop of a chain is kept under
// its own question, so the chain's security and expiry are those of its
// parts.
func TestCacheFollowsCNAMEChainsHopByHop(t *testing.T) {
	s := newScripted(t)
	s.set("mx.example.test.", dns.TypeA, reply{ad: true, answer: []string{"mx.example.test. 300 IN CNAME mx.hosting.test."}})
	s.set("mx.hosting.test.", dns.TypeA, reply{answer: []string{"mx.hosting.test. 60 IN A 192.0.2.1"}})
	s.set("mx.example.test.", dns.TypeAAAA, reply{ad: true, answer: []string{"mx.example.test. 300 IN CNAME mx.hosting.test."}})
	s.set("mx.hosting.test.", dns.TypeAAAA, reply{ns: []string{"hosting.test. 300 IN SOA ns.hosting.test. h.hosting.test. 1 3600 600 86400 300"}})
	s.set("mx.example.test.", dns.TypeCNAME, reply{ad: true, answer: []string{"mx.example.test. 300 IN CNAME mx.hosting.test."}})
	clock := newTestClock()
	r := cachedResolver(s, clock, resolver.CacheOptions{})
	ctx := context.Background()
	want := enforcement.AddrResult{Name: "mx.hosting.test", AliasSecure: true}
	check := func(step string) {
		t.Helper()
		got, err := r.LookupAddrs(ctx, "mx.example.test")
		if err != nil {
			t.Fatal(err)
		}
		if got.Name != want.Name || got.Secure != want.Secure || got.AliasSecure != want.AliasSecure || len(got.Addrs) != 1 {
			t.Fatalf("%s: %+v, want %+v with one address", step, got, want)
		}
	}
	check("first")
	clock.Add(59 * time.Second)
	check("cached")
	if n := s.exchanges("mx.hosting.test.", dns.TypeA) + s.exchanges("mx.example.test.", dns.TypeA) + s.exchanges("mx.example.test.", dns.TypeCNAME); n != 3 {
		t.Fatalf("%d exchanges, want 3", n)
	}
	// The target's TTL runs out first: only that hop is asked again.
	clock.Add(time.Second)
	check("target expired")
	if a, b := s.exchanges("mx.hosting.test.", dns.TypeA), s.exchanges("mx.example.test.", dns.TypeA); a != 2 || b != 1 {
		t.Fatalf("target asked %d times, alias %d times; want 2 and 1", a, b)
	}
}

// TestCacheSharesConcurrentExchanges: identical questions asked at the
// same time take one exchange; a caller that gives up does not end it
// for the others, and it ends when every caller has given up.
func TestCacheSharesConcurrentExchanges(t *testing.T) {
	t.Run("one exchange for many callers", func(t *testing.T) {
		s := newScripted(t)
		s.set("example.test.", dns.TypeMX, reply{answer: []string{"example.test. 300 IN MX 10 mx.example.test."}})
		s.gate = make(chan struct{})
		r := cachedResolver(s, newTestClock(), resolver.CacheOptions{})
		const callers = 8
		errs := make(chan error, callers)
		for range callers {
			go func() {
				mx, err := r.LookupMX(context.Background(), "example.test")
				if err == nil && !slices.Equal(mx.Hosts, []string{"mx.example.test"}) {
					err = fmt.Errorf("hosts %q", mx.Hosts)
				}
				errs <- err
			}()
		}
		waitFor(t, func() bool { return r.Waiters("example.test.", dns.TypeMX) == callers })
		close(s.gate)
		for range callers {
			if err := <-errs; err != nil {
				t.Fatal(err)
			}
		}
		if n := s.exchanges("example.test.", dns.TypeMX); n != 1 {
			t.Fatalf("%d concurrent lookups took %d exchanges, want 1", callers, n)
		}
	})
	t.Run("without a cache too", func(t *testing.T) {
		s := newScripted(t)
		s.set("example.test.", dns.TypeMX, reply{answer: []string{"example.test. 300 IN MX 10 mx.example.test."}})
		s.gate = make(chan struct{})
		r := &resolver.Resolver{Servers: []string{"127.0.0.1:53"}, Exchange: s.exchange, Shuffle: noShuffle}
		var wg, started sync.WaitGroup
		started.Add(4)
		for range 4 {
			wg.Go(func() {
				started.Done()
				if _, err := r.LookupMX(context.Background(), "example.test"); err != nil {
					t.Error(err)
				}
			})
		}
		started.Wait()
		waitFor(t, func() bool { return r.Waiters("example.test.", dns.TypeMX) == 4 })
		close(s.gate)
		wg.Wait()
		if n := s.exchanges("example.test.", dns.TypeMX); n != 1 {
			t.Fatalf("4 concurrent lookups took %d exchanges, want 1", n)
		}
		// Nothing is kept: the next lookup asks again.
		if _, err := r.LookupMX(context.Background(), "example.test"); err != nil {
			t.Fatal(err)
		}
		if n := s.exchanges("example.test.", dns.TypeMX); n != 2 {
			t.Fatalf("%d exchanges, want 2", n)
		}
	})
	t.Run("a caller giving up leaves the exchange to the others", func(t *testing.T) {
		s := newScripted(t)
		s.set("example.test.", dns.TypeMX, reply{answer: []string{"example.test. 300 IN MX 10 mx.example.test."}})
		s.gate = make(chan struct{})
		r := cachedResolver(s, newTestClock(), resolver.CacheOptions{})
		ctx, cancel := context.WithCancel(context.Background())
		first := make(chan error, 1)
		go func() {
			_, err := r.LookupMX(ctx, "example.test")
			first <- err
		}()
		waitFor(t, func() bool { return s.exchanges("example.test.", dns.TypeMX) >= 1 })
		second := make(chan error, 1)
		go func() {
			_, err := r.LookupMX(context.Background(), "example.test")
			second <- err
		}()
		waitFor(t, func() bool { return r.Waiters("example.test.", dns.TypeMX) == 2 })
		cancel()
		if err := <-first; !errors.Is(err, context.Canceled) || !errors.Is(err, enforcement.ErrDNSTemporary) {
			t.Fatalf("the caller that gave up got %v", err)
		}
		close(s.gate)
		if err := <-second; err != nil {
			t.Fatalf("the caller still waiting got %v", err)
		}
		if n := s.exchanges("example.test.", dns.TypeMX); n != 1 {
			t.Fatalf("%d exchanges, want 1", n)
		}
	})
	t.Run("the exchange ends when every caller has given up", func(t *testing.T) {
		s := newScripted(t)
		s.set("example.test.", dns.TypeMX, reply{answer: []string{"example.test. 300 IN MX 10 mx.example.test."}})
		s.gate = make(chan struct{}) // never opened: only cancellation ends the exchange
		r := cachedResolver(s, newTestClock(), resolver.CacheOptions{})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			_, err := r.LookupMX(ctx, "example.test")
			done <- err
		}()
		waitFor(t, func() bool { return s.exchanges("example.test.", dns.TypeMX) >= 1 })
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v", err)
		}
		// A later caller starts a new exchange rather than inherit the
		// abandoned one; the leak check of TestMain sees the first end.
		s.mu.Lock()
		s.gate = nil
		s.mu.Unlock()
		if _, err := r.LookupMX(context.Background(), "example.test"); err != nil {
			t.Fatalf("a later caller: %v", err)
		}
		if n := s.exchanges("example.test.", dns.TypeMX); n != 2 {
			t.Fatalf("%d exchanges, want 2", n)
		}
	})
}

// TestCacheIsBounded: the least recently used reply makes room.
func TestCacheIsBounded(t *testing.T) {
	s := newScripted(t)
	for _, name := range []string{"a", "b", "c"} {
		s.set(name+".example.test.", dns.TypeTXT, reply{answer: []string{name + `.example.test. 300 IN TXT "x"`}})
	}
	r := cachedResolver(s, newTestClock(), resolver.CacheOptions{Size: 2})
	ctx := context.Background()
	for _, name := range []string{"a", "b", "a", "c", "a", "b"} {
		if _, err := r.LookupTXT(ctx, name+".example.test"); err != nil {
			t.Fatal(err)
		}
	}
	// a, b kept; a used again; c evicts b (least recently used); a is
	// still kept; b is asked again and evicts c.
	got := []int{s.exchanges("a.example.test.", dns.TypeTXT), s.exchanges("b.example.test.", dns.TypeTXT), s.exchanges("c.example.test.", dns.TypeTXT)}
	if want := []int{1, 2, 1}; !slices.Equal(got, want) {
		t.Fatalf("exchanges of a, b, c = %v, want %v", got, want)
	}
	if n := r.Cache.Len(); n != 2 {
		t.Fatalf("the cache holds %d replies, want 2", n)
	}
}

// waitFor polls cond for up to five seconds.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(time.Millisecond)
	}
}
