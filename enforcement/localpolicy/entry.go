package localpolicy

import (
	"bytes"
	"crypto/x509"
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"sealgate/certs"
	"sealgate/enforcement/dnsname"
)

// Entry is one destination's policy. Entries handed out by a Policy are
// shared and must not be modified.
type Entry struct {
	// Destination is the table key, lower-cased, without a trailing dot:
	// "example.org", ".example.org", "[mx.example.org]:587".
	Destination string
	Level       Level
	// Match holds the reference-name patterns of LevelVerify and
	// LevelSecure as written in the file (colon-separated there; several
	// match attributes add up). Without match=, Postfix's defaults:
	// "hostname" for verify (smtp_tls_verify_cert_match), "nexthop",
	// "dot-nexthop" for secure (smtp_tls_secure_cert_match). Nil at other
	// levels. ReferenceNames expands it.
	Match []string
	// Fingerprints are the SHA-256 digests (32 bytes each) of LevelFingerprint,
	// each of a server certificate or of its SubjectPublicKeyInfo.
	Fingerprints [][]byte
	// Roots is the tafile's CA bundle, trusted for this destination instead
	// of the system roots (LevelVerify, LevelSecure); nil without tafile.
	Roots *x509.CertPool
	// RootsFile is the tafile path as opened (relative paths are joined to
	// the policy file's directory).
	RootsFile string
	// MinVersion and MaxVersion (tls.VersionTLS10 ... tls.VersionTLS13)
	// are the bounds that protocols= leaves; 0 means no bound was given.
	// MaxVersion stays 0 when TLS 1.3 remains allowed. MinVersion may be
	// below the caller's own default floor: protocols=!SSLv2:!SSLv3 gives
	// tls.VersionTLS10, as with Postfix.
	MinVersion, MaxVersion uint16
	// Line is the line of the file where the entry starts.
	Line int
}

