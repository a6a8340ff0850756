package mtasts

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestParseTXT(t *testing.T) {
	tests := []struct {
		name    string
		records []string
		wantID  string
		wantErr error
	}{
		{name: "rfc example", records: []string{"v=STSv1; id=20160831085700Z;"}, wantID: "20160831085700Z"},
		{name: "no trailing semicolon", records: []string{"v=STSv1; id=abc"}, wantID: "abc"},
		{name: "no spaces", records: []string{"v=STSv1;id=abc;"}, wantID: "abc"},
		{name: "extra spaces and tabs", records: []string{"v=STSv1 ;  \tid=abc \t;  "}, wantID: "abc"},
		{name: "32 character id", records: []string{"v=STSv1; id=0123456789abcdefABCDEF0123456789"}, wantID: "0123456789abcdefABCDEF0123456789"},
		{name: "extension ignored", records: []string{"v=STSv1; ext.a-b_c=x!y; id=abc"}, wantID: "abc"},
		{name: "other TXT ignored", records: []string{"google-site-verification=xyz", "v=spf1 -all", "v=STSv1; id=abc;"}, wantID: "abc"},
		{name: "v=STSv10 ignored", records: []string{"v=STSv10; id=abc;"}, wantErr: ErrNoRecord},
		{name: "v=STSv10 beside a valid one", records: []string{"v=STSv10; id=abc;", "v=STSv1; id=def;"}, wantID: "def"},
		{name: "lower-case version ignored", records: []string{"v=stsv1; id=abc;"}, wantErr: ErrNoRecord},
		{name: "leading space ignored", records: []string{" v=STSv1; id=abc;"}, wantErr: ErrNoRecord},
		{name: "no records", records: nil, wantErr: ErrNoRecord},
		{name: "two records", records: []string{"v=STSv1; id=abc;", "v=STSv1; id=def;"}, wantErr: ErrMultipleRecords},
		{name: "two identical records", records: []string{"v=STSv1; id=abc;", "v=STSv1; id=abc;"}, wantErr: ErrMultipleRecords},
		{name: "missing id", records: []string{"v=STSv1;"}, wantErr: ErrInvalidRecord},
		{name: "version only", records: []string{"v=STSv1"}, wantErr: ErrInvalidRecord},
		{name: "only extension", records: []string{"v=STSv1; foo=bar;"}, wantErr: ErrInvalidRecord},
		{name: "empty id", records: []string{"v=STSv1; id=;"}, wantErr: ErrInvalidRecord},
		{name: "id too long", records: []string{"v=STSv1; id=0123456789abcdefABCDEF0123456789x;"}, wantErr: ErrInvalidRecord},
		{name: "id with punctuation", records: []string{"v=STSv1; id=2016-08-31;"}, wantErr: ErrInvalidRecord},
		{name: "id with inner space", records: []string{"v=STSv1; id=ab c;"}, wantErr: ErrInvalidRecord},
		{name: "id upper-case key is not id", records: []string{"v=STSv1; ID=abc;"}, wantErr: ErrInvalidRecord},
		{name: "repeated id: first wins", records: []string{"v=STSv1; id=abc; id=def;"}, wantID: "abc"},
		{name: "repeated id with an extension-shaped value ignored", records: []string{"v=STSv1; id=abc; id=a_b"}, wantID: "abc"},
		{name: "first id invalid", records: []string{"v=STSv1; id=a_b; id=abc"}, wantErr: ErrInvalidRecord},
		{name: "tab after semicolon", records: []string{"v=STSv1;\tid=abc"}, wantID: "abc"},
		{name: "whitespace after the final semicolon", records: []string{"v=STSv1; id=abc; \t"}, wantID: "abc"},
		{name: "trailing space without semicolon", records: []string{"v=STSv1; id=abc "}, wantErr: ErrInvalidRecord},
		{name: "trailing tab without semicolon", records: []string{"v=STSv1; id=abc\t"}, wantErr: ErrInvalidRecord},
		{name: "trailing whitespace after version", records: []string{"v=STSv1 "}, wantErr: ErrInvalidRecord},
		{name: "two semicolons at the end", records: []string{"v=STSv1; id=abc;;"}, wantErr: ErrInvalidRecord},
		{name: "semicolon space semicolon", records: []string{"v=STSv1; id=abc; ;"}, wantErr: ErrInvalidRecord},
		{name: "non-ASCII extension value", records: []string{"v=STSv1; id=abc; x=caf\xc3\xa9"}, wantErr: ErrInvalidRecord},
		{name: "non-ASCII separator", records: []string{"v=STSv1;\xc2\xa0id=abc"}, wantErr: ErrInvalidRecord},
		{name: "NUL in record", records: []string{"v=STSv1; id=abc\x00"}, wantErr: ErrInvalidRecord},
		{name: "presentation escape is not a tab", records: []string{`v=STSv1;\009id=abc`}, wantErr: ErrInvalidRecord},
		{name: "CR LF are not whitespace", records: []string{"v=STSv1;\r\nid=abc"}, wantErr: ErrInvalidRecord},
		{name: "empty field in middle", records: []string{"v=STSv1;; id=abc;"}, wantErr: ErrInvalidRecord},
		{name: "field without equals", records: []string{"v=STSv1; id=abc; junk"}, wantErr: ErrInvalidRecord},
		{name: "bad extension name", records: []string{"v=STSv1; _x=1; id=abc"}, wantErr: ErrInvalidRecord},
		{name: "bad extension value", records: []string{"v=STSv1; x=a=b; id=abc"}, wantErr: ErrInvalidRecord},
		{name: "empty extension value", records: []string{"v=STSv1; x=; id=abc"}, wantErr: ErrInvalidRecord},
		{name: "text after version", records: []string{"v=STSv1 id=abc;"}, wantErr: ErrInvalidRecord},
		{name: "invalid record beside other TXT", records: []string{"v=STSv1; id=a_b", "v=spf1"}, wantErr: ErrInvalidRecord},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id, err := ParseTXT(tc.records)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("ParseTXT(%q) = %q, %v; want error %v", tc.records, id, err, tc.wantErr)
				}
				if id != "" {
					t.Errorf("ParseTXT(%q) returned id %q with an error", tc.records, id)
				}
				return
			}
			if err != nil || id != tc.wantID {
				t.Fatalf("ParseTXT(%q) = %q, %v; want %q", tc.records, id, err, tc.wantID)
			}
		})
	}
}

