package enforcement

import (
	"context"
	"fmt"

	"sealgate/enforcement/localpolicy"
)

// LocalPolicy is the administrator's policy table (localpolicy.Policy).
type LocalPolicy interface {
	Lookup(domain string) (*localpolicy.Entry, bool)
	LookupNexthop(host string, port int, mxLookup bool) (*localpolicy.Entry, bool)
}

var _ LocalPolicy = (*localpolicy.Policy)(nil)

// localRequirement is the requirement of a local policy entry for h, an
// MX host of nexthop. For the dane levels the TLSA lookup decides;
// ok is false when the host must not be used (dane-only without usable
// TLSA records).
func (e *Engine) localRequirement(ctx context.Context, entry *localpolicy.Entry, nexthop string, h mxHost, secureDNS bool) (req Requirement, ok bool, err error) {
	req = Requirement{
		Source:     SourceLocal,
		Mode:       entry.Level.String(),
		MinVersion: e.MinVersion,
		MaxVersion: entry.MaxVersion,
	}
	if entry.MinVersion != 0 {
		req.MinVersion = entry.MinVersion
	}
	switch entry.Level {
	case localpolicy.LevelEncrypt:
		req.Level = LevelEncrypt
	case localpolicy.LevelVerify, localpolicy.LevelSecure:
		req.Level = LevelVerify
		req.Names = entry.ReferenceNames(nexthop, h.name)
		// Only match=hostname draws a name from the MX lookup: the
		// names are vouched for unless it adds one that DNS chose.
		req.NamesVouched = h.vouched || len(req.Names) == len(entry.ReferenceNames(nexthop, ""))
		req.Roots, req.RootsName = entry.Roots, entry.RootsFile
	case localpolicy.LevelFingerprint:
		req.Level = LevelFingerprint
		req.Fingerprints = entry.Fingerprints
	case localpolicy.LevelDANE, localpolicy.LevelDANEOnly:
		outcome := daneNone
		var dreq Requirement
		if secureDNS {
			outcome, dreq, err = e.daneHost(ctx, nexthop, h)
			if outcome == daneDefer {
				return req, false, err
			}
		}
		if outcome == daneAuth {
			dreq.Source, dreq.Mode = SourceLocal, entry.Level.String()
			dreq.MaxVersion = req.MaxVersion
			if entry.MinVersion != 0 {
				dreq.MinVersion = entry.MinVersion
			}
			return dreq, true, nil
		}
		if entry.Level == localpolicy.LevelDANEOnly {
			return req, false, nil
		}
		// dane without usable TLSA records: TLS stays mandatory (Postfix
		// would fall back to may; sealgate never sends in cleartext).
		req.Level = LevelEncrypt
	default:
		return req, false, fmt.Errorf("local policy: unknown level %v", entry.Level)
	}
	return req, true, nil
}
