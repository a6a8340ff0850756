package localpolicy

import (
	"strconv"
	"strings"

	"sealgate/enforcement/dnsname"
)

// Policy is a parsed policy file. A nil *Policy is an empty one. It is
// immutable after Parse and safe for concurrent use.
type Policy struct {
	// File is the name given to Parse (the path given to Load).
	File string

	byDest  map[string]*Entry
	entries []*Entry // file order
}

// Len returns the number of entries.
func (p *Policy) Len() int {
	if p == nil {
		return 0
	}
	return len(p.entries)
}

// Entries returns the entries in file order. The slice is the caller's;
// the entries are shared and must not be modified.
func (p *Policy) Entries() []*Entry {
	if p == nil {
		return nil
	}
	return append([]*Entry(nil), p.entries...)
}

// Lookup returns the entry for a next-hop destination, as Postfix's
// smtp_tls_policy_maps lookup does: the exact key first; then, for a plain
// domain (no brackets, no port), the ".parent" entries from the nearest
// parent upwards ("a.b.example.org" tries ".b.example.org", ".example.org",
// ".org"). A ".example.org" entry never matches example.org itself. Case is
// ignored, and so is a trailing dot on a domain.
func (p *Policy) Lookup(domain string) (*Entry, bool) {
	if p.Len() == 0 || domain == "" {
		return nil, false
	}
	key := strings.ToLower(domain)
	plain := !strings.ContainsAny(key, "[]:")
	if plain {
		key = strings.TrimSuffix(key, ".")
	}
	if key == "" {
		return nil, false
	}
	if e, ok := p.byDest[key]; ok {
		return e, true
	}
	if !plain {
		return nil, false
	}
	for name := key; ; {
		i := strings.IndexByte(name[1:], '.')
		if i < 0 {
			return nil, false
		}
		name = name[i+1:]
		if e, ok := p.byDest[name]; ok {
			return e, true
		}
	}
}

// LookupNexthop finds the entry of a relay host given as parts: host, port
// and whether MX records are looked up for it (Postfix "host:port") or not
// ("[host]:port"). It tries the key with the port, and for port 25 also the
// key without it, since Postfix writes a default port nowhere
// (relayhost = [smtp.example.net] is looked up as "[smtp.example.net]").
// Relay keys never match parent-domain entries.
func (p *Policy) LookupNexthop(host string, port int, mxLookup bool) (*Entry, bool) {
	host = dnsname.Normalize(host)
	if host == "" || p.Len() == 0 {
		return nil, false
	}
	key := host
	if !mxLookup {
		key = "[" + host + "]"
	}
	if e, ok := p.byDest[key+":"+strconv.Itoa(port)]; ok {
		return e, true
	}
	if port == 25 {
		e, ok := p.byDest[key]
		return e, ok
	}
	return nil, false
}

// equal reports whether p and q hold the same entries in the same order,
// the same CA certificates for each tafile included.
func (p *Policy) equal(q *Policy) bool {
	if p.Len() != q.Len() {
		return false
	}
	for i, a := range p.Entries() {
		if !a.equal(q.entries[i]) {
			return false
		}
	}
	return true
}
