package proxy

import (
	"crypto/tls"
	"fmt"

	"github.com/emersion/go-smtp"

	"sealgate/enforcement"
)

// Outcomes records what became of messages, per recipient domain (the
// status page). Its methods are called on the session's goroutines and
// must be safe for concurrent use and quick.
type Outcomes interface {
	// Delivered counts a message the MX accepted for domain, sent to a
	// host whose requirement came from source (enforcement.Source's
	// names) over TLS of tlsVersion ("TLS 1.3").
	Delivered(domain, source, tlsVersion string)
	// Deferred counts a 4xx reply our client got for domain: reason is
	// the failure kind (enforcement.Kind's names), "mx" for a 4xx reply
	// of the MX, "lost" for a transaction whose MX connection broke, or
	// "internal"; reply is the reply as the client saw it.
	Deferred(domain, reason, reply string)
}

type noOutcomes struct{}

func (noOutcomes) Delivered(domain, source, tlsVersion string) {}
func (noOutcomes) Deferred(domain, reason, reply string)       {}

var _ Outcomes = noOutcomes{}

// recordRefusal records the refusal r of a recipient of domain, when it
// is a deferral (4xx). A recipient sent to a later transaction because
// its route differs (452 4.5.3) is not one: nothing failed.
func (s *Server) recordRefusal(domain string, err error, r *smtp.SMTPError) {
	if o := otherRoute(domain); r.Code == o.Code && r.EnhancedCode == o.EnhancedCode && r.Message == o.Message {
		return
	}
	if reason, ok := deferralReason(err, r); ok {
		s.opts.Outcomes.Deferred(domain, reason, replyText(r))
	}
}

// recordData records the end of a message for every domain among rcpts:
// the MX's final reply, or the failure of the upstream transaction
// (err). A failure to read our own client's message is not the domains'
// doing and is not recorded.
func (s *Server) recordData(rcpts []string, up Peer, final *smtp.SMTPError, err error) {
	r := final
	if err != nil {
		if _, ok := enforcement.AsFailure(err); !ok {
			return
		}
		r = Reply(err)
	}
	for _, d := range rcptDomains(rcpts) {
		switch {
		case err == nil && r.Code/100 == 2:
			s.opts.Outcomes.Delivered(d, up.Host.Req.Source.String(), tls.VersionName(up.TLS.Version))
		default:
			if reason, ok := deferralReason(err, r); ok {
				s.opts.Outcomes.Deferred(d, reason, replyText(r))
			}
		}
	}
}

// deferralReason classifies the error behind the reply r, and reports
// false when r is not a deferral.
func deferralReason(err error, r *smtp.SMTPError) (string, bool) {
	if r == nil || r.Code/100 != 4 {
		return "", false
	}
	if f, ok := enforcement.AsFailure(err); ok {
		return f.Kind.String(), true
	}
	switch {
	case r == errInternal:
		return "internal", true
	case r.EnhancedCode == smtp.EnhancedCode{4, 4, 2}:
		return "lost", true
	}
	return "mx", true
}

// replyText is r as one reply line: "451 4.7.4 text".
func replyText(r *smtp.SMTPError) string {
	if r.EnhancedCode[0] <= 0 {
		return fmt.Sprintf("%d %s", r.Code, r.Message)
	}
	return fmt.Sprintf("%d %d.%d.%d %s", r.Code, r.EnhancedCode[0], r.EnhancedCode[1], r.EnhancedCode[2], r.Message)
}

// rcptDomains returns the distinct domains of rcpts, in order.
func rcptDomains(rcpts []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, to := range rcpts {
		if d, ok := recipientDomain(to); ok && !seen[d] {
			seen[d] = true
			out = append(out, d)
		}
	}
	return out
}