func TestLookupID(t *testing.T) {
	errTemp := errors.New("servfail")
	tests := []struct {
		name    string
		domain  string
		records []string
		lookErr error
		wantID  string
		wantErr error
	}{
		{name: "found", domain: "example.test", records: []string{"v=STSv1; id=1"}, wantID: "1"},
		{name: "trailing dot", domain: "example.test.", records: []string{"v=STSv1; id=1"}, wantID: "1"},
		{name: "lookup error passed on", domain: "example.test", lookErr: errTemp, wantErr: errTemp},
		{name: "no record", domain: "example.test", records: []string{"x"}, wantErr: ErrNoRecord},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var asked string
			lookup := func(_ context.Context, name string) ([]string, error) {
				asked = name
				return tc.records, tc.lookErr
			}
			id, err := LookupID(context.Background(), lookup, tc.domain)
			if asked != "_mta-sts.example.test" {
				t.Errorf("looked up %q, want _mta-sts.example.test", asked)
			}
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("LookupID = %q, %v; want error %v", id, err, tc.wantErr)
				}
				return
			}
			if err != nil || id != tc.wantID {
				t.Fatalf("LookupID = %q, %v; want %q", id, err, tc.wantID)
			}
		})
	}
}

// TestParseTXTQuotesABoundedPart: a malformed record is quoted in the
// error (the log line, the TLS-RPT failure reason) up to 256 bytes; the
// domain writes it and may make it 64 KiB long.
func TestParseTXTQuotesABoundedPart(t *testing.T) {
	long := "v=STSv1; id=" + strings.Repeat("x", 100) + "; bad=" + strings.Repeat("\x01", 60000)
	_, err := ParseTXT([]string{long})
	if !errors.Is(err, ErrInvalidRecord) {
		t.Fatalf("err = %v, want ErrInvalidRecord", err)
	}
	if n := len(err.Error()); n > 1500 || !strings.Contains(err.Error(), "bytes more") {
		t.Fatalf("error of %d bytes: %.200q", n, err.Error())
	}
}
