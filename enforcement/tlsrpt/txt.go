package tlsrpt

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"sealgate/enforcement/dnsname"
)

// TXT record errors (RFC 8460 §3).
var (
	// ErrNoRecord: no TXT record starts with "v=TLSRPTv1".
	ErrNoRecord = errors.New("tlsrpt: no v=TLSRPTv1 record")
	// ErrMultipleRecords: more than one does; the domain then does not
	// implement TLS-RPT.
	ErrMultipleRecords = errors.New("tlsrpt: several v=TLSRPTv1 records")
	// ErrInvalidRecord: the one record is malformed.
	ErrInvalidRecord = errors.New("tlsrpt: invalid record")
)

// MaxRUA is how many report URIs of a record are used, in its order.
const MaxRUA = 5

// Record is a parsed _smtp._tls TXT record.
type Record struct {
	// RUA are the report URIs with a scheme sealgate uses (mailto,
	// https), in the record's order, each once, at most MaxRUA.
	RUA []*url.URL
	// Ignored are the URIs of other schemes, and those beyond MaxRUA.
	Ignored []string
}

// RecordName is the owner name of the TXT record of domain.
func RecordName(domain string) string { return "_smtp._tls." + strings.TrimSuffix(domain, ".") }

// ParseRecord picks and parses the TLS-RPT record among the TXT records of
// _smtp._tls.<domain> (each already joined from its strings). Records that
// do not begin with "v=TLSRPTv1" are discarded; exactly one must remain
// (RFC 8460 §3). Its fields are "v=TLSRPTv1", then "rua=" with
// comma-separated URIs, then extensions (name=value, ignored), separated
// by ";" with optional white space.
func ParseRecord(txts []string) (*Record, error) {
	var found []string
	for _, t := range txts {
		if t == "v=TLSRPTv1" || strings.HasPrefix(t, "v=TLSRPTv1;") || strings.HasPrefix(t, "v=TLSRPTv1 ") || strings.HasPrefix(t, "v=TLSRPTv1\t") {
			found = append(found, t)
		}
	}
	switch len(found) {
	case 0:
		return nil, ErrNoRecord
	case 1:
	default:
		return nil, ErrMultipleRecords
	}
	bad := func(format string, a ...any) (*Record, error) {
		return nil, fmt.Errorf("%w: %s", ErrInvalidRecord, fmt.Sprintf(format, a...))
	}
	fields := strings.Split(found[0], ";")
	rec := &Record{}
	seenRUA := false
	for i, f := range fields {
		f = strings.Trim(f, " \t")
		if i == 0 {
			continue // "v=TLSRPTv1"
		}
		if f == "" {
			if i == len(fields)-1 {
				break // a trailing ";"
			}
			return bad("empty field")
		}
		name, value, ok := strings.Cut(f, "=")
		if !ok || !validName(name) {
			return bad("field %q", f)
		}
		if name != "rua" {
			if !validExtValue(value) {
				return bad("extension %q", f)
			}
			continue
		}
		if seenRUA {
			return bad("rua twice")
		}
		seenRUA = true
		for _, u := range strings.Split(value, ",") {
			u = strings.Trim(u, " \t")
			pu, err := url.Parse(u)
			if u == "" || err != nil || pu.Scheme == "" {
				return bad("rua URI %q", u)
			}
			switch strings.ToLower(pu.Scheme) {
			case "mailto":
				if !validMailto(pu) {
					return bad("rua URI %q", u)
				}
				pu.Scheme = "mailto"
			case "https":
				if pu.Host == "" || pu.User != nil || !validPort(pu.Port()) {
					return bad("rua URI %q", u)
				}
				pu.Scheme = "https"
				pu.Host = strings.ToLower(pu.Host)
			default:
				rec.Ignored = append(rec.Ignored, u)
				continue
			}
			// A URI listed twice gets one report; beyond MaxRUA, none:
			// a record is the domain's to write, and without a bound one
			// message to it would have sealgate mail or post to as many
			// addresses as a TXT record holds.
			if key := strings.ToLower(pu.String()); !slices.ContainsFunc(rec.RUA, func(x *url.URL) bool { return strings.ToLower(x.String()) == key }) {
				if len(rec.RUA) == MaxRUA {
					rec.Ignored = append(rec.Ignored, u)
					continue
				}
				rec.RUA = append(rec.RUA, pu)
			}
		}
	}
	if !seenRUA {
		return bad("no rua")
	}
	return rec, nil
}

// MailtoAddress is the address of a mailto URI.
func MailtoAddress(u *url.URL) string {
	addr, _ := url.PathUnescape(u.Opaque)
	if addr == "" {
		addr = u.Path
	}
	return addr
}

// validPort: none (443), or a number from 1 to 65535.
func validPort(p string) bool {
	if p == "" {
		return true
	}
	n, err := strconv.Atoi(p)
	return err == nil && n >= 1 && n <= 65535 && p[0] != '0'
}

// validMailto: a report address a domain's record may name, with a
// domain of at least two labels (not localhost, not a name of the local
// network).
func validMailto(u *url.URL) bool {
	addr := MailtoAddress(u)
	_, domain, _ := strings.Cut(addr, "@")
	return ValidAddress(addr) && strings.Contains(domain, ".")
}

// ValidAddress reports whether addr is a mail address sealgate writes in
// a header field and a command as it is: a local part of 1 to 64
// printable ASCII characters other than <>,"@ and an LDH host name as
// the domain (no address literal, nothing a control character or a
// header could be smuggled into).
func ValidAddress(addr string) bool {
	local, domain, ok := strings.Cut(addr, "@")
	if !ok || local == "" || len(local) > 64 || !dnsname.ValidHostname(domain) {
		return false
	}
	for i := range len(local) {
		if c := local[i]; c < 0x21 || c > 0x7e || strings.IndexByte(`<>,"@`, c) >= 0 {
			return false
		}
	}
	return true
}

func validName(s string) bool {
	if s == "" || len(s) > 32 {
		return false
	}
	for i, c := range s {
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if !alnum && (i == 0 || c != '_' && c != '-' && c != '.') {
			return false
		}
	}
	return true
}

// validExtValue: 1*(%x21-3A / %x3C / %x3E-7E), printable ASCII but ";" and "=".
func validExtValue(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x21 || c > 0x7e || c == ';' || c == '=' {
			return false
		}
	}
	return true
}
