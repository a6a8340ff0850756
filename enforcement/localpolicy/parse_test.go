package localpolicy

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// entryWant is the part of an Entry a test checks.
type entryWant struct {
	dest         string
	level        Level
	match        []string
	fingerprints [][]byte
	rootsFile    string // base name; "" means no tafile
	minVersion   uint16
	maxVersion   uint16
	line         int
}

func checkEntry(t *testing.T, got *Entry, want entryWant) {
	t.Helper()
	if got.Destination != want.dest {
		t.Errorf("Destination = %q, want %q", got.Destination, want.dest)
	}
	if got.Level != want.level {
		t.Errorf("%s: Level = %s, want %s", want.dest, got.Level, want.level)
	}
	if !slices.Equal(got.Match, want.match) {
		t.Errorf("%s: Match = %q, want %q", want.dest, got.Match, want.match)
	}
	if !slices.EqualFunc(got.Fingerprints, want.fingerprints, bytes.Equal) {
		t.Errorf("%s: Fingerprints = %x, want %x", want.dest, got.Fingerprints, want.fingerprints)
	}
	if filepath.Base(got.RootsFile) != filepath.Base(want.rootsFile) || (got.RootsFile == "") != (want.rootsFile == "") {
		t.Errorf("%s: RootsFile = %q, want base %q", want.dest, got.RootsFile, want.rootsFile)
	}
	if (got.Roots != nil) != (want.rootsFile != "") {
		t.Errorf("%s: Roots = %v, want a pool: %v", want.dest, got.Roots, want.rootsFile != "")
	}
	if got.MinVersion != want.minVersion || got.MaxVersion != want.maxVersion {
		t.Errorf("%s: versions = %#04x..%#04x, want %#04x..%#04x", want.dest, got.MinVersion, got.MaxVersion, want.minVersion, want.maxVersion)
	}
	if got.Line != want.line {
		t.Errorf("%s: Line = %d, want %d", want.dest, got.Line, want.line)
	}
}

