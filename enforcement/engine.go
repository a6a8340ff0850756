package enforcement

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"

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

// Key identifies the route for sharing: recipients of several domains may
// use one upstream transaction only when their routes have equal keys.
func (r *Route) Key() string {
	var b strings.Builder
	for _, h := range r.Hosts {
		fmt.Fprintf(&b, "%s|%v|%d|%t|%s;", h.Name, h.Addrs, h.Port, h.ImplicitTLS, h.Req.String())
	}
	return b.String()
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
	Log   *slog.Logger
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
	domain = strings.ToLower(strings.TrimSuffix(domain, "."))
	if e.Relay != nil {
		return e.relayRoute(ctx, domain)
	}
	mx, err := e.DNS.LookupMX(ctx, domain)
	if err != nil {
		return nil, dnsFailure(domain, "MX", err)
	}
	if mx.Null {
		return nil, &Failure{Kind: KindNullMX, Domain: domain, Reason: "domain accepts no mail (null MX)"}
	}
	if len(mx.Hosts) == 0 {
		return nil, &Failure{Kind: KindNoDomain, Domain: domain, Reason: "no MX and no address records"}
	}
	var local *localpolicy.Entry
	if e.Local != nil {
		local, _ = e.Local.Lookup(domain)
	}
	var sts *mtasts.Policy
	if local == nil {
		if sts, err = e.stsPolicy(ctx, domain); err != nil {
			return nil, err
		}
	}
	route := &Route{Domain: domain}
	var lastErr error
	var deferred *Failure
	var excluded, excludedLocal []string
	for _, name := range mx.Hosts {
		addrs, err := e.DNS.LookupAddrs(ctx, name)
		if err != nil {
			lastErr = err
			e.logf(ctx, "MX host skipped", "domain", domain, "mx", name, "error", err)
			continue
		}
		if len(addrs.Addrs) == 0 {
			lastErr = fmt.Errorf("%s: no address records", name)
			continue
		}
		if local != nil {
			req, ok, err := e.localRequirement(ctx, local, domain, name, addrs.Name, mx.Secure && addrs.Secure)
			switch {
			case err != nil:
				deferred = &Failure{Kind: KindDNS, Domain: domain, Policy: "local policy " + local.Level.String(), Host: name,
					Reason: "TLSA lookup failed: " + err.Error(), Result: ResultDNSSECInvalid, Err: err}
			case !ok:
				excludedLocal = append(excludedLocal, name)
			default:
				route.Hosts = append(route.Hosts, Host{Name: name, Addrs: addrs.Addrs, Req: req})
			}
			continue
		}
		req := e.hostRequirement(name)
		daneApplies := false
		if mx.Secure && addrs.Secure {
			outcome, dreq, err := e.daneHost(ctx, domain, name, addrs.Name)
			switch outcome {
			case daneDefer:
				// Never downgrade: the host is unusable until its
				// TLSA records can be looked up.
				deferred = &Failure{Kind: KindDNS, Domain: domain, Policy: SourceDANE.String(), Host: name,
					Reason: "TLSA lookup failed: " + err.Error(), Result: ResultDNSSECInvalid, Err: err}
				e.logf(ctx, "MX host deferred", "domain", domain, "mx", name, "error", err)
				continue
			case daneAuth:
				req, daneApplies = dreq, true
			case daneEncrypt:
				daneApplies = true
				if e.floor() == LevelEncrypt {
					req = dreq
				}
			}
		}
		if !daneApplies && sts != nil {
			// RFC 8461 §2: hosts authenticated by DANE are exempt.
			r, ok := e.stsRequirement(sts, name)
			if !ok {
				excluded = append(excluded, name)
				e.logf(ctx, "MX host not allowed by MTA-STS policy", "domain", domain, "mx", name)
				continue
			}
			req = r
		}
		route.Hosts = append(route.Hosts, Host{Name: name, Addrs: addrs.Addrs, Req: req})
	}
	if len(route.Hosts) == 0 {
		if deferred != nil {
			return nil, deferred
		}
		if len(excludedLocal) > 0 {
			return nil, &Failure{Kind: KindTLS, Domain: domain, Policy: "local policy " + local.Level.String(),
				Reason: "no MX host has usable DNSSEC-secure TLSA records: " + strings.Join(excludedLocal, ", "), Result: ResultDANERequired}
		}
		if len(excluded) > 0 {
			return nil, &Failure{Kind: KindTLS, Domain: domain, Policy: "MTA-STS enforce",
				Reason: fmt.Sprintf("no MX host matches the policy (mx: %s; MX hosts: %s)", strings.Join(sts.MX, ", "), strings.Join(excluded, ", ")),
				Result: ResultValidationFailure}
		}
		if errors.Is(lastErr, ErrDNSTemporary) {
			return nil, dnsFailure(domain, "address of MX", lastErr)
		}
		return nil, &Failure{Kind: KindUnreachable, Domain: domain, Reason: "no MX host has an address", Err: lastErr}
	}
	return route, nil
}

// hostRequirement is the requirement for one MX host under the floor.
func (e *Engine) hostRequirement(host string) Requirement {
	return Requirement{
		Source:     SourceFloor,
		Level:      e.floor(),
		Mode:       e.floor().String(),
		Names:      []string{host},
		MinVersion: e.MinVersion,
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
