// Package starttlslist converts the EFF's STARTTLS Everywhere policy list
// (https://dl.eff.org/starttls-everywhere/policy.json, format in the
// project's RULES.md) into lines of sealgate's local policy file.
//
// The list is a JSON object with "version", "timestamp", "expires",
// "policy-aliases" (name to policy) and "policies" (mail domain to
// policy). A policy has a "mode" ("enforce" or "testing"; testing when
// absent, as RULES.md says) and "mxs", the names an MX certificate may
// carry: "mail.example.com", or ".example.net" for any subdomain. A
// policy with "policy-alias" takes the alias's policy instead of its own
// fields. Other fields (pin, report, mta-sts) are not used.
//
// An enforce policy becomes a "secure" entry whose match= lists the mxs
// (a leading dot is the subdomain syntax of Postfix's match, which
// sealgate shares); a testing policy becomes a comment, since sealgate's
// floor already demands TLS. Every line written is checked with the
// local policy parser.
package starttlslist

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"sealgate/enforcement/dnsname"
	"sealgate/enforcement/localpolicy"
)

// Modes of a policy.
const (
	ModeEnforce = "enforce"
	ModeTesting = "testing"
)

// ErrFormat: the data is not a policy list (not JSON, or no "policies"
// object).
var ErrFormat = errors.New("not a STARTTLS Everywhere policy list")

// EntryError is a policy of the list that was skipped, and why.
type EntryError struct {
	Domain string
	Reason string
}

func (e *EntryError) Error() string { return strconv.Quote(e.Domain) + ": " + e.Reason }

// Policy is one mail domain's policy, its alias resolved.
type Policy struct {
	Domain string   // lower-case, no trailing dot
	Mode   string   // ModeEnforce or ModeTesting
	MXs    []string // lower-case, as in the list otherwise
	Alias  string   // the policy-alias it came from, if any
}

// List is a converted policy list.
type List struct {
	Version   string
	Timestamp string // as in the list; epoch seconds are written in RFC 3339
	Expires   string
	// ExpiresAt is Expires as a time; zero when absent or unreadable.
	ExpiresAt time.Time
	// Policies are the usable policies, sorted by domain.
	Policies []Policy
	// Skipped holds one *EntryError per policy that was left out.
	Skipped []error
}

// rawPolicy is a policy as the JSON has it.
type rawPolicy struct {
	Mode  *string  `json:"mode"`
	MXs   []string `json:"mxs"`
	Alias *string  `json:"policy-alias"`
}

type rawList struct {
	Version   json.RawMessage            `json:"version"`
	Timestamp json.RawMessage            `json:"timestamp"`
	Expires   json.RawMessage            `json:"expires"`
	Aliases   map[string]json.RawMessage `json:"policy-aliases"`
	Policies  map[string]json.RawMessage `json:"policies"`
}

// Parse reads a policy list. It fails (wrapping ErrFormat) only when the
// data is not a policy list at all; a policy that cannot be used is left
// out and reported in Skipped.
func Parse(data []byte) (*List, error) {
	var raw rawList
	if err := json.Unmarshal(data, &raw); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrFormat, err)
	}
	if raw.Policies == nil {
		return nil, fmt.Errorf("%w: no \"policies\" object", ErrFormat)
	}
	l := &List{Version: scalar(raw.Version), Timestamp: timeText(raw.Timestamp), Expires: timeText(raw.Expires)}
	l.ExpiresAt = parseTime(raw.Expires)
	domains := make([]string, 0, len(raw.Policies))
	for d := range raw.Policies {
		domains = append(domains, d)
	}
	slices.Sort(domains)
	seen := map[string]string{}
	for _, d := range domains {
		p, err := resolve(d, raw.Policies[d], raw.Aliases)
		if err == nil {
			if first, dup := seen[p.Domain]; dup {
				err = fmt.Errorf("the same domain as %q", first)
			}
		}
		if err == nil {
			err = check(p)
		}
		if err != nil {
			l.Skipped = append(l.Skipped, &EntryError{Domain: d, Reason: err.Error()})
			continue
		}
		seen[p.Domain] = d
		l.Policies = append(l.Policies, p)
	}
	slices.SortFunc(l.Policies, func(a, b Policy) int { return strings.Compare(a.Domain, b.Domain) })
	return l, nil
}

