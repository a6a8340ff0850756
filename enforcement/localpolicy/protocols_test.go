package localpolicy

import (
	"crypto/tls"
	"errors"
	"strings"
	"testing"
)

func TestParseProtocols(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantMin uint16
		wantMax uint16
		wantErr string // substring; empty means success
	}{
		{name: "empty allows all", in: ""},
		{name: "legacy exclusions", in: "!SSLv2:!SSLv3:!TLSv1:!TLSv1.1", wantMin: tls.VersionTLS12},
		{name: "postfix old default", in: "!SSLv2:!SSLv3", wantMin: tls.VersionTLS10},
		{name: "lower bound name", in: ">=TLSv1.2", wantMin: tls.VersionTLS12},
		{name: "both bounds", in: ">=TLSv1.2:<=TLSv1.3", wantMin: tls.VersionTLS12},
		{name: "upper bound below 1.3", in: ">=TLSv1:<=TLSv1.2", wantMin: tls.VersionTLS10, wantMax: tls.VersionTLS12},
		{name: "hex lower bound", in: ">=0x0303", wantMin: tls.VersionTLS12},
		{name: "hex without prefix", in: ">=303", wantMin: tls.VersionTLS12},
		{name: "future upper bound keeps 1.3", in: ">=TLSv1.2:<=0305", wantMin: tls.VersionTLS12},
		{name: "include list", in: "TLSv1.2:TLSv1.3", wantMin: tls.VersionTLS12},
		{name: "include only 1.2", in: "TLSv1.2", wantMin: tls.VersionTLS12, wantMax: tls.VersionTLS12},
		{name: "case ignored", in: "!sslv2:!SSLV3:!tlsv1", wantMin: tls.VersionTLS11},
		{name: "empty elements skipped", in: "!SSLv2::!SSLv3:", wantMin: tls.VersionTLS10},
		{name: "hole ends the range (OpenSSL)", in: "!SSLv2:!SSLv3:!TLSv1.1", wantMin: tls.VersionTLS10, wantMax: tls.VersionTLS10},
		{name: "exclude 1.3 only", in: "!TLSv1.3", wantMin: tls.VersionTLS10, wantMax: tls.VersionTLS12},
		{name: "nothing left", in: "!SSLv2:!SSLv3:!TLSv1:!TLSv1.1:!TLSv1.2:!TLSv1.3", wantErr: "no TLS version"},
		{name: "only SSL left", in: "SSLv3", wantErr: "no TLS version"},
		{name: "SSL then hole", in: "!TLSv1", wantErr: "no TLS version"},
		{name: "bound above all", in: ">=0x0305", wantErr: "no TLS version"},
		{name: "crossed bounds", in: ">=TLSv1.3:<=TLSv1.2", wantErr: "no TLS version"},
		{name: "unknown name", in: "!SSLv2:TLSv9", wantErr: `unknown protocol "TLSv9"`},
		{name: "unknown exclusion", in: "!TLS1.2", wantErr: `unknown protocol "TLS1.2"`},
		{name: "bad bound", in: ">=latest", wantErr: `version "latest"`},
		{name: "empty bound", in: ">=", wantErr: `version ""`},
		{name: "hex too long", in: ">=0x00303", wantErr: "version"},
		{name: "lower bound twice", in: ">=TLSv1.2:>=TLSv1.3", wantErr: "given twice"},
		{name: "upper bound twice", in: "<=TLSv1.2:<=TLSv1.3", wantErr: "given twice"},
		{name: "comma is not a separator here", in: "!SSLv2,!SSLv3", wantErr: "unknown protocol"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			lo, hi, err := parseProtocols(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("parseProtocols(%q) error = %v, want one containing %q", tc.in, err, tc.wantErr)
				}
				if tc.wantErr == "no TLS version" && !errors.Is(err, errNoProtocol) {
					t.Errorf("error %v is not errNoProtocol", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseProtocols(%q): %v", tc.in, err)
			}
			if lo != tc.wantMin || hi != tc.wantMax {
				t.Errorf("parseProtocols(%q) = %#04x, %#04x, want %#04x, %#04x", tc.in, lo, hi, tc.wantMin, tc.wantMax)
			}
		})
	}
}

func TestEntryProtocols(t *testing.T) {
	tests := []struct {
		name string
		in   string // protocols= value; "" for none
		want string
	}{
		{name: "none given", in: "", want: ""},
		{name: "lower bound", in: "!SSLv2:!SSLv3:!TLSv1:!TLSv1.1", want: ">=TLSv1.2"},
		{name: "both bounds", in: ">=TLSv1:<=TLSv1.2", want: ">=TLSv1:<=TLSv1.2"},
		{name: "only 1.3 excluded", in: "!TLSv1.3", want: ">=TLSv1:<=TLSv1.2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			text := "x.test encrypt\n"
			if tc.in != "" {
				text = "x.test encrypt protocols=" + tc.in + "\n"
			}
			p, err := parseString("policy.cf", text)
			if err != nil {
				t.Fatal(err)
			}
			e, _ := p.Lookup("x.test")
			if got := e.Protocols(); got != tc.want {
				t.Errorf("Protocols() = %q, want %q", got, tc.want)
			}
			if tc.want == "" {
				return
			}
			// The form printed parses back to the same bounds.
			q, err := parseString("policy.cf", "x.test encrypt protocols="+e.Protocols()+"\n")
			if err != nil {
				t.Fatal(err)
			}
			f, _ := q.Lookup("x.test")
			if f.MinVersion != e.MinVersion || f.MaxVersion != e.MaxVersion {
				t.Errorf("%q parses to %#04x-%#04x, want %#04x-%#04x", e.Protocols(), f.MinVersion, f.MaxVersion, e.MinVersion, e.MaxVersion)
			}
		})
	}
}
