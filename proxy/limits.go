package proxy

import (
	"container/list"
	"net/netip"
	"runtime"
	"sync"
	"time"
)

// Limits bound what clients can take of the server: connections per
// address, slots kept for the allowed networks, idle and slow sessions,
// password guessing. Zero values take the documented defaults.
type Limits struct {
	// MaxConnectionsPerIP bounds concurrent sessions from one address; an
	// IPv6 /64 counts as one address (20 if 0). The next gets
	// 421 4.7.0.
	MaxConnectionsPerIP int
	// ReservedConnections of MaxConnections are kept for clients in
	// AllowedNetworks: other clients may use only the rest and get
	// 421 4.3.2 beyond it (MaxConnections/5 if 0; none if negative).
	ReservedConnections int
	// SessionIdleTimeout closes a session that has had no recipient
	// accepted and no message received for this long with 421 4.4.2,
	// whatever else it sends (5 minutes if 0).
	SessionIdleTimeout time.Duration
	// MinDataRate is the floor, in bytes per second, of what a client
	// must send once it has used up its first allowance (the longer of
	// CommandTimeout and DataTimeout): every byte read earns 1/MinDataRate
	// seconds more, so a trickle is cut while a long transfer at any
	// sensible rate is not (500 if 0).
	MinDataRate int
	// AuthMaxFailures is the number of failed AUTH attempts from one
	// address after which its connection is closed with 421 4.7.0, and
	// further AUTH from that address refused for AuthLockout (3 if 0).
	AuthMaxFailures int
	// AuthFailureDelay is the pause before the reply to the first failed
	// AUTH, doubled for each further failure up to 16 times it (1s if 0).
	AuthFailureDelay time.Duration
	// AuthLockout is how long an address stays locked out after
	// AuthMaxFailures failures; its count of failures is forgotten after
	// as long without one (5 minutes if 0).
	AuthLockout time.Duration
	// AuthConcurrency bounds password checks (bcrypt) running at once in
	// the process, so that guesses cannot starve deliveries of CPU
	// (GOMAXPROCS-1, at least 1, if 0).
	AuthConcurrency int
	// TrackedAddresses bounds the addresses remembered for AUTH failures
	// and for log rate limiting; the least recently seen are forgotten
	// first (4096 if 0).
	TrackedAddresses int
	// RefusalLogInterval is the least time between two log lines about
	// refusals of one address for one reason; the next line says how many
	// were held back (1 minute if 0).
	RefusalLogInterval time.Duration
}

func (l Limits) withDefaults(maxConnections int) Limits {
	if l.MaxConnectionsPerIP <= 0 {
		l.MaxConnectionsPerIP = 20
	}
	switch {
	case l.ReservedConnections == 0:
		l.ReservedConnections = maxConnections / 5
	case l.ReservedConnections < 0:
		l.ReservedConnections = 0
	}
	if l.ReservedConnections >= maxConnections {
		l.ReservedConnections = maxConnections - 1
	}
	if l.SessionIdleTimeout <= 0 {
		l.SessionIdleTimeout = 5 * time.Minute
	}
	if l.MinDataRate <= 0 {
		l.MinDataRate = 500
	}
	if l.AuthMaxFailures <= 0 {
		l.AuthMaxFailures = 3
	}
	if l.AuthFailureDelay <= 0 {
		l.AuthFailureDelay = time.Second
	}
	if l.AuthLockout <= 0 {
		l.AuthLockout = 5 * time.Minute
	}
	if l.AuthConcurrency <= 0 {
		l.AuthConcurrency = max(1, runtime.GOMAXPROCS(0)-1)
	}
	if l.TrackedAddresses <= 0 {
		l.TrackedAddresses = 4096
	}
	if l.RefusalLogInterval <= 0 {
		l.RefusalLogInterval = time.Minute
	}
	return l
}

// authDelay is the pause before answering the nth failed AUTH.
func (l Limits) authDelay(n int) time.Duration {
	return l.AuthFailureDelay << min(max(n-1, 0), 4)
}

// Reasons for refusing or cutting a connection: the reason label of
// sealgate_connections_refused_total.
const (
	ReasonCapacity   = "capacity"      // MaxConnections reached
	ReasonReserved   = "reserved"      // only slots reserved for the allowed networks are left
	ReasonPerAddress = "per_address"   // MaxConnectionsPerIP reached
	ReasonIdle       = "idle"          // SessionIdleTimeout without progress
	ReasonSlow       = "slow"          // below MinDataRate
	ReasonAuth       = "auth_failures" // AuthMaxFailures reached, or locked out
)

