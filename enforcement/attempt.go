package enforcement

import (
	"errors"
	"net/netip"
	"strings"
	"time"

	"sealgate/enforcement/localpolicy"
	"sealgate/enforcement/mtasts"
)

// TLS-RPT policy types (RFC 8460 §4.4).
const (
	PolicyTypeSTS  = "sts"
	PolicyTypeTLSA = "tlsa"
	PolicyTypeNone = "no-policy-found"
)

// Attempt is one upstream session, or one attempt that failed before a
// session could begin (a DNS or TLSA lookup, an MTA-STS policy fetch),
// with the fields that RFC 8460 §4.4 aggregates. A session counts once,
// however many transactions it carries.
type Attempt struct {
	// Time is when it happened; the recorder's clock if zero.
	Time time.Time
	// Domain is the policy domain (the recipient domain).
	Domain string
	// PolicyType is PolicyTypeSTS, PolicyTypeTLSA or PolicyTypeNone.
	PolicyType string
	// Policy holds the policy strings (TLSA records, MTA-STS policy lines).
	Policy []string
	// MXHosts are the MX host patterns of the policy.
	MXHosts []string
	// Result is the TLS-RPT result type of a failure; "" for a success.
	Result string
	// SendingIP and ReceivingIP are the local and remote addresses, if
	// a connection was made.
	SendingIP, ReceivingIP netip.Addr
	// MXHost is the receiving MX host name.
	MXHost string
	// Reason is the failure-reason-code: a short text for humans.
	Reason string
}

// AttemptRecorder receives every attempt, for TLS-RPT. RecordAttempt must
// not block.
type AttemptRecorder interface {
	RecordAttempt(Attempt)
}

// Attempt returns the attempt of a session with host h of the route, with
// the policy fields of h's requirement, the result and the reason. A
// route whose MTA-STS policy could not be had (STSProblem) reports that
// problem under policy type "sts" when the session itself succeeded.
func (r *Route) Attempt(h Host, result, reason string) Attempt {
	domain := r.Domain
	if r.PolicyDomain != "" {
		domain = r.PolicyDomain
	}
	a := h.Req.attempt(domain, h.Name)
	a.Result, a.Reason = result, reason
	if r.STSProblem != "" && a.PolicyType == PolicyTypeNone {
		a.PolicyType = PolicyTypeSTS
		if a.Result == "" {
			a.Result, a.Reason = r.STSProblem, r.STSReason
		}
	}
	return a
}

// attempt is an attempt with the policy fields of r for host of domain:
// DANE reports its TLSA records, MTA-STS its policy lines and mx patterns,
// the floor and a local policy "no-policy-found" (the domain published
// nothing that was applied).
func (r Requirement) attempt(domain, host string) Attempt {
	a := Attempt{Domain: domain, MXHost: host, PolicyType: PolicyTypeNone}
	switch r.Source {
	case SourceDANE:
		a.PolicyType, a.Policy, a.MXHosts = PolicyTypeTLSA, r.Policy, []string{host}
	case SourceMTASTS:
		a.PolicyType, a.Policy = PolicyTypeSTS, r.Policy
		for _, l := range r.Policy {
			if mx, ok := strings.CutPrefix(l, "mx: "); ok {
				a.MXHosts = append(a.MXHosts, mx)
			}
		}
	}
	return a
}

func (e *Engine) record(a Attempt) {
	if e.Attempts != nil {
		e.Attempts.RecordAttempt(a)
	}
}

// recordDNS records a DNS failure (err, a *Failure of KindDNS) found
// while resolving the hosts of policy domain; other errors are not
// TLS-RPT failures, nor is a lookup no DNS server answered
// (ErrDNSUnanswered: our resolver is down or slow, which says nothing
// about the domain).
func (e *Engine) recordDNS(domain string, err error) {
	if errors.Is(err, ErrDNSUnanswered) {
		return
	}
	if f, ok := AsFailure(err); ok && f.Kind == KindDNS {
		e.record(Attempt{Domain: domain, PolicyType: PolicyTypeNone, Result: ResultDNSSECInvalid, Reason: f.Reason})
	}
}

// recordTLSALookup records host of policy domain, deferred because its
// TLSA records could not be looked up (err), unless no DNS server
// answered (see recordDNS).
func (e *Engine) recordTLSALookup(domain, host string, err error) {
	if errors.Is(err, ErrDNSUnanswered) {
		return
	}
	e.record(Attempt{Domain: domain, PolicyType: PolicyTypeTLSA, MXHosts: []string{host}, MXHost: host,
		Result: ResultDNSSECInvalid, Reason: "TLSA lookup failed: " + err.Error()})
}

// recordExcluded records host of policy domain, which req excludes: a
// local entry (dane-only without usable secure TLSA records: RFC 8460
// §4.3.2.1 "dane-required") or else an MTA-STS enforce policy that does
// not name it.
func (e *Engine) recordExcluded(domain, host string, req Requirement, local *localpolicy.Entry) {
	a := req.attempt(domain, host)
	if local != nil {
		a.Result, a.Reason = ResultDANERequired, "no usable DNSSEC-secure TLSA records (local policy "+local.Level.String()+")"
	} else {
		a.Result, a.Reason = ResultValidationFailure, "MX host not allowed by the MTA-STS policy"
	}
	e.record(a)
}

// stsResult is the TLS-RPT result type of an MTA-STS lookup problem
// (RFC 8460 §4.3.2).
func stsResult(err error) string {
	var fe *mtasts.FetchError
	switch {
	case errors.As(err, &fe):
		return fe.Kind.String()
	case errors.Is(err, mtasts.ErrInvalidRecord), errors.Is(err, mtasts.ErrMultipleRecords):
		return ResultSTSInvalid
	}
	return ResultSTSFetchError
}