// resolve decodes the policy of domain d, following its alias.
func resolve(d string, data json.RawMessage, aliases map[string]json.RawMessage) (Policy, error) {
	var rp rawPolicy
	if err := json.Unmarshal(data, &rp); err != nil {
		return Policy{}, fmt.Errorf("not a policy object: %w", err)
	}
	p := Policy{Domain: dnsname.Normalize(d)}
	if rp.Alias != nil {
		// "If set, other fields are ignored" (RULES.md).
		p.Alias = *rp.Alias
		ad, ok := aliases[p.Alias]
		if !ok {
			return p, fmt.Errorf("policy-alias %q is not in policy-aliases", p.Alias)
		}
		rp = rawPolicy{}
		if err := json.Unmarshal(ad, &rp); err != nil {
			return p, fmt.Errorf("policy-alias %q is not a policy object: %w", p.Alias, err)
		}
		if rp.Alias != nil {
			return p, fmt.Errorf("policy-alias %q refers to another alias", p.Alias)
		}
	}
	p.Mode = ModeTesting
	if rp.Mode != nil {
		p.Mode = *rp.Mode
	}
	for _, m := range rp.MXs {
		p.MXs = append(p.MXs, strings.ToLower(m))
	}
	return p, nil
}

// check refuses what the policy file could not say, or would say
// differently: a domain that is not a plain mail domain, a name holding a
// separator of the policy file (a comma or a space would start another
// attribute), a name of one label (match keywords such as "nexthop"), and
// a line that the policy parser does not read back as exactly this policy.
func check(p Policy) error {
	if p.Mode != ModeEnforce && p.Mode != ModeTesting {
		return fmt.Errorf("mode %q is neither %s nor %s", p.Mode, ModeEnforce, ModeTesting)
	}
	if p.Domain == "" || strings.HasPrefix(p.Domain, ".") || strings.ContainsAny(p.Domain, separators+"[]:") {
		return fmt.Errorf("not a mail domain name")
	}
	if len(p.MXs) == 0 {
		return fmt.Errorf("no mxs")
	}
	for _, m := range p.MXs {
		if strings.ContainsAny(m, separators+":") || !strings.Contains(strings.TrimPrefix(m, "."), ".") {
			return fmt.Errorf("mxs entry %q is neither a host name nor .domain", m)
		}
	}
	pol, err := localpolicy.Parse("policy", strings.NewReader(secureLine(p)))
	if err != nil {
		return err
	}
	if pol.Len() != 1 {
		return fmt.Errorf("the policy file would read it differently")
	}
	if e := pol.Entries()[0]; e.Destination != p.Domain || !slices.Equal(e.Match, p.MXs) ||
		e.RootsFile != "" || e.MinVersion != 0 || e.MaxVersion != 0 {
		return fmt.Errorf("the policy file would read it differently")
	}
	return nil
}

// separators are the characters that end a name in a policy file line.
const separators = " \t\r\n,{}=#"

func secureLine(p Policy) string {
	return fmt.Sprintf("%-31s secure match=%s\n", p.Domain, strings.Join(p.MXs, ":"))
}

// timeText is a time field as text: epoch seconds in RFC 3339, a string
// as it is.
func timeText(raw json.RawMessage) string {
	var n int64
	if json.Unmarshal(raw, &n) == nil {
		return time.Unix(n, 0).UTC().Format(time.RFC3339)
	}
	return scalar(raw)
}

// scalar returns a JSON string's value or a number's digits.
func scalar(raw json.RawMessage) string {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s
	}
	var n json.Number
	if json.Unmarshal(raw, &n) == nil {
		return n.String()
	}
	return ""
}

// parseTime reads epoch seconds or an RFC 3339 time (with or without
// zone; UTC by RULES.md).
func parseTime(raw json.RawMessage) time.Time {
	var n int64
	if json.Unmarshal(raw, &n) == nil {
		return time.Unix(n, 0).UTC()
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return time.Time{}
	}
	for _, layout := range []string{time.RFC3339, "2006-01-02T15:04:05Z0700", "2006-01-02T15:04:05"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC()
		}
	}
	return time.Time{}
}

// WriteTo writes the policy file: a header of comments, then one line
// per policy in domain order, "secure match=..." for enforce and a
// "# testing:" comment for testing.
func (l *List) WriteTo(w io.Writer) (int64, error) {
	var b bytes.Buffer
	enforce := 0
	for _, p := range l.Policies {
		if p.Mode == ModeEnforce {
			enforce++
		}
	}
	fmt.Fprintf(&b, "# STARTTLS Everywhere policy list, version %q, timestamp %q, expires %q\n", l.Version, l.Timestamp, l.Expires)
	fmt.Fprintf(&b, "# written by sealgate policy import-starttls-everywhere: %d enforce, %d testing, %d skipped\n",
		enforce, len(l.Policies)-enforce, len(l.Skipped))
	for _, p := range l.Policies {
		via := ""
		if p.Alias != "" {
			via = " policy-alias " + strconv.Quote(p.Alias)
		}
		if p.Mode == ModeTesting {
			fmt.Fprintf(&b, "# testing: %s mxs=%s%s\n", p.Domain, strings.Join(p.MXs, ":"), via)
			continue
		}
		if via != "" {
			fmt.Fprintf(&b, "# %s:%s\n", p.Domain, via)
		}
		b.WriteString(secureLine(p))
	}
	return b.WriteTo(w)
}
