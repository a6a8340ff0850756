package mtasts

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// TXT record errors. ParseTXT returns ErrNoRecord or ErrMultipleRecords
// bare, and wraps ErrInvalidRecord with the reason.
var (
	// ErrNoRecord means no TXT record starts with "v=STSv1": the domain
	// has no MTA-STS policy (RFC 8461 §3.1).
	ErrNoRecord = errors.New("mta-sts: no v=STSv1 TXT record")
	// ErrMultipleRecords means more than one record starts with "v=STSv1";
	// RFC 8461 §3.1 treats that as no policy available.
	ErrMultipleRecords = errors.New("mta-sts: more than one v=STSv1 TXT record")
	// ErrInvalidRecord means the single v=STSv1 record is malformed.
	ErrInvalidRecord = errors.New("mta-sts: invalid TXT record")
)

// TXTLookup returns the TXT records at name, the strings of each record
// joined. Errors should wrap the resolver's not-found / temporary sentinels
// so that callers can tell them apart; LookupID passes them on wrapped.
type TXTLookup func(ctx context.Context, name string) ([]string, error)

const stsVersion = "v=STSv1"

// TXTName returns the name of the policy indicator record of domain,
// "_mta-sts.<domain>".
func TXTName(domain string) string {
	return "_mta-sts." + strings.TrimSuffix(domain, ".")
}

// LookupID looks up the _mta-sts TXT record of domain and returns the
// policy id it announces. Lookup errors come back wrapped (%w); a record
// set without exactly one valid v=STSv1 record gives ParseTXT's errors.
func LookupID(ctx context.Context, lookup TXTLookup, domain string) (string, error) {
	name := TXTName(domain)
	records, err := lookup(ctx, name)
	if err != nil {
		return "", fmt.Errorf("mta-sts: TXT lookup %s: %w", name, err)
	}
	return ParseTXT(records)
}

// ParseTXT picks the MTA-STS record out of the TXT records at
// _mta-sts.<domain> and returns its id (RFC 8461 §3.1). Records that do not
// start with "v=STSv1" followed by ";", whitespace or the end are discarded.
// Anything but exactly one remaining record is an error (ErrNoRecord,
// ErrMultipleRecords); a malformed record gives an error wrapping
// ErrInvalidRecord that quotes it. Extension fields are ignored when
// syntactically valid. The records must be the raw bytes of the TXT
// strings, not a presentation form with escapes.
func ParseTXT(records []string) (string, error) {
	var found []string
	for _, r := range records {
		if isSTSRecord(r) {
			found = append(found, r)
		}
	}
	switch len(found) {
	case 0:
		return "", ErrNoRecord
	case 1:
		id, err := parseSTSRecord(found[0])
		if err != nil {
			// A domain's record may be long (64 KiB): quote a bounded part
			// in the logs and the TLS-RPT failure reason.
			return "", fmt.Errorf("%w in %q", err, quoteBounded(found[0]))
		}
		return id, nil
	default:
		return "", ErrMultipleRecords
	}
}

func isSTSRecord(r string) bool {
	rest, ok := strings.CutPrefix(r, stsVersion)
	if !ok {
		return false
	}
	return rest == "" || rest[0] == ';' || isWSP(rest[0])
}

func invalidRecord(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrInvalidRecord, fmt.Sprintf(format, args...))
}

// parseSTSRecord parses a record known to start with "v=STSv1" by the
// grammar of RFC 8461 §3.1:
//
//	sts-text-record = sts-version 1*(sts-field-delim sts-field) [sts-field-delim]
//	sts-field-delim = *WSP ";" *WSP
//
// Whitespace is SP and HTAB only, so whitespace at the end is allowed
// only after a final ";". The first id field counts; a repeated id is
// ignored like any well-formed extension field (RFC 8461 §3.2: all but
// the first of a repeated field are ignored).
func parseSTSRecord(r string) (string, error) {
	rest := r[len(stsVersion):]
	var id string
	fields := 0
	for rest != "" {
		// sts-field-delim
		rest = strings.TrimLeft(rest, " \t")
		if rest == "" {
			return "", invalidRecord("whitespace at the end without ';'")
		}
		if rest[0] != ';' {
			return "", invalidRecord("%q where ';' is expected", cut(rest))
		}
		rest = strings.TrimLeft(rest[1:], " \t")
		if rest == "" {
			break // the optional final delimiter
		}
		end := strings.IndexAny(rest, " \t;")
		if end < 0 {
			end = len(rest)
		}
		f := rest[:end]
		rest = rest[end:]
		if f == "" {
			return "", invalidRecord("empty field")
		}
		name, value, ok := strings.Cut(f, "=")
		switch {
		case !ok:
			return "", invalidRecord("field %q has no '='", f)
		case name == "id" && id == "":
			if !validID(value) {
				return "", invalidRecord("id %q is not 1 to 32 letters and digits", value)
			}
			id = value
		case !validExtName(name):
			return "", invalidRecord("bad field name %q", name)
		case !validTXTExtValue(value):
			return "", invalidRecord("bad value for field %q", name)
		}
		fields++
	}
	if fields == 0 {
		return "", invalidRecord("no field after %s", stsVersion)
	}
	if id == "" {
		return "", invalidRecord("no id field")
	}
	return id, nil
}

// cut shortens s for an error message.
func cut(s string) string {
	if len(s) > 16 {
		return s[:16] + "..."
	}
	return s
}

// quoteBounded is s, or its first 256 bytes and a count of the rest.
func quoteBounded(s string) string {
	if len(s) > 256 {
		return fmt.Sprintf("%s... (%d bytes more)", s[:256], len(s)-256)
	}
	return s
}

func isWSP(c byte) bool { return c == ' ' || c == '\t' }

func isAlnum(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}

// validID: sts-id-value = 1*32(ALPHA / DIGIT).
func validID(s string) bool {
	if len(s) < 1 || len(s) > 32 {
		return false
	}
	for i := range len(s) {
		if !isAlnum(s[i]) {
			return false
		}
	}
	return true
}

// validExtName: (ALPHA / DIGIT) *31(ALPHA / DIGIT / "_" / "-" / "."),
// the same grammar for TXT and policy extension names.
func validExtName(s string) bool {
	if len(s) < 1 || len(s) > 32 || !isAlnum(s[0]) {
		return false
	}
	for i := 1; i < len(s); i++ {
		c := s[i]
		if !isAlnum(c) && c != '_' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

// validTXTExtValue: 1*(%x21-3A / %x3C / %x3E-7E), printable ASCII without
// "=", ";" and space.
func validTXTExtValue(s string) bool {
	if s == "" {
		return false
	}
	for i := range len(s) {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == '=' || c == ';' {
			return false
		}
	}
	return true
}