func TestParse(t *testing.T) {
	dir := t.TempDir()
	writeCA(t, dir, "ca.pem")
	fp1, fp2, fp3 := digest("one"), digest("two"), digest("three")
	tests := []struct {
		name string
		text string
		want []entryWant
	}{
		{
			name: "every level with defaults",
			text: "enc.test encrypt\nfp.test fingerprint match=" + colonHex(fp1) + "\n" +
				"dane.test dane\ndo.test dane-only\nver.test verify\nsec.test secure\n",
			want: []entryWant{
				{dest: "enc.test", level: LevelEncrypt, line: 1},
				{dest: "fp.test", level: LevelFingerprint, fingerprints: [][]byte{fp1}, line: 2},
				{dest: "dane.test", level: LevelDANE, line: 3},
				{dest: "do.test", level: LevelDANEOnly, line: 4},
				{dest: "ver.test", level: LevelVerify, match: []string{"hostname"}, line: 5},
				{dest: "sec.test", level: LevelSecure, match: []string{"nexthop", "dot-nexthop"}, line: 6},
			},
		},
		{
			name: "match strategies and patterns",
			text: "a.test verify match=hostname:nexthop:dot-nexthop\n" +
				"b.test secure match=example.test:.example.test\n" +
				".c.test secure match=Mail.C.Test\n",
			want: []entryWant{
				{dest: "a.test", level: LevelVerify, match: []string{"hostname", "nexthop", "dot-nexthop"}, line: 1},
				{dest: "b.test", level: LevelSecure, match: []string{"example.test", ".example.test"}, line: 2},
				{dest: ".c.test", level: LevelSecure, match: []string{"Mail.C.Test"}, line: 3},
			},
		},
		{
			name: "repeated match attributes add up",
			text: "a.test secure match=nexthop match=.relay.test\n",
			want: []entryWant{{dest: "a.test", level: LevelSecure, match: []string{"nexthop", ".relay.test"}, line: 1}},
		},
		{
			name: "fingerprints: pipe, repeated match, plain and colon hex, any case",
			text: "[hub.test] fingerprint match=" + colonHex(fp1) + "|" + strings.ToLower(colonHex(fp2)) +
				" match=" + strings.ToUpper(string(hexOf(fp3))) + "\n",
			want: []entryWant{{dest: "[hub.test]", level: LevelFingerprint, fingerprints: [][]byte{fp1, fp2, fp3}, line: 1}},
		},
		{
			name: "tafile relative to the policy file",
			text: "ta.test secure tafile=ca.pem\nta2.test verify tafile=" + filepath.Join(dir, "ca.pem") + " match=nexthop\n",
			want: []entryWant{
				{dest: "ta.test", level: LevelSecure, match: []string{"nexthop", "dot-nexthop"}, rootsFile: "ca.pem", line: 1},
				{dest: "ta2.test", level: LevelVerify, match: []string{"nexthop"}, rootsFile: "ca.pem", line: 2},
			},
		},
		{
			name: "protocols at several levels",
			text: "p1.test encrypt protocols=!SSLv2:!SSLv3:!TLSv1:!TLSv1.1\n" +
				"p2.test dane-only protocols=>=TLSv1.3\n" +
				"p3.test verify protocols=>=TLSv1:<=TLSv1.2\n",
			want: []entryWant{
				{dest: "p1.test", level: LevelEncrypt, minVersion: tls.VersionTLS12, line: 1},
				{dest: "p2.test", level: LevelDANEOnly, minVersion: tls.VersionTLS13, line: 2},
				{dest: "p3.test", level: LevelVerify, match: []string{"hostname"}, minVersion: tls.VersionTLS10, maxVersion: tls.VersionTLS12, line: 3},
			},
		},
		{
			name: "continuation lines, comments, blank lines, CRLF, commas, tabs",
			text: "# header comment\r\n\r\nlong.test\tsecure\r\n" +
				"    # a comment inside an entry\r\n" +
				"\tmatch=nexthop,\r\n\r\n" +
				"  protocols=>=TLSv1.2\r\n" +
				"next.test encrypt\r\n",
			want: []entryWant{
				{dest: "long.test", level: LevelSecure, match: []string{"nexthop"}, minVersion: tls.VersionTLS12, line: 3},
				{dest: "next.test", level: LevelEncrypt, line: 8},
			},
		},
		{
			name: "level on a continuation line",
			text: "split.test\n  verify\n",
			want: []entryWant{{dest: "split.test", level: LevelVerify, match: []string{"hostname"}, line: 1}},
		},
		{
			name: "braced attribute keeps inner spaces",
			text: "brace.test secure { match = nexthop }, {protocols=>=TLSv1.2}\n",
			want: []entryWant{{dest: "brace.test", level: LevelSecure, match: []string{"nexthop"}, minVersion: tls.VersionTLS12, line: 1}},
		},
		{
			name: "destinations are folded",
			text: "Example.TEST. Encrypt\n.Sub.Example.Test secure\n[MX.Example.Test]:587 verify\n[192.0.2.1] encrypt\n[ipv6:2001:db8::1]:25 encrypt\nrelay.test:2525 encrypt\n",
			want: []entryWant{
				{dest: "example.test", level: LevelEncrypt, line: 1},
				{dest: ".sub.example.test", level: LevelSecure, match: []string{"nexthop", "dot-nexthop"}, line: 2},
				{dest: "[mx.example.test]:587", level: LevelVerify, match: []string{"hostname"}, line: 3},
				{dest: "[192.0.2.1]", level: LevelEncrypt, line: 4},
				{dest: "[ipv6:2001:db8::1]:25", level: LevelEncrypt, line: 5},
				{dest: "relay.test:2525", level: LevelEncrypt, line: 6},
			},
		},
		{name: "empty file", text: ""},
		{name: "only comments", text: "# nothing\n\n   \n#\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := parseString(filepath.Join(dir, "policy.cf"), tc.text)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if p.Len() != len(tc.want) {
				t.Fatalf("Len() = %d, want %d", p.Len(), len(tc.want))
			}
			for i, e := range p.Entries() {
				checkEntry(t, e, tc.want[i])
				if got, ok := p.Lookup(tc.want[i].dest); !ok || got != e {
					t.Errorf("Lookup(%q) = %v, %v; want the entry itself", tc.want[i].dest, got, ok)
				}
			}
		})
	}
}

