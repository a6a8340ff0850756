package mtasts

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"sealgate/enforcement/dnsname"
)

// Mode is the mode of an MTA-STS policy, ordered by strength.
type Mode int

// The policy modes of RFC 8461 §5. The zero Mode is invalid.
const (
	ModeNone Mode = iota + 1
	ModeTesting
	ModeEnforce
)

// String returns the mode as written in a policy, or "unknown(N)".
func (m Mode) String() string {
	switch m {
	case ModeNone:
		return "none"
	case ModeTesting:
		return "testing"
	case ModeEnforce:
		return "enforce"
	default:
		return fmt.Sprintf("unknown(%d)", int(m))
	}
}

// ParseMode parses a policy mode value; the match is case-sensitive as in
// the RFC's ABNF.
func ParseMode(s string) (Mode, error) {
	switch s {
	case "none":
		return ModeNone, nil
	case "testing":
		return ModeTesting, nil
	case "enforce":
		return ModeEnforce, nil
	default:
		return 0, fmt.Errorf("%w: mode %q is not enforce, testing or none", ErrInvalidPolicy, s)
	}
}

// MaxMaxAge is the largest max_age a policy may carry (RFC 8461 §3.2).
const MaxMaxAge = 31557600 * time.Second

// Version is the only policy version defined by RFC 8461.
const Version = "STSv1"

// Policy is a parsed MTA-STS policy.
type Policy struct {
	// Version is "STSv1".
	Version string
	Mode    Mode
	// MaxAge is how long the policy may be cached, 0 to MaxMaxAge.
	MaxAge time.Duration
	// MX holds the mx patterns in policy order, lower-cased: host names
	// or "*." followed by a host name.
	MX []string
}

// ErrInvalidPolicy is wrapped by every ParsePolicy error.
var ErrInvalidPolicy = errors.New("mta-sts: invalid policy")

// PolicyError says why a policy body was rejected. It unwraps to
// ErrInvalidPolicy.
type PolicyError struct {
	// Line is the 1-based line number of the offending line, 0 when the
	// problem is with the policy as a whole (a missing field).
	Line   int
	Reason string
}

func (e *PolicyError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%v: line %d: %s", ErrInvalidPolicy, e.Line, e.Reason)
	}
	return fmt.Sprintf("%v: %s", ErrInvalidPolicy, e.Reason)
}

// Unwrap returns ErrInvalidPolicy.
func (e *PolicyError) Unwrap() error { return ErrInvalidPolicy }

func policyErr(line int, format string, args ...any) error {
	return &PolicyError{Line: line, Reason: fmt.Sprintf(format, args...)}
}

// ParsePolicy parses a policy body by the grammar of RFC 8461 §3.2:
//
//	sts-policy-record = sts-policy-field *WSP
//	                    *(sts-policy-term sts-policy-field *WSP) [sts-policy-term]
//	sts-policy-term   = LF / CRLF
//
// Each field is "key:" *WSP value, keys case-sensitive, with no
// whitespace before the key or the colon and no blank line between
// fields. version, mode and max_age are required; when any of them is
// repeated, the first one counts and the others are ignored (they must
// still be well-formed fields); mx may repeat and is required unless the
// mode is none. Other keys are ignored when their line is a well-formed
// extension field (a value of visible characters and inner spaces). The
// one leniency beyond the grammar: empty lines after the last field are
// ignored. Errors are *PolicyError.
func ParsePolicy(body []byte) (*Policy, error) {
	if !utf8.Valid(body) {
		return nil, policyErr(0, "not valid UTF-8")
	}
	lines := strings.Split(string(body), "\n")
	for i := range lines {
		lines[i] = strings.TrimSuffix(lines[i], "\r")
	}
	// The grammar allows one terminator after the last field; further
	// empty lines at the end are tolerated (see the README).
	for len(lines) > 0 && lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	var p Policy
	haveMaxAge := false
	for i, line := range lines {
		n := i + 1
		if line == "" {
			return nil, policyErr(n, "blank line")
		}
		key, value, ok := strings.Cut(line, ":")
		if !ok {
			return nil, policyErr(n, "no ':' in %q", line)
		}
		if !validExtName(key) {
			return nil, policyErr(n, "bad key %q", key)
		}
		value = strings.TrimRight(strings.TrimLeft(value, " \t"), " \t")
		field := key
		if key == "version" && p.Version != "" || key == "mode" && p.Mode != 0 || key == "max_age" && haveMaxAge {
			// RFC 8461 §3.2: all but the first are ignored; the line
			// is judged as an extension field.
			field = ""
		}
		switch field {
		case "version":
			if value != Version {
				return nil, policyErr(n, "version %q is not %s", value, Version)
			}
			p.Version = value
		case "mode":
			m, err := ParseMode(value)
			if err != nil {
				return nil, policyErr(n, "mode %q is not enforce, testing or none", value)
			}
			p.Mode = m
		case "max_age":
			d, err := parseMaxAge(value)
			if err != nil {
				return nil, policyErr(n, "%v", err)
			}
			p.MaxAge, haveMaxAge = d, true
		case "mx":
			if !validMXPattern(value) {
				return nil, policyErr(n, "mx %q is not a host name or *.host name", value)
			}
			p.MX = append(p.MX, strings.ToLower(value))
		default:
			if !validExtValue(value) {
				return nil, policyErr(n, "value of %q is empty or has a tab or control character", key)
			}
		}
	}
	switch {
	case p.Version == "":
		return nil, policyErr(0, "no version")
	case p.Mode == 0:
		return nil, policyErr(0, "no mode")
	case !haveMaxAge:
		return nil, policyErr(0, "no max_age")
	case p.Mode != ModeNone && len(p.MX) == 0:
		return nil, policyErr(0, "no mx in mode %s", p.Mode)
	}
	return &p, nil
}

