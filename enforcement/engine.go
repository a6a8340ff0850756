package enforcement

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"reflect"
	"strings"

	"sealgate/enforcement/dnsname"
	"sealgate/enforcement/localpolicy"
	"sealgate/enforcement/mtasts"
)

// Route is where and how the mail for a domain goes: the MX hosts to try
// in order, each with its requirement.
type Route struct {
	Domain string
	Hosts  []Host
	// Relay is true for a configured smarthost (no MX lookup).
	Relay bool
	// REQUIRETLS is true for a route that carries a REQUIRETLS message
	// (RFC 8689): set by Route.RequireTLS, which keeps only the hosts
	// that may carry it. An opener must also skip a host that does not
	// advertise REQUIRETLS after STARTTLS.
	REQUIRETLS bool
	// STSProblem is the TLS-RPT result type of the domain's MTA-STS
	// policy that could not be had (fetch, parse, WebPKI) while no policy
	// is in force; STSReason says why. Sessions report it (Route.Attempt).
	STSProblem, STSReason string
	// PolicyDomain is the TLS-RPT policy domain of the route's sessions
	// when it is not Domain: on a relay route, the relay's (RelayHost.
	// PolicyDomain), whose policies the sessions are held to.
	PolicyDomain string
	// NoReport marks a route whose sessions are not recorded for TLS-RPT
	// (the delivery of reports themselves).
	NoReport bool
}

// Host is one MX host with its addresses and requirement.
type Host struct {
	Name  string
	Addrs []netip.Addr
	// Port overrides the default MX port when non-zero.
	Port int
	// ImplicitTLS means TLS from the first byte (port 465), no STARTTLS.
	ImplicitTLS bool
	Req         Requirement
}

// Equal reports whether r and o are the same route but for their domain:
// recipients of several domains may share one upstream transaction only
// when their routes are equal. Every field counts, compared deeply, so a
// field added later can never merge routes that differ in it.
func (r *Route) Equal(o *Route) bool {
	if r == nil || o == nil {
		return r == o
	}
	a, b := *r, *o
	a.Domain, b.Domain = "", ""
	return reflect.DeepEqual(a, b)
}

// Engine computes routes.
type Engine struct {
	DNS DNS
	// Floor is the minimum level for every destination (LevelEncrypt if 0).
	Floor Level
	// MinVersion is the default minimum TLS version.
	MinVersion uint16
	// Relay, if set, replaces MX lookup: every domain goes through it.
	Relay *RelayHost
	// STS, if set, supplies MTA-STS policies.
	STS STSSource
	// Local, if set, is the local policy table; it overrides DANE and
	// MTA-STS for its destinations.
	Local LocalPolicy
	// Attempts, if set, receives the failures found while resolving
	// (DNS, TLSA, an MX host that an MTA-STS policy excludes), for
	// TLS-RPT.
	Attempts AttemptRecorder
	Log      *slog.Logger
}

func (e *Engine) floor() Level {
	if e.Floor == 0 {
		return LevelEncrypt
	}
	return e.Floor
}

// Resolve works out the route for a recipient domain. Errors are
// *Failure values.
func (e *Engine) Resolve(ctx context.Context, domain string) (*Route, error) {
	domain = dnsname.Normalize(domain)
	if e.Relay != nil {
		return e.relayRoute(ctx, domain)
	}
	mx, hosts, err := e.lookupMX(ctx, domain)
	if err != nil {
		e.recordDNS(domain, err)
		return nil, err
	}
	var local *localpolicy.Entry
	if e.Local != nil {
		local, _ = e.Local.Lookup(domain)
	}
	var sts *mtasts.Policy
	route := &Route{Domain: domain}
	if local == nil {
		if sts, route.STSProblem, route.STSReason, err = e.stsLookup(ctx, domain); err != nil {
			return nil, err
		}
	}
	var deferred *Failure
	var excluded []string
	for _, h := range hosts {
		req, ok, err := e.requirement(ctx, domain, mx.Secure && h.addrs.nameSecure(), h, local, sts)
		switch {
		case err != nil:
			// Never downgrade: the host is unusable until its TLSA
			// records can be looked up.
			deferred = &Failure{Kind: KindDNS, Domain: domain, Policy: req.Describe(), Host: h.name,
				Reason: "TLSA lookup failed: " + err.Error(), Result: ResultDNSSECInvalid, Err: err}
			e.logf(ctx, "MX host deferred", "domain", domain, "mx", h.name, "error", err)
			e.recordTLSALookup(domain, h.name, err)
		case !ok:
			excluded = append(excluded, h.name)
			e.recordExcluded(domain, h.name, req, local)
			e.logf(ctx, "MX host not allowed by policy", "domain", domain, "mx", h.name, "policy", req.Describe())
		default:
			route.Hosts = append(route.Hosts, Host{Name: h.name, Addrs: h.addrs.Addrs, Req: req})
		}
	}
	if len(route.Hosts) > 0 {
		return route, nil
	}
	switch {
	case deferred != nil:
		return nil, deferred
	case local != nil:
		return nil, &Failure{Kind: KindTLS, Domain: domain, Policy: "local policy " + local.Level.String(),
			Reason: "no MX host has usable DNSSEC-secure TLSA records: " + strings.Join(excluded, ", "), Result: ResultDANERequired}
	default:
		return nil, &Failure{Kind: KindTLS, Domain: domain, Policy: "MTA-STS enforce",
			Reason: fmt.Sprintf("no MX host matches the policy (mx: %s; MX hosts: %s)", strings.Join(sts.MX, ", "), strings.Join(excluded, ", ")),
			Result: ResultValidationFailure}
	}
}