func hexOf(d []byte) []byte {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(d))
	for _, b := range d {
		out = append(out, digits[b>>4], digits[b&15])
	}
	return out
}

// TestParsePostfixExample runs the example of TLS_README's "TLS policy
// table" and postconf(5) smtp_tls_policy_maps, moved under .test. As
// written, it is refused (none, may, ciphers, MD5-era fingerprints); the
// adapted table, with those removed, loads.
func TestParsePostfixExample(t *testing.T) {
	fpA, fpB := colonHex(digest("thumb a")), colonHex(digest("thumb b"))

	t.Run("as written is refused line by line", func(t *testing.T) {
		original := "" +
			"edu.example.test             none\n" + // 1
			"mil.example.test             may\n" + // 2
			"gov.example.test             encrypt protocols=TLSv1\n" + // 3
			"com.example.test             verify ciphers=high\n" + // 4
			"net.example.test             secure\n" + // 5
			".net.example.test            secure match=.net.example.test:net.example.test\n" + // 6
			"[mail.org.example.test]:587  secure match=nexthop\n" + // 7
			"# Postfix 2.5 and later\n" + // 8
			"[thumb.org.example.test]     fingerprint\n" + // 9
			"    match=b6:b4:72:34:e2:59:cd:c2:ca:63:0d:4d:cc:2c:7d:84\n" + // 10
			"    match=" + fpB + "\n" // 11
		_, err := parseString("tls_policy", original)
		if err == nil {
			t.Fatal("Parse accepted none and may")
		}
		var lines []int
		for _, e := range unjoin(err) {
			lines = append(lines, firstParseError(t, e).Line)
		}
		if want := []int{1, 2, 4, 10}; !slices.Equal(lines, want) {
			t.Errorf("error lines = %v, want %v; error:\n%v", lines, want, err)
		}
		msg := err.Error()
		for _, want := range []string{
			`tls_policy:1: level "none" for edu.example.test is refused: sealgate never sends mail in cleartext; use encrypt or stronger`,
			`tls_policy:2: level "may" for mil.example.test is refused: sealgate never sends mail in cleartext; use encrypt or stronger`,
			`tls_policy:4: unsupported attribute "ciphers" for com.example.test`,
			`tls_policy:10: bad fingerprint`, "an MD5 digest",
		} {
			if !strings.Contains(msg, want) {
				t.Errorf("error lacks %q:\n%s", want, msg)
			}
		}
		if !errors.Is(err, ErrCleartext) || !errors.Is(err, ErrUnsupportedAttribute) || !errors.Is(err, ErrBadFingerprint) {
			t.Errorf("error %v does not wrap the expected sentinels", err)
		}
	})

	t.Run("adapted", func(t *testing.T) {
		adapted := "" +
			"gov.example.test             encrypt protocols=TLSv1\n" +
			"com.example.test             verify\n" +
			"        match=hostname:dot-nexthop protocols=>=TLSv1.2\n" +
			"net.example.test             secure\n" +
			".net.example.test            secure match=.net.example.test:net.example.test\n" +
			"[mail.org.example.test]:587  secure match=nexthop\n" +
			"[thumb.org.example.test]     fingerprint\n" +
			"    match=" + fpA + "\n" +
			"    match=" + fpB + "\n"
		p, err := parseString("tls_policy", adapted)
		if err != nil {
			t.Fatal(err)
		}
		want := []entryWant{
			{dest: "gov.example.test", level: LevelEncrypt, minVersion: tls.VersionTLS10, maxVersion: tls.VersionTLS10, line: 1},
			{dest: "com.example.test", level: LevelVerify, match: []string{"hostname", "dot-nexthop"}, minVersion: tls.VersionTLS12, line: 2},
			{dest: "net.example.test", level: LevelSecure, match: []string{"nexthop", "dot-nexthop"}, line: 4},
			{dest: ".net.example.test", level: LevelSecure, match: []string{".net.example.test", "net.example.test"}, line: 5},
			{dest: "[mail.org.example.test]:587", level: LevelSecure, match: []string{"nexthop"}, line: 6},
			{dest: "[thumb.org.example.test]", level: LevelFingerprint, fingerprints: [][]byte{digest("thumb a"), digest("thumb b")}, line: 7},
		}
		if p.Len() != len(want) {
			t.Fatalf("Len() = %d, want %d", p.Len(), len(want))
		}
		for i, e := range p.Entries() {
			checkEntry(t, e, want[i])
		}
	})
}

