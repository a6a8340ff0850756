package upstreamtest

import (
	"bytes"
	"strings"
	"testing"

	"github.com/emersion/go-smtp"
)

func TestStripCapability(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    string
		changed bool
	}{
		{
			name:    "middle line",
			in:      "250-mx.test Hello\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 SIZE\r\n",
			want:    "250-mx.test Hello\r\n250-PIPELINING\r\n250 SIZE\r\n",
			changed: true,
		},
		{
			name:    "last line: previous becomes final",
			in:      "250-mx.test Hello\r\n250-PIPELINING\r\n250 starttls\r\n",
			want:    "250-mx.test Hello\r\n250 PIPELINING\r\n",
			changed: true,
		},
		{
			name:    "only capability",
			in:      "250-mx.test\r\n250 STARTTLS\r\n",
			want:    "250 mx.test\r\n",
			changed: true,
		},
		{
			name: "absent",
			in:   "250-mx.test\r\n250 SIZE\r\n",
			want: "250-mx.test\r\n250 SIZE\r\n",
		},
		{
			name: "greeting text is kept",
			in:   "250-STARTTLS\r\n250 SIZE\r\n",
			want: "250-STARTTLS\r\n250 SIZE\r\n",
		},
		{
			name: "single line",
			in:   "250 STARTTLS\r\n",
			want: "250 STARTTLS\r\n",
		},
		{
			name: "not a 250 reply",
			in:   "550-no\r\n550 STARTTLS\r\n",
			want: "550-no\r\n550 STARTTLS\r\n",
		},
		{
			name: "malformed continuation",
			in:   "250 mx.test\r\n250 STARTTLS\r\n",
			want: "250 mx.test\r\n250 STARTTLS\r\n",
		},
		{
			name:    "bare LF lines",
			in:      "250-mx.test\n250-STARTTLS\n250 8BITMIME\n",
			want:    "250-mx.test\r\n250 8BITMIME\r\n",
			changed: true,
		},
		{
			name: "STARTTLS-like keyword",
			in:   "250-mx.test\r\n250 STARTTLSX\r\n",
			want: "250-mx.test\r\n250 STARTTLSX\r\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, changed := stripCapability([]byte(tc.in), "STARTTLS")
			if string(got) != tc.want || changed != tc.changed {
				t.Errorf("stripCapability(%q) = %q, %v; want %q, %v", tc.in, got, changed, tc.want, tc.changed)
			}
		})
	}
}

func FuzzStripCapability(f *testing.F) {
	f.Add([]byte("250-mx.test Hello\r\n250-PIPELINING\r\n250-STARTTLS\r\n250 SIZE\r\n"))
	f.Add([]byte("250-mx.test\r\n250 STARTTLS\r\n"))
	f.Add([]byte("250 mx.test\r\n"))
	f.Add([]byte("250-a\n250-starttls extra\n250-b\r\n250 c"))
	f.Add([]byte("220 hi\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		out, changed := stripCapability(in, "STARTTLS")
		if !changed {
			if !bytes.Equal(out, in) {
				t.Fatalf("unchanged reply was rewritten: %q -> %q", in, out)
			}
			return
		}
		lines := strings.Split(strings.TrimSuffix(string(out), "\r\n"), "\r\n")
		for i, l := range lines {
			code, more, text, ok := parseReplyLine(l)
			if !ok || code != "250" || more != (i < len(lines)-1) {
				t.Fatalf("line %d %q of %q is not a valid reply line", i, l, out)
			}
			if i > 0 && keyword(text) == "STARTTLS" {
				t.Fatalf("STARTTLS left in %q", out)
			}
		}
		again, changedAgain := stripCapability(out, "STARTTLS")
		if changedAgain || !bytes.Equal(again, out) {
			t.Fatalf("not idempotent: %q -> %q", out, again)
		}
	})
}

func TestFormatError(t *testing.T) {
	tests := []struct {
		name string
		err  *smtp.SMTPError
		want string
	}{
		{
			name: "enhanced code",
			err:  &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "TLS not available"},
			want: "454 4.7.0 TLS not available\r\n",
		},
		{
			name: "code not set becomes X.0.0",
			err:  &smtp.SMTPError{Code: 550, Message: "no"},
			want: "550 5.0.0 no\r\n",
		},
		{
			name: "no enhanced code",
			err:  &smtp.SMTPError{Code: 220, EnhancedCode: smtp.NoEnhancedCode, Message: "hi"},
			want: "220 hi\r\n",
		},
		{
			name: "multi-line",
			err:  &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "a\nb"},
			want: "421-4.3.2 a\r\n421 4.3.2 b\r\n",
		},
		{
			name: "1xx without enhanced code",
			err:  &smtp.SMTPError{Code: 111, Message: "odd"},
			want: "111 odd\r\n",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := string(formatError(tc.err)); got != tc.want {
				t.Errorf("formatError = %q, want %q", got, tc.want)
			}
		})
	}
}
