package tlsrpt

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

func TestParseRecord(t *testing.T) {
	tests := []struct {
		name    string
		txts    []string
		wantRUA []string
		wantErr error
	}{
		{name: "mailto", txts: []string{"v=TLSRPTv1; rua=mailto:reports@example.test"}, wantRUA: []string{"mailto:reports@example.test"}},
		{name: "https", txts: []string{"v=TLSRPTv1;rua=https://reporting.example.test/v1/tlsrpt"}, wantRUA: []string{"https://reporting.example.test/v1/tlsrpt"}},
		{name: "both, trailing semicolon, extension", txts: []string{"v=TLSRPTv1 ; rua=mailto:a@example.test, https://r.example.test/x ; ext=1;"},
			wantRUA: []string{"mailto:a@example.test", "https://r.example.test/x"}},
		{name: "other TXT records discarded", txts: []string{"v=spf1 -all", "v=TLSRPTv1; rua=mailto:a@example.test"}, wantRUA: []string{"mailto:a@example.test"}},
		{name: "unknown scheme ignored", txts: []string{"v=TLSRPTv1; rua=ftp://x.example.test/,mailto:a@example.test"}, wantRUA: []string{"mailto:a@example.test"}},
		{name: "a URI listed twice gets one report", txts: []string{"v=TLSRPTv1; rua=mailto:a@example.test,https://R.example.test/x,mailto:a@example.test,https://r.example.test/x"},
			wantRUA: []string{"mailto:a@example.test", "https://r.example.test/x"}},
		{name: "at most MaxRUA URIs", txts: []string{"v=TLSRPTv1; rua=" + manyRUA(40)},
			wantRUA: []string{"mailto:r0@example.test", "mailto:r1@example.test", "mailto:r2@example.test", "mailto:r3@example.test", "mailto:r4@example.test"}},
		{name: "none", txts: []string{"v=spf1 -all"}, wantErr: ErrNoRecord},
		// A record is the domain's to write: nothing in it may reach a
		// header field or a command as a control byte, or aim at a
		// port that is none.
		{name: "mailto with an escaped NUL", txts: []string{"v=TLSRPTv1; rua=mailto:a@b.test%00"}, wantErr: ErrInvalidRecord},
		{name: "mailto with a vertical tab", txts: []string{"v=TLSRPTv1; rua=mailto:a%0b@b.test"}, wantErr: ErrInvalidRecord},
		{name: "mailto to a bad domain", txts: []string{"v=TLSRPTv1; rua=mailto:a@-x-"}, wantErr: ErrInvalidRecord},
		{name: "mailto to an address literal", txts: []string{"v=TLSRPTv1; rua=mailto:a@[127.0.0.1]"}, wantErr: ErrInvalidRecord},
		{name: "mailto to localhost", txts: []string{"v=TLSRPTv1; rua=mailto:a@localhost"}, wantErr: ErrInvalidRecord},
		{name: "https to port 0", txts: []string{"v=TLSRPTv1; rua=https://r.example.test:0/x"}, wantErr: ErrInvalidRecord},
		{name: "https to port 99999", txts: []string{"v=TLSRPTv1; rua=https://r.example.test:99999/x"}, wantErr: ErrInvalidRecord},
		{name: "two records", txts: []string{"v=TLSRPTv1; rua=mailto:a@example.test", "v=TLSRPTv1; rua=mailto:b@example.test"}, wantErr: ErrMultipleRecords},
		{name: "version not first", txts: []string{"rua=mailto:a@example.test; v=TLSRPTv1"}, wantErr: ErrNoRecord},
		{name: "wrong version", txts: []string{"v=TLSRPTv2; rua=mailto:a@example.test"}, wantErr: ErrNoRecord},
		{name: "no rua", txts: []string{"v=TLSRPTv1"}, wantErr: ErrInvalidRecord},
		{name: "rua twice", txts: []string{"v=TLSRPTv1; rua=mailto:a@example.test; rua=mailto:b@example.test"}, wantErr: ErrInvalidRecord},
		{name: "empty uri", txts: []string{"v=TLSRPTv1; rua=mailto:a@example.test,"}, wantErr: ErrInvalidRecord},
		{name: "bad mailto", txts: []string{"v=TLSRPTv1; rua=mailto:nobody"}, wantErr: ErrInvalidRecord},
		{name: "https without host", txts: []string{"v=TLSRPTv1; rua=https:///x"}, wantErr: ErrInvalidRecord},
		{name: "field without value", txts: []string{"v=TLSRPTv1; rua=mailto:a@example.test; junk"}, wantErr: ErrInvalidRecord},
		{name: "empty field", txts: []string{"v=TLSRPTv1;; rua=mailto:a@example.test"}, wantErr: ErrInvalidRecord},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec, err := ParseRecord(tc.txts)
			if !errors.Is(err, tc.wantErr) || (tc.wantErr != nil) != (err != nil) {
				t.Fatalf("err = %v; want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			var got []string
			for _, u := range rec.RUA {
				got = append(got, u.String())
			}
			if !slices.Equal(got, tc.wantRUA) {
				t.Fatalf("rua = %q; want %q", got, tc.wantRUA)
			}
		})
	}
}

func FuzzParseRecord(f *testing.F) {
	for _, s := range []string{
		"v=TLSRPTv1; rua=mailto:reports@example.test",
		"v=TLSRPTv1;rua=https://r.example.test/x,mailto:a@example.test;ext=1;",
		"v=TLSRPTv1",
		"v=TLSRPTv1; rua=mailto:%61@example.test",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rec, err := ParseRecord([]string{s})
		if err != nil {
			if !errors.Is(err, ErrNoRecord) && !errors.Is(err, ErrInvalidRecord) {
				t.Fatalf("unclassified error %v", err)
			}
			return
		}
		for _, u := range rec.RUA {
			switch u.Scheme {
			case "https":
				if u.Host == "" {
					t.Fatalf("https rua without host from %q", s)
				}
			case "mailto":
				if !validMailto(u) {
					t.Fatalf("invalid mailto %q accepted", u)
				}
			default:
				t.Fatalf("rua of scheme %q accepted", u.Scheme)
			}
		}
	})
}

// manyRUA is a rua value of n distinct mailto URIs.
func manyRUA(n int) string {
	var uris []string
	for i := range n {
		uris = append(uris, fmt.Sprintf("mailto:r%d@example.test", i))
	}
	return strings.Join(uris, ",")
}