// unjoin returns the errors joined by errors.Join, or err alone.
func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func TestParseErrors(t *testing.T) {
	dir := t.TempDir()
	writeCA(t, dir, "ca.pem")
	if err := os.WriteFile(filepath.Join(dir, "empty.pem"), []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	md5 := "EC:3B:2D:B0:5B:B3:6D:B4:4D:10:9B:E8:D3:60:FE:49"
	fp := colonHex(digest("x"))
	tests := []struct {
		name     string
		text     string
		wantLine int
		wantErr  error
		wantText string // substring of the message after "policy.cf:LINE: "
	}{
		{name: "level may", text: "ok.test encrypt\n\nexample.test may\n", wantLine: 3, wantErr: ErrCleartext,
			wantText: `level "may" for example.test is refused: sealgate never sends mail in cleartext; use encrypt or stronger`},
		{name: "level none", text: "x.test none\n", wantLine: 1, wantErr: ErrCleartext, wantText: `level "none" for x.test is refused`},
		{name: "level MAY upper case", text: "x.test MAY\n", wantLine: 1, wantErr: ErrCleartext},
		{name: "unknown level", text: "x.test verfy\n", wantLine: 1, wantErr: ErrUnknownLevel, wantText: `unknown security level "verfy" for x.test`},
		{name: "missing level", text: "x.test\n", wantLine: 1, wantErr: ErrMissingLevel, wantText: "missing security level for x.test"},
		{name: "attribute instead of level", text: "x.test match=nexthop\n", wantLine: 1, wantErr: ErrMissingLevel},
		{name: "braced level", text: "x.test {secure}\n", wantLine: 1, wantErr: ErrMissingLevel},
		{name: "unknown attribute", text: "x.test secure\n  colour=blue\n", wantLine: 2, wantErr: ErrUnknownAttribute, wantText: `unknown attribute "colour" for x.test`},
		{name: "ciphers refused", text: "x.test verify ciphers=high\n", wantLine: 1, wantErr: ErrUnsupportedAttribute, wantText: "cipher"},
		{name: "exclude refused", text: "x.test encrypt exclude=3DES\n", wantLine: 1, wantErr: ErrUnsupportedAttribute},
		{name: "servername refused", text: "x.test encrypt servername=hostname\n", wantLine: 1, wantErr: ErrUnsupportedAttribute},
		{name: "not name=value", text: "x.test encrypt nexthop\n", wantLine: 1, wantErr: ErrSyntax, wantText: `"nexthop" is not a name=value attribute`},
		{name: "trailing comment", text: "x.test encrypt # pinned\n", wantLine: 1, wantErr: ErrSyntax, wantText: "comments must be on lines of their own"},
		{name: "empty attribute name", text: "x.test encrypt =x\n", wantLine: 1, wantErr: ErrSyntax},
		{name: "unclosed brace", text: "x.test secure { match=nexthop\n", wantLine: 1, wantErr: ErrSyntax},
		{name: "text after brace", text: "x.test secure {match=nexthop}x\n", wantLine: 1, wantErr: ErrSyntax},
		{name: "stray brace", text: "x.test secure match=}\n", wantLine: 1, wantErr: ErrSyntax},
		{name: "continuation first", text: "  x.test secure\n", wantLine: 1, wantErr: ErrSyntax},
		{name: "duplicate destination", text: "x.test encrypt\ny.test encrypt\nX.Test. secure\n", wantLine: 3, wantErr: ErrDuplicate, wantText: "duplicate destination x.test (first on line 1)"},
		{name: "duplicate nexthop", text: "[mx.test]:25 encrypt\n[MX.test]:25 verify\n", wantLine: 2, wantErr: ErrDuplicate},
		{name: "space in destination makes the rest the level", text: "exa mple.test encrypt\n", wantLine: 1, wantErr: ErrUnknownLevel},
		{name: "destination with bad label", text: "-x.test encrypt\n", wantLine: 1, wantErr: ErrBadDestination},
		{name: "destination unicode", text: "bücher.test encrypt\n", wantLine: 1, wantErr: ErrBadDestination, wantText: "xn--"},
		{name: "destination bare dot", text: ". encrypt\n", wantLine: 1, wantErr: ErrBadDestination},
		{name: "destination unclosed bracket", text: "[mx.test encrypt\n", wantLine: 1, wantErr: ErrBadDestination},
		{name: "destination bad port", text: "[mx.test]:99999 encrypt\n", wantLine: 1, wantErr: ErrBadDestination},
		{name: "destination junk after bracket", text: "[mx.test]x encrypt\n", wantLine: 1, wantErr: ErrBadDestination},
		{name: "destination ipv4 with ipv6 prefix", text: "[ipv6:192.0.2.1] encrypt\n", wantLine: 1, wantErr: ErrBadDestination},
		{name: "destination host:port bad port", text: "mx.test:smtp encrypt\n", wantLine: 1, wantErr: ErrBadDestination},
		{name: "match empty", text: "x.test secure match=\n", wantLine: 1, wantErr: ErrBadMatch},
		{name: "match only colons", text: "x.test secure match=::\n", wantLine: 1, wantErr: ErrBadMatch},
		{name: "match bad pattern", text: "x.test verify match=nexthop:*.x.test\n", wantLine: 1, wantErr: ErrBadMatch, wantText: `"*.x.test" is neither`},
		{name: "match at encrypt", text: "x.test encrypt match=nexthop\n", wantLine: 1, wantErr: ErrBadMatch, wantText: "not used at level encrypt"},
		{name: "match at dane", text: "x.test dane match=nexthop\n", wantLine: 1, wantErr: ErrBadMatch, wantText: "TLSA"},
		{name: "match at dane-only", text: "x.test dane-only\n match=nexthop\n", wantLine: 2, wantErr: ErrBadMatch},
		{name: "fingerprint MD5", text: "x.test fingerprint match=" + md5 + "\n", wantLine: 1, wantErr: ErrBadFingerprint, wantText: "an MD5 digest"},
		{name: "fingerprint SHA-1", text: "x.test fingerprint match=" + colonHex(digest("x")[:20]) + "\n", wantLine: 1, wantErr: ErrBadFingerprint, wantText: "SHA-1"},
		{name: "fingerprint not hex", text: "x.test fingerprint match=ZZ" + fp[2:] + "\n", wantLine: 1, wantErr: ErrBadFingerprint, wantText: "not hexadecimal"},
		{name: "fingerprint bad pairs", text: "x.test fingerprint match=" + strings.Replace(fp, ":", "", 1) + "\n", wantLine: 1, wantErr: ErrBadFingerprint, wantText: "hex pairs"},
		{name: "fingerprint second bad", text: "x.test fingerprint\n match=" + fp + "\n match=" + fp + "|abc\n", wantLine: 3, wantErr: ErrBadFingerprint},
		{name: "fingerprint only pipes", text: "x.test fingerprint match=||\n", wantLine: 1, wantErr: ErrBadFingerprint},
		{name: "fingerprint without match", text: "x.test fingerprint\n", wantLine: 1, wantErr: ErrBadFingerprint, wantText: "needs match="},
		{name: "tafile missing", text: "x.test secure tafile=nope.pem\n", wantLine: 1, wantErr: fs.ErrNotExist, wantText: "nope.pem"},
		{name: "tafile not PEM", text: "x.test secure tafile=empty.pem\n", wantLine: 1, wantErr: ErrTAFile, wantText: "no PEM certificates"},
		{name: "tafile at encrypt", text: "x.test encrypt tafile=ca.pem\n", wantLine: 1, wantErr: ErrTAFile, wantText: "only at levels verify and secure"},
		{name: "tafile at fingerprint", text: "x.test fingerprint match=" + fp + " tafile=ca.pem\n", wantLine: 1, wantErr: ErrTAFile},
		{name: "tafile twice", text: "x.test secure tafile=ca.pem tafile=ca.pem\n", wantLine: 1, wantErr: ErrTAFile, wantText: "twice"},
		{name: "tafile empty", text: "x.test secure tafile=\n", wantLine: 1, wantErr: ErrTAFile},
		{name: "protocols unknown", text: "x.test encrypt protocols=TLSv9\n", wantLine: 1, wantErr: ErrBadProtocols, wantText: `unknown protocol "TLSv9"`},
		{name: "protocols nothing left", text: "x.test encrypt\n  protocols=>=TLSv1.3:<=TLSv1.2\n", wantLine: 2, wantErr: ErrBadProtocols, wantText: "no TLS version"},
		{name: "protocols twice", text: "x.test encrypt protocols=>=TLSv1.2 protocols=>=TLSv1.3\n", wantLine: 1, wantErr: ErrBadProtocols, wantText: "twice"},
		{name: "protocols comma splits attributes", text: "x.test encrypt protocols=!SSLv2,!SSLv3\n", wantLine: 1, wantErr: ErrSyntax},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := parseString(filepath.Join(dir, "policy.cf"), tc.text)
			if err == nil {
				t.Fatalf("Parse succeeded with %d entries; want error", p.Len())
			}
			if p != nil {
				t.Errorf("Parse returned a policy with its error")
			}
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("error %q does not wrap %v", err, tc.wantErr)
			}
			pe := firstParseError(t, err)
			if pe.Line != tc.wantLine || pe.File != filepath.Join(dir, "policy.cf") {
				t.Errorf("error at %s:%d, want line %d: %v", pe.File, pe.Line, tc.wantLine, err)
			}
			prefix := pe.File + ":" + strconv.Itoa(tc.wantLine) + ": "
			if !strings.HasPrefix(err.Error(), prefix) {
				t.Errorf("error %q does not start with %q", err, prefix)
			}
			if !strings.Contains(err.Error(), tc.wantText) {
				t.Errorf("error %q lacks %q", err, tc.wantText)
			}
		})
	}
}

