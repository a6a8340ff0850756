package enforcement

import (
	"errors"
	"fmt"
)

// Kind classifies why a recipient cannot be delivered now. The proxy maps
// each kind to exactly one SMTP reply (see DESIGN.md, "Reply codes").
type Kind int

// Kinds of failure.
const (
	KindNoSTARTTLS  Kind = iota + 1 // 451 4.7.4
	KindTLS                         // 451 4.7.5: handshake, certificate, TLSA, MX not allowed
	KindDNS                         // 451 4.4.3
	KindUnreachable                 // 451 4.4.1
	KindLost                        // 451 4.4.2
	KindNullMX                      // 556 5.1.10
	KindNoDomain                    // 550 5.1.2
	KindRequireTLS                  // 550 5.7.30
	KindLocal                       // 451 4.3.0: our own state is unavailable
	KindAuth                        // 451 4.7.8: the relay refused our credentials
	KindSMTPUTF8                    // 550 5.6.7: the MX does not support SMTPUTF8 (RFC 6531 §3.4)
)

func (k Kind) String() string {
	switch k {
	case KindNoSTARTTLS:
		return "starttls"
	case KindTLS:
		return "tls"
	case KindDNS:
		return "dns"
	case KindUnreachable:
		return "unreachable"
	case KindLost:
		return "lost"
	case KindNullMX:
		return "null-mx"
	case KindNoDomain:
		return "no-domain"
	case KindRequireTLS:
		return "requiretls"
	case KindLocal:
		return "local"
	case KindAuth:
		return "relay-auth"
	case KindSMTPUTF8:
		return "smtputf8"
	}
	return fmt.Sprintf("unknown(%d)", int(k))
}

// Failure is a refusal with its precise cause. Its message is the text of
// the SMTP reply: "example.org: MTA-STS enforce: mx1.example.org:
// certificate not valid for name".
type Failure struct {
	Kind   Kind
	Domain string
	// Policy describes the requirement source ("DANE", "MTA-STS enforce",
	// "local policy", "floor").
	Policy string
	Host   string
	Reason string
	// Result is the TLS-RPT result type, if any.
	Result string
	Err    error
}

func (f *Failure) Error() string {
	s := f.Domain + ": "
	if f.Policy != "" {
		s += f.Policy + ": "
	}
	if f.Host != "" {
		s += f.Host + ": "
	}
	return s + f.Reason
}

func (f *Failure) Unwrap() error { return f.Err }

// AsFailure returns the *Failure in err's chain, if any.
func AsFailure(err error) (*Failure, bool) {
	var f *Failure
	ok := errors.As(err, &f)
	return f, ok
}

// Worse reports whether kind a is the more telling cause to report when
// several MX hosts failed differently: a TLS failure says more than a
// missing STARTTLS, which says more than an unreachable host.
func Worse(a, b Kind) bool { return rank(a) > rank(b) }

func rank(k Kind) int {
	switch k {
	case KindAuth:
		return 5
	case KindTLS:
		return 4
	case KindNoSTARTTLS:
		return 3
	case KindLost:
		return 2
	case KindUnreachable:
		return 1
	}
	return 0
}
