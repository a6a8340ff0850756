package dane

import "strconv"

// Kind classifies a DANE authentication failure. Kinds are ordered: among the
// failures of several records, the greatest kind is the most specific and is
// the one reported.
type Kind int

// Failure kinds.
const (
	// NoUsable: the RRset holds no record usable for SMTP. RFC 7672 §2.2:
	// TLS is still mandatory, without authentication.
	NoUsable Kind = iota + 1
	// NoMatch: no usable record designates a certificate of the chain.
	NoMatch
	// ChainInvalid: a DANE-TA record designates a certificate of the chain
	// but the leaf does not chain to it (expired, bad signature, ...).
	ChainInvalid
	// NameMismatch: a DANE-TA record matched and the chain verified, but no
	// reference identifier matches the leaf certificate (RFC 7672 §3.2.3).
	NameMismatch
)

// String names the kind as it appears in replies and logs.
func (k Kind) String() string {
	switch k {
	case NoUsable:
		return "no usable TLSA records"
	case NoMatch:
		return "no TLSA record matched the certificate chain"
	case ChainInvalid:
		return "certificate chain invalid"
	case NameMismatch:
		return "certificate not valid for name"
	}
	return "unknown(" + strconv.Itoa(int(k)) + ")"
}

// Error is the failure Verify returns. Detail says which record failed and
// why; Err, when set, is the underlying cause (an x509 error for
// ChainInvalid, so errors.As(err, &x509.CertificateInvalidError{}) tells an
// expired certificate apart).
type Error struct {
	Kind   Kind
	Detail string
	Err    error
}

// Sentinels for errors.Is: errors.Is(err, ErrNoMatch) holds for every *Error
// of kind NoMatch, whatever its detail.
var (
	ErrNoUsable     = &Error{Kind: NoUsable}
	ErrNoMatch      = &Error{Kind: NoMatch}
	ErrChainInvalid = &Error{Kind: ChainInvalid}
	ErrNameMismatch = &Error{Kind: NameMismatch}
)

// Error returns the kind followed by the detail.
func (e *Error) Error() string {
	if e.Detail == "" {
		return e.Kind.String()
	}
	return e.Kind.String() + ": " + e.Detail
}

// Unwrap returns the underlying cause, if any.
func (e *Error) Unwrap() error { return e.Err }

// Is reports whether target is the sentinel of e's kind (an *Error with the
// same Kind and neither Detail nor Err).
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Kind == e.Kind && t.Detail == "" && t.Err == nil
}
