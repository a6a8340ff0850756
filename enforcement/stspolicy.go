package enforcement

import (
	"context"
	"errors"

	"sealgate/enforcement/mtasts"
)

// STSSource supplies the MTA-STS policy in force for a domain
// (mtasts.Manager).
type STSSource interface {
	Policy(ctx context.Context, domain string) (mtasts.Lookup, error)
}

var _ STSSource = (*mtasts.Manager)(nil)

// stsLookup returns the MTA-STS policy that matters for routing (enforce
// or testing; nil for none or no policy), with the TLS-RPT result type
// and reason of a problem (fetch, parse, WebPKI) that left no policy in
// force; a cached policy that stays in force reports nothing.
func (e *Engine) stsLookup(ctx context.Context, domain string) (*mtasts.Policy, string, string, error) {
	if e.STS == nil {
		return nil, "", "", nil
	}
	l, err := e.STS.Policy(ctx, domain)
	if err != nil {
		return nil, "", "", &Failure{Kind: KindLocal, Domain: domain, Policy: SourceMTASTS.String(), Reason: "policy cache unavailable: " + err.Error(), Err: err}
	}
	var result, reason string
	if l.Problem != nil {
		e.logf(ctx, "MTA-STS problem", "domain", domain, "status", l.Status.String(), "error", l.Problem)
		// Not reported: no record at all, or a lookup our own DNS
		// resolver left unanswered (recordDNS says why).
		if l.Policy == nil && !errors.Is(l.Problem, mtasts.ErrNoRecord) && !errors.Is(l.Problem, ErrDNSUnanswered) {
			result, reason = stsResult(l.Problem), l.Problem.Error()
		}
	}
	if l.Policy == nil || l.Policy.Mode == mtasts.ModeNone {
		return nil, result, reason, nil
	}
	return l.Policy, "", "", nil
}

// stsRequirement is the requirement an MTA-STS policy puts on host, and
// false when an enforce policy does not allow the host at all.
func (e *Engine) stsRequirement(p *mtasts.Policy, host string) (Requirement, bool) {
	req := Requirement{
		Source:     SourceMTASTS,
		Level:      LevelVerify,
		Mode:       p.Mode.String(),
		Names:      []string{host},
		MinVersion: e.MinVersion,
		Policy:     p.Lines(),
		// An enforce policy names the MX hosts it allows.
		NamesVouched: p.Mode == mtasts.ModeEnforce,
	}
	if p.Mode == mtasts.ModeTesting {
		req.Testing, req.Floor = true, e.floor()
		return req, true
	}
	return req, p.Match(host)
}