// requirement is the requirement of one MX host: the local policy entry if
// there is one, else DANE when the MX and address records are secure, else
// MTA-STS, else the floor. ok is false when a policy excludes the host;
// an error means its TLSA records could not be looked up.
func (e *Engine) requirement(ctx context.Context, domain string, secure bool, h mxHost, local *localpolicy.Entry, sts *mtasts.Policy) (Requirement, bool, error) {
	if local != nil {
		return e.localRequirement(ctx, local, domain, h, secure)
	}
	if secure {
		outcome, dreq, err := e.daneHost(ctx, domain, h)
		switch outcome {
		case daneDefer:
			return Requirement{Source: SourceDANE}, false, err
		case daneAuth:
			return dreq, true, nil
		case daneEncrypt:
			// Only unusable TLSA records: DANE makes TLS mandatory
			// but authenticates nothing, so it must not weaken
			// another policy (RFC 8461 §2). MTA-STS still filters and
			// verifies the host; without it a verify floor applies.
			if sts == nil && e.floor() == LevelEncrypt {
				return dreq, true, nil
			}
		}
	}
	if sts != nil {
		// RFC 8461 §2: hosts with usable TLSA records never get here.
		req, ok := e.stsRequirement(sts, h.name)
		return req, ok, nil
	}
	return e.hostRequirement(h), true, nil
}

// mxHost is an MX host with its address records.
type mxHost struct {
	name  string
	addrs AddrResult
	// vouched is true when an attacker on the DNS path cannot have
	// chosen name: it comes from a DNSSEC-secure MX RRset, it is the
	// next-hop domain itself (implicit MX), or the configuration named
	// it (a relay in brackets).
	vouched bool
	// port is the port of the TLSA owner name (_PORT._tcp.<name>): a
	// relay's port (RFC 7672 §2.2.2); 25 if 0.
	port int
}

func (h mxHost) tlsaPort() int {
	if h.port == 0 {
		return 25
	}
	return h.port
}

// lookupMX resolves the MX hosts of domain and their addresses, leaving
// out hosts without addresses. Errors are *Failure values.
func (e *Engine) lookupMX(ctx context.Context, domain string) (MXResult, []mxHost, error) {
	mx, err := e.DNS.LookupMX(ctx, domain)
	if err != nil {
		return mx, nil, dnsFailure(domain, "MX", err)
	}
	if mx.Null {
		return mx, nil, &Failure{Kind: KindNullMX, Domain: domain, Reason: "domain accepts no mail (null MX)"}
	}
	if len(mx.Hosts) == 0 {
		return mx, nil, &Failure{Kind: KindNoDomain, Domain: domain, Reason: "no MX and no address records"}
	}
	var hosts []mxHost
	var lastErr error
	for _, name := range mx.Hosts {
		addrs, err := e.DNS.LookupAddrs(ctx, name)
		if err == nil && len(addrs.Addrs) == 0 {
			err = fmt.Errorf("%s: no address records", name)
		}
		if err != nil {
			lastErr = err
			e.logf(ctx, "MX host skipped", "domain", domain, "mx", name, "error", err)
			continue
		}
		hosts = append(hosts, mxHost{name: name, addrs: addrs, vouched: mx.Secure || mx.Implicit})
	}
	if len(hosts) == 0 {
		if errors.Is(lastErr, ErrDNSTemporary) {
			return mx, nil, dnsFailure(domain, "address of MX", lastErr)
		}
		return mx, nil, &Failure{Kind: KindUnreachable, Domain: domain, Reason: "no MX host has an address", Err: lastErr}
	}
	return mx, hosts, nil
}

// hostRequirement is the requirement for one MX host under the floor.
func (e *Engine) hostRequirement(h mxHost) Requirement {
	return Requirement{
		Source:       SourceFloor,
		Level:        e.floor(),
		Mode:         e.floor().String(),
		Names:        []string{h.name},
		NamesVouched: h.vouched,
		MinVersion:   e.MinVersion,
	}
}

func (e *Engine) logf(ctx context.Context, msg string, args ...any) {
	if e.Log != nil {
		e.Log.DebugContext(ctx, msg, args...)
	}
}

func dnsFailure(domain, what string, err error) *Failure {
	if errors.Is(err, ErrNotFound) {
		return &Failure{Kind: KindNoDomain, Domain: domain, Reason: "domain does not exist", Err: err}
	}
	return &Failure{Kind: KindDNS, Domain: domain, Reason: "DNS lookup of " + what + " failed: " + err.Error(), Err: err}
}
