package resolver

import (
	"container/list"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// Cache defaults.
const (
	// DefaultCacheSize bounds the replies a Cache keeps when
	// CacheOptions.Size is zero.
	DefaultCacheSize = 10000
	// DefaultCacheMaxTTL caps how long a reply is kept when
	// CacheOptions.MaxTTL is zero.
	DefaultCacheMaxTTL = time.Hour
)

// CacheOptions configure a Cache. The zero value gives the defaults.
type CacheOptions struct {
	// Size bounds the replies kept; the least recently used one makes
	// room. Zero means DefaultCacheSize.
	Size int
	// MaxTTL caps how long a reply is kept whatever its TTL. Zero means
	// DefaultCacheMaxTTL.
	MaxTTL time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Cache keeps the replies of the Resolver's exchanges for their TTL, keyed
// by query name and type, so that the hot path asks the network only for
// what it does not know yet. It sits where the reply of one (name, type)
// question is final: after the choice among servers, the TCP retry of a
// truncated reply and the trust decision on the AD flag (a reply from a
// server whose AD flag is not believed is stored insecure, never secure).
// CNAME chains are followed above it, each hop's reply cached under its
// own question, so the security of a chain is worked out from the same
// replies as without the cache.
//
// What is kept, and for how long:
//   - an answer with records of the type asked for: the lowest TTL of the
//     answer section (the chain's CNAMEs and RRSIGs included);
//   - an answer that ends at a CNAME the server did not follow (no SOA):
//     the lowest TTL of its CNAMEs;
//   - NXDOMAIN and NODATA (RFC 2308 §5): the lower of the SOA record's
//     TTL and its MINIMUM field, from the authority section (and of the
//     CNAMEs leading there); a negative reply without SOA is not kept;
//   - SERVFAIL, REFUSED, timeouts and every other failure: nothing, so a
//     failure is never turned into an answer, and the next message asks
//     again (concurrent identical questions share one exchange anyway).
//
// Every TTL is capped at MaxTTL; a TTL of 0 is not kept. Replies in the
// cache are shared and never modified. A Cache is safe for concurrent use.
type Cache struct {
	size   int
	maxTTL time.Duration
	now    func() time.Time

	mu      sync.Mutex
	entries map[question]*list.Element
	lru     list.List // of *cacheEntry, most recently used at the front
}

// question is the key of a reply: a canonical name and a type.
type question struct {
	name  string
	qtype uint16
}

type cacheEntry struct {
	q       question
	msg     *dns.Msg
	expires time.Time
}

// NewCache returns an empty cache.
func NewCache(o CacheOptions) *Cache {
	c := &Cache{size: o.Size, maxTTL: o.MaxTTL, now: o.Now, entries: make(map[question]*list.Element)}
	if c.size <= 0 {
		c.size = DefaultCacheSize
	}
	if c.maxTTL <= 0 {
		c.maxTTL = DefaultCacheMaxTTL
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c
}

// Len returns the number of replies kept, expired ones not yet dropped
// included.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}

// get returns the unexpired reply to q, or nil.
func (c *Cache) get(q question) *dns.Msg {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[q]
	if !ok {
		return nil
	}
	e := el.Value.(*cacheEntry)
	if !c.now().Before(e.expires) {
		c.lru.Remove(el)
		delete(c.entries, q)
		return nil
	}
	c.lru.MoveToFront(el)
	return e.msg
}

// put keeps msg, the reply to q, for as long as its TTLs allow; a reply
// that may not be kept leaves the cache as it was.
func (c *Cache) put(q question, msg *dns.Msg) {
	ttl, ok := replyTTL(msg, q.qtype)
	if !ok {
		return
	}
	ttl = min(ttl, c.maxTTL)
	e := &cacheEntry{q: q, msg: msg, expires: c.now().Add(ttl)}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[q]; ok {
		el.Value = e
		c.lru.MoveToFront(el)
		return
	}
	for c.lru.Len() >= c.size {
		oldest := c.lru.Back()
		c.lru.Remove(oldest)
		delete(c.entries, oldest.Value.(*cacheEntry).q)
	}
	c.entries[q] = c.lru.PushFront(e)
}

// replyTTL says how long a NOERROR or NXDOMAIN reply to a question of type
// qtype may be kept (see Cache); false means not at all.
func replyTTL(msg *dns.Msg, qtype uint16) (time.Duration, bool) {
	if msg.Rcode != dns.RcodeSuccess && msg.Rcode != dns.RcodeNameError {
		return 0, false
	}
	ttl, positive := uint32(1<<32-1), false
	for _, rr := range msg.Answer {
		h := rr.Header()
		ttl = min(ttl, h.Ttl)
		positive = positive || h.Rrtype == qtype
	}
	var soa *dns.SOA
	for _, rr := range msg.Ns {
		if s, ok := rr.(*dns.SOA); ok {
			soa = s
			break
		}
	}
	switch {
	case msg.Rcode == dns.RcodeSuccess && positive:
		return seconds(ttl)
	case soa != nil:
		// NXDOMAIN or NODATA, perhaps at the end of a CNAME chain.
		return seconds(min(ttl, soa.Hdr.Ttl, soa.Minttl))
	case msg.Rcode == dns.RcodeSuccess && len(msg.Answer) > 0:
		// A chain of CNAMEs that the server did not follow to its end:
		// no negative assertion, the next hop is asked for by itself.
		return seconds(ttl)
	}
	return 0, false
}

func seconds(ttl uint32) (time.Duration, bool) {
	return time.Duration(ttl) * time.Second, ttl > 0
}