// parseMaxAge: sts-policy-max-age-value = 1*10(DIGIT), at most 31557600.
func parseMaxAge(s string) (time.Duration, error) {
	if len(s) < 1 || len(s) > 10 {
		return 0, fmt.Errorf("max_age %q is not 1 to 10 digits", s)
	}
	for i := range len(s) {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("max_age %q is not a decimal number", s)
		}
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("max_age %q: %w", s, err)
	}
	// Compared before the conversion: ten digits of seconds overflow a
	// time.Duration, and a wrapped, negative max_age would pass a check
	// made after it (a policy stored already expired, in place of the one
	// in force).
	if v > int64(MaxMaxAge/time.Second) {
		return 0, fmt.Errorf("max_age %d exceeds %d", v, int64(MaxMaxAge/time.Second))
	}
	return time.Duration(v) * time.Second, nil
}

// validExtValue: sts-policy-ext-value = sts-policy-vchar
// [*(%x20 / sts-policy-vchar) sts-policy-vchar], sts-policy-vchar =
// %x21-7E / UTF8-2 / UTF8-3 / UTF8-4. The caller has trimmed the
// whitespace the grammar allows around it; s is valid UTF-8.
func validExtValue(s string) bool {
	if s == "" || s[0] == ' ' || s[len(s)-1] == ' ' {
		return false
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f {
			return false
		}
	}
	return true
}

// validMXPattern: ["*."] Domain, Domain as in RFC 5321 (LDH labels).
func validMXPattern(s string) bool {
	return dnsname.ValidHostname(strings.TrimPrefix(s, "*."))
}

// Match reports whether the MX host name matches one of the policy's mx
// patterns (RFC 8461 §4.1): case-insensitive, a trailing dot on host
// ignored, and "*.example.com" matching exactly one more label
// ("mx.example.com", not "example.com" nor "a.mx.example.com"). A host that
// is not a valid host name matches nothing. The mode is not considered.
func (p *Policy) Match(host string) bool {
	host = dnsname.Normalize(host)
	if !dnsname.ValidHostname(host) {
		return false
	}
	for _, pat := range p.MX {
		if matchPattern(strings.ToLower(pat), host) {
			return true
		}
	}
	return false
}

func matchPattern(pat, host string) bool {
	suffix, wild := strings.CutPrefix(pat, "*")
	if !wild {
		return pat == host
	}
	// suffix is ".example.com": the host is one non-empty label plus it.
	label, ok := strings.CutSuffix(host, suffix)
	return ok && label != "" && !strings.Contains(label, ".")
}

// Lines returns the policy in canonical form, one field per line:
// version, mode, each mx, max_age. It is the TLS-RPT policy-string of
// RFC 8460 §4.4.
func (p *Policy) Lines() []string {
	v := p.Version
	if v == "" {
		v = Version
	}
	lines := make([]string, 0, 3+len(p.MX))
	lines = append(lines, "version: "+v, "mode: "+p.Mode.String())
	for _, mx := range p.MX {
		lines = append(lines, "mx: "+mx)
	}
	lines = append(lines, "max_age: "+strconv.FormatInt(int64(p.MaxAge/time.Second), 10))
	return lines
}

// String returns the canonical policy text: Lines, each ended by LF.
// ParsePolicy(p.String()) gives back an equal policy.
func (p *Policy) String() string {
	return strings.Join(p.Lines(), "\n") + "\n"
}

// Clone returns a deep copy of p.
func (p *Policy) Clone() *Policy {
	c := *p
	c.MX = slices.Clone(p.MX)
	return &c
}
