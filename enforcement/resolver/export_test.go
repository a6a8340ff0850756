package resolver

import (
	"github.com/miekg/dns"
)

// Waiters is how many callers wait for the shared exchange of name/qtype
// (name fully qualified), for tests that must know everyone joined.
func (r *Resolver) Waiters(name string, qtype uint16) int {
	r.flights.mu.Lock()
	defer r.flights.mu.Unlock()
	if fl := r.flights.m[question{name: dns.CanonicalName(name), qtype: qtype}]; fl != nil {
		return fl.waiters
	}
	return 0
}
