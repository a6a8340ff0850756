package upstream

import (
	"crypto/sha256"
	"crypto/tls"
	"net"
	"reflect"
	"sync"
	"time"

	"sealgate/enforcement"
)

// Pool keeps verified upstream connections between transactions, so that
// a busy destination costs one TCP connection and one TLS handshake per
// many messages rather than per message.
//
// A connection returns to the pool only after a transaction that ended
// cleanly (the MX's final reply, or a transaction reset before its
// message), and after a successful RSET. It serves a later transaction
// only for a host of the same name, address and port, under an equal
// requirement (every field: a connection verified under a weaker
// requirement never serves a stronger one, nor the reverse), with the
// same client certificate, and for a REQUIRETLS route only if the MX
// advertised REQUIRETLS. A connection that failed in any way is closed,
// never pooled. The zero values of the fields have the documented
// defaults.
type Pool struct {
	// IdleTimeout closes a connection idle for that long (30s if 0).
	IdleTimeout time.Duration
	// MaxIdle bounds the idle connections per host address (8 if 0).
	MaxIdle int
	// MaxReuse bounds the transactions of one connection (100 if 0); 1
	// turns reuse off.
	MaxReuse int

	mu     sync.Mutex
	idle   map[poolKey][]*pooled
	closed bool
	wg     sync.WaitGroup // releases in progress
}

// poolKey is where a connection goes; the requirement and the client
// certificate are compared in full when one is taken.
type poolKey struct {
	host string
	addr string // IP:port
}

type pooled struct {
	c     *Conn
	timer *time.Timer
}

func (p *Pool) idleTimeout() time.Duration { return orDefault(p.IdleTimeout, 30*time.Second) }

func (p *Pool) maxIdle() int {
	if p.MaxIdle > 0 {
		return p.MaxIdle
	}
	return 8
}

func (p *Pool) maxReuse() int {
	if p.MaxReuse > 0 {
		return p.MaxReuse
	}
	return 100
}

// take returns an idle connection to host h at addr that may serve route,
// or nil. A connection found closed by the MX while it was idle is closed
// here and the next one tried, so that nothing is ever sent on it.
func (p *Pool) take(route *enforcement.Route, h enforcement.Host, addr string, certID [32]byte) *Conn {
	if p == nil {
		return nil
	}
	key := poolKey{host: h.Name, addr: addr}
	var dead []*Conn
	defer func() {
		// Closed outside the lock: a TLS close may wait on the socket.
		for _, c := range dead {
			c.Abort()
			c.Close()
		}
	}()
	p.mu.Lock()
	defer p.mu.Unlock()
	list := p.idle[key]
	for i := len(list) - 1; i >= 0; i-- {
		e := list[i]
		c := e.c
		if !sameHost(c.Host, h) || c.certID != certID || c.Route.Relay != route.Relay {
			continue
		}
		if route.REQUIRETLS && !c.Supports("REQUIRETLS") {
			continue
		}
		list = append(list[:i], list[i+1:]...)
		p.idle[key] = list
		e.timer.Stop()
		if !alive(c.raw) {
			dead = append(dead, c)
			continue
		}
		c.Route = route
		c.reused = true
		return c
	}
	return nil
}

// release takes c back after a clean transaction: RSET, then into the
// pool, or QUIT when it served its share or the pool is full. It runs in
// the background so that the client's next command waits for neither.
func (p *Pool) release(c *Conn) {
	p.mu.Lock()
	if p.closed || c.Broken() {
		p.mu.Unlock()
		c.Close()
		return
	}
	p.wg.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.wg.Done()
		if c.uses >= p.maxReuse() {
			c.Close()
			return
		}
		if err := c.Reset(); err != nil {
			// A refused RSET leaves the state unknown: QUIT (Close
			// sends none on a broken connection).
			c.Close()
			return
		}
		key := poolKey{host: c.Host.Name, addr: c.Addr}
		p.mu.Lock()
		if p.closed || len(p.idle[key]) >= p.maxIdle() {
			p.mu.Unlock()
			c.Close()
			return
		}
		if p.idle == nil {
			p.idle = map[poolKey][]*pooled{}
		}
		e := &pooled{c: c}
		e.timer = time.AfterFunc(p.idleTimeout(), func() { p.expire(key, e) })
		p.idle[key] = append(p.idle[key], e)
		p.mu.Unlock()
	}()
}

// expire closes a connection that stayed idle for IdleTimeout.
func (p *Pool) expire(key poolKey, e *pooled) {
	p.mu.Lock()
	list := p.idle[key]
	for i, x := range list {
		if x == e {
			p.idle[key] = append(list[:i], list[i+1:]...)
			if len(p.idle[key]) == 0 {
				delete(p.idle, key)
			}
			p.mu.Unlock()
			e.c.Close()
			return
		}
	}
	p.mu.Unlock()
}

// Idle returns the number of idle connections.
func (p *Pool) Idle() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, l := range p.idle {
		n += len(l)
	}
	return n
}

// Close ends every idle connection with QUIT, waits for releases in
// progress, and pools nothing from then on.
func (p *Pool) Close() {
	p.mu.Lock()
	p.closed = true
	var all []*pooled
	for _, l := range p.idle {
		all = append(all, l...)
	}
	p.idle = nil
	p.mu.Unlock()
	p.wg.Wait()
	var wg sync.WaitGroup
	for _, e := range all {
		e.timer.Stop()
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.c.Close()
		}()
	}
	wg.Wait()
}

// sameHost reports whether a and b are the same host under the same
// requirement; the address list may differ (the address is in the key).
func sameHost(a, b enforcement.Host) bool {
	a.Addrs, b.Addrs = nil, nil
	return reflect.DeepEqual(a, b)
}

// certIdentity identifies the client certificate presented upstream, so
// that a certificate reloaded since a connection was made is not reused
// under the old one.
func certIdentity(get func(*tls.CertificateRequestInfo) (*tls.Certificate, error)) [32]byte {
	if get == nil {
		return [32]byte{}
	}
	cert, err := get(&tls.CertificateRequestInfo{})
	if err != nil || cert == nil || len(cert.Certificate) == 0 {
		return [32]byte{}
	}
	return sha256.Sum256(cert.Certificate[0])
}

// alive reports whether an idle connection is still open and quiet: the
// MX has neither closed it nor sent anything (an idle MX that gives up
// sends 421 and closes).
func alive(c net.Conn) bool {
	s := PeekSocket(c)
	return s == SocketQuiet || s == SocketUnknown
}
