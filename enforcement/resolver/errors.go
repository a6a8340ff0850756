package resolver

import (
	"errors"

	"sealgate/enforcement"
)

var (
	// ErrInvalidName marks a name that is not a valid domain name. It
	// comes wrapped together with enforcement.ErrNotFound: such a name
	// cannot exist.
	ErrInvalidName = errors.New("invalid domain name")
	// ErrMalformed marks a record the resolver cannot decode. It comes
	// wrapped together with enforcement.ErrDNSTemporary, so that a caller
	// defers rather than downgrades.
	ErrMalformed = errors.New("malformed record")
)

// LookupError is the error of every failed lookup. Its text reads
// "lookup MX example.test: SERVFAIL: temporary DNS failure".
type LookupError struct {
	// Name is the name queried, without trailing dot.
	Name string
	// Type is the query type, e.g. "MX".
	Type string
	// Reason says what happened, e.g. "NXDOMAIN", "SERVFAIL", "timeout",
	// "CNAME loop at a.example.test"; with several servers, one failure
	// per server prefixed with the server.
	Reason string
	// Err is enforcement.ErrNotFound or enforcement.ErrDNSTemporary.
	Err error
	// Cause is the underlying error (network errors, ctx.Err(),
	// ErrMalformed, ErrInvalidName), or nil.
	Cause error
}

func (e *LookupError) Error() string {
	return "lookup " + e.Type + " " + e.Name + ": " + e.Reason + ": " + e.Err.Error()
}

// Unwrap returns the classification and the cause, for errors.Is and
// errors.As.
func (e *LookupError) Unwrap() []error {
	if e.Cause == nil {
		return []error{e.Err}
	}
	return []error{e.Err, e.Cause}
}

func newTemporary(name string, qtype uint16, reason string, cause error) *LookupError {
	return &LookupError{
		Name:   trimDot(name),
		Type:   typeString(qtype),
		Reason: reason,
		Err:    enforcement.ErrDNSTemporary,
		Cause:  cause,
	}
}
