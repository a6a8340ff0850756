package localpolicy

import (
	"errors"
	"fmt"
)

// Sentinel errors, wrapped in a *ParseError that names file and line.
var (
	// ErrCleartext: the entry asks for level none or may.
	ErrCleartext = errors.New("sealgate never sends mail in cleartext")
	// ErrUnknownLevel: the level is not a Postfix security level.
	ErrUnknownLevel = errors.New("unknown security level")
	// ErrMissingLevel: the destination has no level after it.
	ErrMissingLevel = errors.New("missing security level")
	// ErrBadDestination: the table key is not a domain, .domain or next-hop.
	ErrBadDestination = errors.New("bad destination")
	// ErrDuplicate: a destination is listed twice.
	ErrDuplicate = errors.New("duplicate destination")
	// ErrSyntax: a malformed attribute or line.
	ErrSyntax = errors.New("syntax error")
	// ErrUnknownAttribute: the attribute is not a Postfix policy attribute.
	ErrUnknownAttribute = errors.New("unknown attribute")
	// ErrUnsupportedAttribute: a Postfix attribute sealgate cannot honour.
	ErrUnsupportedAttribute = errors.New("unsupported attribute")
	// ErrBadMatch: a match attribute that is empty, malformed or not
	// used at the entry's level.
	ErrBadMatch = errors.New("bad match")
	// ErrBadFingerprint: not a SHA-256 digest in hex.
	ErrBadFingerprint = errors.New("bad fingerprint")
	// ErrBadProtocols: a protocols attribute that is malformed or leaves
	// no TLS version.
	ErrBadProtocols = errors.New("bad protocols")
	// ErrTAFile: a tafile that cannot be used or loaded.
	ErrTAFile = errors.New("bad tafile")
)

// ParseError locates a problem in the policy file.
type ParseError struct {
	File string
	Line int
	Err  error
}

func (e *ParseError) Error() string { return fmt.Sprintf("%s:%d: %v", e.File, e.Line, e.Err) }

// Unwrap returns the cause, one of the sentinels above (itself possibly
// wrapping an I/O or certificate error).
func (e *ParseError) Unwrap() error { return e.Err }
