package mtasts

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// rfcPolicy is the example policy of RFC 8461 §3.2.
const rfcPolicy = "version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\nmx: backupmx.example.com\nmax_age: 604800"

var rfcParsed = &Policy{
	Version: "STSv1",
	Mode:    ModeEnforce,
	MaxAge:  604800 * time.Second,
	MX:      []string{"mail.example.com", "*.example.net", "backupmx.example.com"},
}

func TestParsePolicy(t *testing.T) {
	tests := []struct {
		name string
		body string
		want *Policy
	}{
		{name: "rfc example LF", body: rfcPolicy, want: rfcParsed},
		{name: "rfc example LF terminated", body: rfcPolicy + "\n", want: rfcParsed},
		{name: "rfc example CRLF", body: strings.ReplaceAll(rfcPolicy, "\n", "\r\n") + "\r\n", want: rfcParsed},
		{name: "mixed LF and CRLF", body: strings.Replace(rfcPolicy, "\n", "\r\n", 2), want: rfcParsed},
		{name: "no space after colon and trailing whitespace", body: "version:STSv1 \nmode:\tenforce\t\nmx:mail.example.com  \nmx: *.example.net\nmx: backupmx.example.com\nmax_age:604800 \n", want: rfcParsed},
		{name: "unknown keys ignored", body: "version: STSv1\nfoo: bar baz\nx-y_z.1: ünïcode\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\nmx: backupmx.example.com\nmax_age: 604800\nx: a;b=c \t\n", want: rfcParsed},
		{name: "trailing blank lines tolerated", body: rfcPolicy + "\n\n\r\n", want: rfcParsed},
		{name: "repeated version ignored", body: "version: STSv1\n" + rfcPolicy, want: rfcParsed},
		{name: "repeated mode: first wins", body: "version: STSv1\nmode: enforce\nmode: testing\nmode: none\nmx: mail.example.com\nmx: *.example.net\nmx: backupmx.example.com\nmax_age: 604800\n", want: rfcParsed},
		{name: "repeated max_age: first wins", body: rfcPolicy + "\nmax_age: 1\nmax_age: 31557600\n", want: rfcParsed},
		{name: "repeated field with a foreign value ignored", body: rfcPolicy + "\nversion: STSv2\nmode: enforcing\nmax_age: a week\n", want: rfcParsed},
		{name: "every field twice", body: rfcPolicy + "\n" + rfcPolicy, want: &Policy{Version: "STSv1", Mode: ModeEnforce, MaxAge: 604800 * time.Second,
			MX: []string{"mail.example.com", "*.example.net", "backupmx.example.com", "mail.example.com", "*.example.net", "backupmx.example.com"}}},
		{name: "mx lower-cased", body: "version: STSv1\nmode: testing\nmx: MX.Example.COM\nmax_age: 0\n",
			want: &Policy{Version: "STSv1", Mode: ModeTesting, MaxAge: 0, MX: []string{"mx.example.com"}}},
		{name: "mode none without mx", body: "version: STSv1\nmode: none\nmax_age: 86400\n",
			want: &Policy{Version: "STSv1", Mode: ModeNone, MaxAge: 86400 * time.Second}},
		{name: "max_age at the limit", body: "version: STSv1\nmode: none\nmax_age: 31557600\n",
			want: &Policy{Version: "STSv1", Mode: ModeNone, MaxAge: MaxMaxAge}},
		{name: "max_age with leading zeros", body: "version: STSv1\nmode: none\nmax_age: 0000000060\n",
			want: &Policy{Version: "STSv1", Mode: ModeNone, MaxAge: time.Minute}},
		{name: "single-label and IDN A-label mx", body: "version: STSv1\nmode: enforce\nmx: localhost\nmx: xn--bcher-kva.example\nmax_age: 1\n",
			want: &Policy{Version: "STSv1", Mode: ModeEnforce, MaxAge: time.Second, MX: []string{"localhost", "xn--bcher-kva.example"}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParsePolicy([]byte(tc.body))
			if err != nil {
				t.Fatalf("ParsePolicy: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("ParsePolicy = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestParsePolicyInvalid(t *testing.T) {
	const (
		v  = "version: STSv1\n"
		m  = "mode: enforce\n"
		mx = "mx: mx.example.com\n"
		a  = "max_age: 86400\n"
	)
	tests := []struct {
		name     string
		body     string
		line     int    // expected PolicyError.Line
		contains string // expected in the reason
	}{
		{name: "empty", body: "", contains: "no version"},
		{name: "missing version", body: m + mx + a, contains: "no version"},
		{name: "wrong version", body: "version: STSv2\n" + m + mx + a, line: 1, contains: "version"},
		{name: "lower-case version value", body: "version: stsv1\n" + m + mx + a, line: 1, contains: "version"},
		{name: "missing mode", body: v + mx + a, contains: "no mode"},
		{name: "bad mode", body: v + "mode: enforcing\n" + mx + a, line: 2, contains: "mode"},
		{name: "upper-case mode", body: v + "mode: Enforce\n" + mx + a, line: 2, contains: "mode"},
		{name: "empty mode", body: v + "mode:\n" + mx + a, line: 2, contains: "mode"},
		{name: "missing max_age", body: v + m + mx, contains: "no max_age"},
		{name: "max_age too large", body: v + m + mx + "max_age: 31557601\n", line: 4, contains: "exceeds"},
		// Ten digits of seconds overflow a time.Duration: a wrapped,
		// negative max_age must not pass as small.
		{name: "max_age overflowing a duration", body: v + m + mx + "max_age: 9999999999\n", line: 4, contains: "exceeds"},
		{name: "max_age just overflowing a duration", body: v + m + mx + "max_age: 9223372037\n", line: 4, contains: "exceeds"},
		{name: "max_age eleven digits", body: v + m + mx + "max_age: 00000000001\n", line: 4, contains: "digits"},
		{name: "max_age negative", body: v + m + mx + "max_age: -1\n", line: 4, contains: "decimal"},
		{name: "max_age plus sign", body: v + m + mx + "max_age: +1\n", line: 4, contains: "decimal"},
		{name: "max_age non-numeric", body: v + m + mx + "max_age: a week\n", line: 4, contains: "decimal"},
		{name: "max_age empty", body: v + m + mx + "max_age:\n", line: 4, contains: "digits"},
		{name: "max_age with unit", body: v + m + mx + "max_age: 86400s\n", line: 4, contains: "decimal"},
		{name: "missing mx in enforce", body: v + m + a, contains: "no mx in mode enforce"},
		{name: "missing mx in testing", body: v + "mode: testing\n" + a, contains: "no mx in mode testing"},
		{name: "wildcard in the middle", body: v + m + "mx: mx.*.example.com\n" + a, line: 3, contains: "mx"},
		{name: "wildcard without dot", body: v + m + "mx: *example.com\n" + a, line: 3, contains: "mx"},
		{name: "partial wildcard label", body: v + m + "mx: mx*.example.com\n" + a, line: 3, contains: "mx"},
		{name: "double wildcard", body: v + m + "mx: *.*.example.com\n" + a, line: 3, contains: "mx"},
		{name: "bare wildcard", body: v + m + "mx: *\n" + a, line: 3, contains: "mx"},
		{name: "mx trailing dot", body: v + m + "mx: mx.example.com.\n" + a, line: 3, contains: "mx"},
		{name: "mx empty label", body: v + m + "mx: mx..example.com\n" + a, line: 3, contains: "mx"},
		{name: "mx leading hyphen", body: v + m + "mx: -mx.example.com\n" + a, line: 3, contains: "mx"},
		{name: "mx underscore", body: v + m + "mx: mx_1.example.com\n" + a, line: 3, contains: "mx"},
		{name: "mx label too long", body: v + m + "mx: " + strings.Repeat("a", 64) + ".example\n" + a, line: 3, contains: "mx"},
		{name: "mx empty", body: v + m + "mx:\n" + a, line: 3, contains: "mx"},
		{name: "mx with port", body: v + m + "mx: mx.example.com:25\n" + a, line: 3, contains: "mx"},
		{name: "mx two values on a line", body: v + m + "mx: a.example b.example\n" + a, line: 3, contains: "mx"},
		{name: "line without colon", body: v + m + "mx mx.example.com\n" + mx + a, line: 3, contains: "no ':'"},
		{name: "space before colon", body: v + "mode : enforce\n" + mx + a, line: 2, contains: "bad key"},
		{name: "leading whitespace", body: v + " mode: enforce\n" + mx + a, line: 2, contains: "bad key"},
		{name: "bad extension key", body: v + m + mx + a + "_x: y\n", line: 5, contains: "bad key"},
		{name: "control character in extension", body: v + m + mx + a + "x: a\x00b\n", line: 5, contains: "control"},
		{name: "bare CR inside a line", body: v + "mode: enforce\rmx: a.example\n" + mx + a, line: 2, contains: "mode"},
		{name: "invalid UTF-8", body: v + m + mx + a + "x: \xff\n", contains: "UTF-8"},
		{name: "blank line between fields", body: v + m + "\n" + mx + a, line: 3, contains: "blank line"},
		{name: "blank CRLF line between fields", body: v + m + "\r\n" + mx + a, line: 3, contains: "blank line"},
		{name: "leading blank line", body: "\n" + v + m + mx + a, line: 1, contains: "blank line"},
		{name: "whitespace-only line", body: v + m + " \t\n" + mx + a, line: 3, contains: "no ':'"},
		{name: "whitespace-only last line", body: v + m + mx + a + " ", line: 5, contains: "no ':'"},
		{name: "tab inside extension value", body: v + m + mx + a + "x: a\tb\n", line: 5, contains: "value of \"x\""},
		{name: "empty extension value", body: v + m + mx + a + "x:\n", line: 5, contains: "value of \"x\""},
		{name: "whitespace-only extension value", body: v + m + mx + a + "x: \t \n", line: 5, contains: "value of \"x\""},
		{name: "DEL in extension value", body: v + m + mx + a + "x: a\x7fb\n", line: 5, contains: "value of \"x\""},
		{name: "bare CR in extension value", body: v + m + mx + a + "x: a\rb\n", line: 5, contains: "value of \"x\""},
		{name: "repeated mode without a value", body: v + m + "mode:\n" + mx + a, line: 3, contains: "value of \"mode\""},
		{name: "repeated version with a tab inside", body: v + m + "version: STS\tv1\n" + mx + a, line: 3, contains: "value of \"version\""},
		{name: "invalid first mode not rescued by a second", body: v + "mode: enforcing\n" + m + mx + a, line: 2, contains: "mode"},
		{name: "repeated max_age with a bad first", body: v + m + mx + "max_age: -1\n" + a, line: 4, contains: "decimal"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p, err := ParsePolicy([]byte(tc.body))
			if err == nil {
				t.Fatalf("ParsePolicy(%q) = %+v, want error", tc.body, p)
			}
			if p != nil {
				t.Errorf("ParsePolicy returned a policy with an error")
			}
			if !errors.Is(err, ErrInvalidPolicy) {
				t.Errorf("error %v does not wrap ErrInvalidPolicy", err)
			}
			var pe *PolicyError
			if !errors.As(err, &pe) {
				t.Fatalf("error %T is not *PolicyError", err)
			}
			if pe.Line != tc.line || !strings.Contains(pe.Reason, tc.contains) {
				t.Errorf("error line %d reason %q; want line %d, reason containing %q", pe.Line, pe.Reason, tc.line, tc.contains)
			}
		})
	}
}

func TestPolicyString(t *testing.T) {
	p, err := ParsePolicy([]byte(strings.ReplaceAll(rfcPolicy, "\n", "\r\n")))
	if err != nil {
		t.Fatal(err)
	}
	want := "version: STSv1\nmode: enforce\nmx: mail.example.com\nmx: *.example.net\nmx: backupmx.example.com\nmax_age: 604800\n"
	if got := p.String(); got != want {
		t.Fatalf("String() = %q, want %q", got, want)
	}
	again, err := ParsePolicy([]byte(p.String()))
	if err != nil || !reflect.DeepEqual(again, p) {
		t.Fatalf("round trip = %+v, %v; want %+v", again, err, p)
	}
	wantLines := []string{"version: STSv1", "mode: enforce", "mx: mail.example.com", "mx: *.example.net", "mx: backupmx.example.com", "max_age: 604800"}
	if got := p.Lines(); !reflect.DeepEqual(got, wantLines) {
		t.Fatalf("Lines() = %q, want %q", got, wantLines)
	}
	none := &Policy{Mode: ModeNone, MaxAge: time.Hour}
	if got, want := none.String(), "version: STSv1\nmode: none\nmax_age: 3600\n"; got != want {
		t.Fatalf("String() of a zero-version none policy = %q, want %q", got, want)
	}
}

func TestPolicyClone(t *testing.T) {
	p := rfcParsed.Clone()
	p.MX[0] = "changed.example"
	if rfcParsed.MX[0] != "mail.example.com" {
		t.Fatal("Clone shares the MX slice")
	}
}

func TestModeString(t *testing.T) {
	tests := []struct {
		mode Mode
		want string
	}{
		{mode: ModeNone, want: "none"},
		{mode: ModeTesting, want: "testing"},
		{mode: ModeEnforce, want: "enforce"},
		{mode: 0, want: "unknown(0)"},
		{mode: 7, want: "unknown(7)"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			if got := tc.mode.String(); got != tc.want {
				t.Fatalf("String() = %q, want %q", got, tc.want)
			}
			if m, err := ParseMode(tc.want); (err == nil) != (tc.mode >= ModeNone && tc.mode <= ModeEnforce) || err == nil && m != tc.mode {
				t.Fatalf("ParseMode(%q) = %v, %v", tc.want, m, err)
			}
		})
	}
	if !(ModeNone < ModeTesting && ModeTesting < ModeEnforce) {
		t.Fatal("modes are not ordered by strength")
	}
}

func TestMatch(t *testing.T) {
	p := &Policy{Mode: ModeEnforce, MX: []string{"mail.example.com", "*.example.net", "MX.Upper.Example"}}
	tests := []struct {
		host string
		want bool
	}{
		{host: "mail.example.com", want: true},
		{host: "MAIL.Example.COM", want: true},
		{host: "mail.example.com.", want: true},
		{host: "mx.example.net", want: true},
		{host: "MX1.EXAMPLE.NET.", want: true},
		{host: "example.net", want: false},
		{host: "a.b.example.net", want: false},
		{host: ".example.net", want: false},
		{host: "xexample.net", want: false},
		{host: "mx.upper.example", want: true},
		{host: "example.com", want: false},
		{host: "other.example.com", want: false},
		{host: "mail.example.com.evil.test", want: false},
		{host: "", want: false},
		{host: ".", want: false},
		{host: "*.example.net", want: false},
	}
	for _, tc := range tests {
		t.Run(tc.host, func(t *testing.T) {
			if got := p.Match(tc.host); got != tc.want {
				t.Fatalf("Match(%q) = %v, want %v", tc.host, got, tc.want)
			}
		})
	}
	if (&Policy{Mode: ModeNone}).Match("mail.example.com") {
		t.Fatal("a policy without mx matched")
	}
}