func TestParseReportsSeveralLines(t *testing.T) {
	var text strings.Builder
	for i := range 30 {
		text.WriteString("d" + strconv.Itoa(i) + ".test may\n")
	}
	_, err := parseString("policy.cf", text.String())
	errs := unjoin(err)
	if len(errs) != maxErrors {
		t.Fatalf("got %d errors, want the first %d", len(errs), maxErrors)
	}
	for i, e := range errs {
		if pe := firstParseError(t, e); pe.Line != i+1 {
			t.Errorf("error %d at line %d, want %d", i, pe.Line, i+1)
		}
	}
}

func TestParseLineTooLong(t *testing.T) {
	text := "x.test encrypt\n" + "y.test secure match=" + strings.Repeat("a", maxLineBytes) + "\n"
	_, err := parseString("policy.cf", text)
	if !errors.Is(err, ErrSyntax) {
		t.Fatalf("error %v, want ErrSyntax", err)
	}
	if pe := firstParseError(t, err); pe.Line != 2 {
		t.Errorf("error at line %d, want 2", pe.Line)
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	writeCA(t, dir, "ca.pem")
	path := filepath.Join(dir, "policy.cf")
	if err := os.WriteFile(path, []byte("bank.test secure tafile=ca.pem\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Run("relative tafile resolves beside the file", func(t *testing.T) {
		p, err := Load(path)
		if err != nil {
			t.Fatal(err)
		}
		e, ok := p.Lookup("bank.test")
		if !ok || e.RootsFile != filepath.Join(dir, "ca.pem") || p.File != path {
			t.Fatalf("Lookup = %+v, %v; policy file %q", e, ok, p.File)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		_, err := Load(filepath.Join(dir, "absent.cf"))
		if !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("error %v, want fs.ErrNotExist", err)
		}
	})
	t.Run("errors name the path", func(t *testing.T) {
		bad := filepath.Join(dir, "bad.cf")
		if err := os.WriteFile(bad, []byte("# x\n\nexample.test may\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		_, err := Load(bad)
		if err == nil || !strings.HasPrefix(err.Error(), bad+":3: ") {
			t.Fatalf("error %v, want it to start with %s:3:", err, bad)
		}
	})
}
