package enforcement

import (
	"context"

	"sealgate/enforcement/mtasts"
)

// STSSource supplies the MTA-STS policy in force for a domain
// (mtasts.Manager).
type STSSource interface {
	Policy(ctx context.Context, domain string) (mtasts.Lookup, error)
}

var _ STSSource = (*mtasts.Manager)(nil)

// stsPolicy returns the MTA-STS policy that matters for routing: enforce
// or testing; nil for none or no policy.
func (e *Engine) stsPolicy(ctx context.Context, domain string) (*mtasts.Policy, error) {
	if e.STS == nil {
		return nil, nil
	}
	l, err := e.STS.Policy(ctx, domain)
	if err != nil {
		return nil, &Failure{Kind: KindLocal, Domain: domain, Policy: SourceMTASTS.String(), Reason: "policy cache unavailable: " + err.Error(), Err: err}
	}
	if l.Problem != nil {
		e.logf(ctx, "MTA-STS problem", "domain", domain, "status", l.Status.String(), "error", l.Problem)
	}
	if l.Policy == nil || l.Policy.Mode == mtasts.ModeNone {
		return nil, nil
	}
	return l.Policy, nil
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