// Recorder counts connections refused or cut, by reason (one of the
// Reason constants).
type Recorder interface {
	ConnectionRefused(reason string)
}

type noRecorder struct{}

func (noRecorder) ConnectionRefused(string) {}

// addrKey is the unit of per-address accounting: an IPv4 address, or the
// /64 of an IPv6 address (one customer's network, as a rule).
func addrKey(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	if a.Is4() {
		return netip.PrefixFrom(a, 32)
	}
	p, _ := a.Prefix(64)
	return p
}

// connTable counts sessions: in all, from outside the allowed networks,
// and per address.
type connTable struct {
	max, outsideMax, perAddr int

	mu      sync.Mutex
	active  int
	outside int
	byAddr  map[netip.Prefix]int
}

func newConnTable(maxConnections int, l Limits) *connTable {
	return &connTable{
		max:        maxConnections,
		outsideMax: maxConnections - l.ReservedConnections,
		perAddr:    l.MaxConnectionsPerIP,
		byAddr:     map[netip.Prefix]int{},
	}
}

// admit takes a slot for a client, or says why there is none.
func (t *connTable) admit(key netip.Prefix, trusted bool) (reason string, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.active >= t.max:
		return ReasonCapacity, false
	case !trusted && t.outside >= t.outsideMax:
		return ReasonReserved, false
	case t.byAddr[key] >= t.perAddr:
		return ReasonPerAddress, false
	}
	t.active++
	if !trusted {
		t.outside++
	}
	t.byAddr[key]++
	return "", true
}

// release gives back a slot taken by admit.
func (t *connTable) release(key netip.Prefix, trusted bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.active--
	if !trusted {
		t.outside--
	}
	if t.byAddr[key]--; t.byAddr[key] <= 0 {
		delete(t.byAddr, key)
	}
}

// penaltyBox remembers failed AUTH attempts per address, so that
// reconnecting does not reset the count. A count is forgotten after
// lockout without a failure.
type penaltyBox struct {
	max     int
	lockout time.Duration
	now     func() time.Time

	mu   sync.Mutex
	seen *lru[netip.Prefix, penalty]
}

type penalty struct {
	failures    int
	last        time.Time
	lockedUntil time.Time
}

func newPenaltyBox(l Limits, now func() time.Time) *penaltyBox {
	return &penaltyBox{max: l.AuthMaxFailures, lockout: l.AuthLockout, now: now, seen: newLRU[netip.Prefix, penalty](l.TrackedAddresses)}
}

// locked reports whether AUTH from key is refused for now.
func (p *penaltyBox) locked(key netip.Prefix) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	e, ok := p.seen.peek(key)
	return ok && p.now().Before(e.lockedUntil)
}

// fail records a failure of key and returns its count of recent
// failures; reaching the maximum locks key out.
func (p *penaltyBox) fail(key netip.Prefix) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	e, _ := p.seen.get(key)
	if now.Sub(e.last) > p.lockout {
		e.failures = 0
	}
	e.failures++
	e.last = now
	if e.failures >= p.max {
		e.lockedUntil = now.Add(p.lockout)
	}
	p.seen.put(key, e)
	return e.failures
}

// lru is a map bounded to size entries that forgets the least recently
// used first. It is not safe for concurrent use.
type lru[K comparable, V any] struct {
	size  int
	order *list.List // of K, most recent first
	items map[K]*lruItem[K, V]
}

type lruItem[K comparable, V any] struct {
	v    V
	elem *list.Element
}

func newLRU[K comparable, V any](size int) *lru[K, V] {
	return &lru[K, V]{size: max(size, 1), order: list.New(), items: map[K]*lruItem[K, V]{}}
}

func (l *lru[K, V]) get(k K) (V, bool) {
	it, ok := l.items[k]
	if !ok {
		var zero V
		return zero, false
	}
	l.order.MoveToFront(it.elem)
	return it.v, true
}

// peek is get without making k the most recent.
func (l *lru[K, V]) peek(k K) (V, bool) {
	it, ok := l.items[k]
	if !ok {
		var zero V
		return zero, false
	}
	return it.v, true
}

func (l *lru[K, V]) put(k K, v V) {
	if it, ok := l.items[k]; ok {
		it.v = v
		l.order.MoveToFront(it.elem)
		return
	}
	if len(l.items) >= l.size {
		oldest := l.order.Back()
		delete(l.items, oldest.Value.(K))
		l.order.Remove(oldest)
	}
	l.items[k] = &lruItem[K, V]{v: v, elem: l.order.PushFront(k)}
}