// ReferenceNames returns the names a certificate must match for e
// (LevelVerify, LevelSecure), lower-cased, without duplicates: "hostname"
// becomes mxHost, "nexthop" the next-hop domain, "dot-nexthop" "." plus the
// next-hop domain, and literal patterns stay as they are. A leading "."
// means any subdomain (not the domain itself). nexthop may be given in
// "[host]:port" form; brackets and port are dropped, as with Postfix. An
// empty nexthop or mxHost expands to nothing.
func (e *Entry) ReferenceNames(nexthop, mxHost string) []string {
	if e == nil || len(e.Match) == 0 {
		return nil
	}
	nh, mx := bareHost(nexthop), bareHost(mxHost)
	out := make([]string, 0, len(e.Match))
	add := func(s string) {
		if s != "" && s != "." && !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	for _, m := range e.Match {
		switch strings.ToLower(m) {
		case matchHostname:
			add(mx)
		case matchNexthop:
			add(nh)
		case matchDotNexthop:
			if nh != "" {
				add("." + nh)
			}
		default:
			add(dnsname.Normalize(m))
		}
	}
	return out
}

// bareHost drops brackets, a port and a trailing dot and lower-cases.
func bareHost(s string) string {
	s = strings.ToLower(strings.TrimSpace(s))
	if strings.HasPrefix(s, "[") {
		if end := strings.IndexByte(s, ']'); end > 0 {
			return strings.TrimSuffix(s[1:end], ".")
		}
	}
	if host, port, ok := strings.Cut(s, ":"); ok && validPort(port) {
		s = host
	}
	return strings.TrimSuffix(s, ".")
}

// Match strategies of Postfix's smtp_tls_{verify,secure}_cert_match.
const (
	matchHostname   = "hostname"
	matchNexthop    = "nexthop"
	matchDotNexthop = "dot-nexthop"
)

// Attributes Postfix knows that sealgate refuses, and why.
var unsupportedAttrs = map[string]string{
	"ciphers":          "sealgate negotiates Go's TLS cipher suites and cannot apply Postfix cipher grades; remove it",
	"exclude":          "sealgate cannot exclude OpenSSL cipher names; remove it",
	"servername":       "sealgate sends the MX host name as SNI; remove it",
	"connection_reuse": "sealgate manages connection reuse itself; remove it",
	"enable_rpk":       "raw public keys are not supported; pin with level fingerprint instead",
	"policy_type":      "TLSRPT attributes of external policy servers are not read from the policy file; remove it",
	"policy_ttl":       "TLSRPT attributes of external policy servers are not read from the policy file; remove it",
	"policy_domain":    "TLSRPT attributes of external policy servers are not read from the policy file; remove it",
	"policy_string":    "TLSRPT attributes of external policy servers are not read from the policy file; remove it",
	"mx_host_pattern":  "TLSRPT attributes of external policy servers are not read from the policy file; remove it",
	"policy_failure":   "TLSRPT attributes of external policy servers are not read from the policy file; remove it",
}

// parseEntry turns a logical line into an Entry. On error, the int is the
// line to report. The path of a tafile it names is appended to tafiles,
// loaded or not.
func parseEntry(base string, ll *logicalLine, tafiles *[]string) (*Entry, int, error) {
	dt, toks, line, err := ll.split()
	if err != nil {
		return nil, line, err
	}
	dest, err := normalizeDestination(dt.text)
	if err != nil {
		return nil, dt.line, err
	}
	if len(toks) == 0 {
		return nil, dt.line, fmt.Errorf("%w for %s", ErrMissingLevel, dest)
	}
	lt := toks[0]
	if lt.braced || strings.Contains(lt.text, "=") {
		return nil, lt.line, fmt.Errorf("%w for %s before %q", ErrMissingLevel, dest, lt.text)
	}
	lvl, err := parseLevel(lt.text, dest)
	if err != nil {
		return nil, lt.line, err
	}
	b := &entryBuilder{e: &Entry{Destination: dest, Level: lvl, Line: dt.line}, base: base, tafiles: tafiles}
	for _, t := range toks[1:] {
		if err := b.attr(t); err != nil {
			return nil, t.line, err
		}
	}
	if err := b.finish(); err != nil {
		return nil, dt.line, err
	}
	return b.e, 0, nil
}

// entryBuilder applies attributes to an Entry.
type entryBuilder struct {
	e         *Entry
	base      string
	tafiles   *[]string // every tafile path named, for watching
	matchSeen bool
	protoSeen bool
}

func (b *entryBuilder) attr(t token) error {
	name, val, err := nameValue(t)
	if err != nil {
		return err
	}
	switch name {
	case "match":
		return b.match(val)
	case "tafile":
		return b.tafile(val)
	case "protocols":
		return b.protocols(val)
	}
	if why, ok := unsupportedAttrs[name]; ok {
		return fmt.Errorf("%w %q for %s: %s", ErrUnsupportedAttribute, name, b.e.Destination, why)
	}
	return fmt.Errorf("%w %q for %s; sealgate knows match, tafile and protocols", ErrUnknownAttribute, name, b.e.Destination)
}

func (b *entryBuilder) match(val string) error {
	e := b.e
	if val == "" {
		return fmt.Errorf("%w for %s: empty value", ErrBadMatch, e.Destination)
	}
	switch e.Level {
	case LevelFingerprint:
		n := 0
		for _, f := range strings.Split(val, "|") {
			if f = strings.TrimSpace(f); f == "" {
				continue
			}
			d, err := parseFingerprint(f)
			if err != nil {
				return fmt.Errorf("%w %q for %s: %w", ErrBadFingerprint, f, e.Destination, err)
			}
			e.Fingerprints = append(e.Fingerprints, d)
			n++
		}
		if n == 0 {
			return fmt.Errorf("%w for %s: match=%s holds no fingerprint", ErrBadFingerprint, e.Destination, val)
		}
	case LevelVerify, LevelSecure:
		n := 0
		for _, m := range strings.Split(val, ":") {
			if m == "" {
				continue
			}
			if err := checkPattern(m); err != nil {
				return fmt.Errorf("%w for %s: %w", ErrBadMatch, e.Destination, err)
			}
			e.Match = append(e.Match, m)
			n++
		}
		if n == 0 {
			return fmt.Errorf("%w for %s: match=%s holds no pattern", ErrBadMatch, e.Destination, val)
		}
		b.matchSeen = true
	case LevelDANE, LevelDANEOnly:
		return fmt.Errorf("%w for %s: match is not used at level %s, which authenticates with TLSA records; remove it",
			ErrBadMatch, e.Destination, e.Level)
	default:
		return fmt.Errorf("%w for %s: match is not used at level %s, which does not check certificates; use verify or secure to check names, fingerprint to pin keys",
			ErrBadMatch, e.Destination, e.Level)
	}
	return nil
}

func (b *entryBuilder) tafile(val string) error {
	e := b.e
	switch {
	case e.Level != LevelVerify && e.Level != LevelSecure:
		return fmt.Errorf("%w for %s: tafile is used only at levels verify and secure, not %s", ErrTAFile, e.Destination, e.Level)
	case e.RootsFile != "":
		return fmt.Errorf("%w for %s: tafile given twice; put all CA certificates in one file", ErrTAFile, e.Destination)
	case val == "":
		return fmt.Errorf("%w for %s: empty value", ErrTAFile, e.Destination)
	}
	path := val
	if !filepath.IsAbs(path) {
		path = filepath.Join(b.base, path)
	}
	*b.tafiles = append(*b.tafiles, path)
	pool, err := certs.LoadPool(path)
	if err != nil {
		return fmt.Errorf("%w for %s: %w", ErrTAFile, e.Destination, err)
	}
	e.Roots, e.RootsFile = pool, path
	return nil
}

func (b *entryBuilder) protocols(val string) error {
	if b.protoSeen {
		return fmt.Errorf("%w for %s: protocols given twice", ErrBadProtocols, b.e.Destination)
	}
	b.protoSeen = true
	lo, hi, err := parseProtocols(val)
	if err != nil {
		return fmt.Errorf("%w %q for %s: %w", ErrBadProtocols, val, b.e.Destination, err)
	}
	b.e.MinVersion, b.e.MaxVersion = lo, hi
	return nil
}

func (b *entryBuilder) finish() error {
	e := b.e
	switch {
	case e.Level == LevelFingerprint && len(e.Fingerprints) == 0:
		return fmt.Errorf("%w for %s: level fingerprint needs match= with at least one SHA-256 fingerprint", ErrBadFingerprint, e.Destination)
	case e.Level == LevelVerify && !b.matchSeen:
		e.Match = []string{matchHostname}
	case e.Level == LevelSecure && !b.matchSeen:
		e.Match = []string{matchNexthop, matchDotNexthop}
	}
	return nil
}

// checkPattern accepts a match strategy or a (.)domain pattern.
func checkPattern(m string) error {
	switch strings.ToLower(m) {
	case matchHostname, matchNexthop, matchDotNexthop:
		return nil
	}
	d := dnsname.Normalize(strings.TrimPrefix(m, "."))
	if !dnsname.ValidPostfixName(d) {
		return fmt.Errorf("%q is neither hostname, nexthop, dot-nexthop nor a domain name or .domain", m)
	}
	return nil
}

// equal reports whether e and o are the same entry.
func (e *Entry) equal(o *Entry) bool {
	return e.Destination == o.Destination && e.Level == o.Level && e.Line == o.Line &&
		slices.Equal(e.Match, o.Match) &&
		slices.EqualFunc(e.Fingerprints, o.Fingerprints, bytes.Equal) &&
		e.RootsFile == o.RootsFile && (e.Roots == o.Roots || e.Roots != nil && e.Roots.Equal(o.Roots)) &&
		e.MinVersion == o.MinVersion && e.MaxVersion == o.MaxVersion
}
