package dane

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

func TestTLSAUsable(t *testing.T) {
	tests := []struct {
		name string
		rec  TLSA
		want bool
	}{
		{name: "DANE-EE SPKI SHA-256", rec: TLSA{Usage: 3, Selector: 1, MatchingType: 1, Data: make([]byte, 32)}, want: true},
		{name: "DANE-EE Cert SHA-512", rec: TLSA{Usage: 3, Selector: 0, MatchingType: 2, Data: make([]byte, 64)}, want: true},
		{name: "DANE-TA Cert full", rec: TLSA{Usage: 2, Selector: 0, MatchingType: 0, Data: []byte{1}}, want: true},
		{name: "DANE-TA SPKI full", rec: TLSA{Usage: 2, Selector: 1, MatchingType: 0, Data: []byte{1, 2, 3}}, want: true},
		{name: "PKIX-TA", rec: TLSA{Usage: 0, Selector: 1, MatchingType: 1, Data: make([]byte, 32)}, want: false},
		{name: "PKIX-EE", rec: TLSA{Usage: 1, Selector: 1, MatchingType: 1, Data: make([]byte, 32)}, want: false},
		{name: "usage 4", rec: TLSA{Usage: 4, Selector: 1, MatchingType: 1, Data: make([]byte, 32)}, want: false},
		{name: "private usage 255", rec: TLSA{Usage: 255, Selector: 1, MatchingType: 1, Data: make([]byte, 32)}, want: false},
		{name: "selector 2", rec: TLSA{Usage: 3, Selector: 2, MatchingType: 1, Data: make([]byte, 32)}, want: false},
		{name: "matching 3", rec: TLSA{Usage: 3, Selector: 1, MatchingType: 3, Data: make([]byte, 32)}, want: false},
		{name: "SHA-256 truncated", rec: TLSA{Usage: 3, Selector: 1, MatchingType: 1, Data: make([]byte, 31)}, want: false},
		{name: "SHA-256 over-long", rec: TLSA{Usage: 3, Selector: 1, MatchingType: 1, Data: make([]byte, 33)}, want: false},
		{name: "SHA-256 with SHA-512 length", rec: TLSA{Usage: 3, Selector: 1, MatchingType: 1, Data: make([]byte, 64)}, want: false},
		{name: "SHA-512 truncated", rec: TLSA{Usage: 3, Selector: 1, MatchingType: 2, Data: make([]byte, 63)}, want: false},
		{name: "SHA-512 with SHA-256 length", rec: TLSA{Usage: 3, Selector: 1, MatchingType: 2, Data: make([]byte, 32)}, want: false},
		{name: "full empty", rec: TLSA{Usage: 3, Selector: 0, MatchingType: 0}, want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.rec.Usable(); got != tc.want {
				t.Errorf("%v.Usable() = %v, want %v", tc.rec, got, tc.want)
			}
		})
	}
}

func TestUsableFilter(t *testing.T) {
	good1 := TLSA{Usage: 3, Selector: 1, MatchingType: 1, Data: bytes.Repeat([]byte{1}, 32)}
	good2 := TLSA{Usage: 2, Selector: 0, MatchingType: 2, Data: bytes.Repeat([]byte{2}, 64)}
	bad := TLSA{Usage: 1, Selector: 1, MatchingType: 1, Data: bytes.Repeat([]byte{3}, 32)}
	short := TLSA{Usage: 3, Selector: 1, MatchingType: 1, Data: []byte{4}}
	// Digest algorithm agility (RFC 7671 §9).
	d := func(n int, b byte) []byte { return bytes.Repeat([]byte{b}, n) }
	ee2 := TLSA{Usage: 3, Selector: 1, MatchingType: 2, Data: d(64, 2)}
	ee0 := TLSA{Usage: 3, Selector: 1, MatchingType: 0, Data: d(91, 3)}
	ta1 := TLSA{Usage: 2, Selector: 0, MatchingType: 1, Data: d(32, 4)}
	ta1b := TLSA{Usage: 2, Selector: 0, MatchingType: 1, Data: d(32, 5)}
	pkix2 := TLSA{Usage: 1, Selector: 1, MatchingType: 2, Data: d(64, 6)}
	tests := []struct {
		name string
		in   []TLSA
		want []TLSA
	}{
		{name: "nil", in: nil, want: nil},
		{name: "only unusable", in: []TLSA{bad, short}, want: nil},
		{name: "mixed keeps order", in: []TLSA{bad, good2, short, good1}, want: []TLSA{good2, good1}},
		{name: "strongest digest per usage and selector", in: []TLSA{good1, ta1, ee2, ee0, ta1b}, want: []TLSA{ta1, ee2, ee0, ta1b}},
		{name: "unusable records demote nothing", in: []TLSA{pkix2, good1}, want: []TLSA{good1}},
		{name: "SHA-256 alone stays", in: []TLSA{good1, ta1}, want: []TLSA{good1, ta1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Usable(tc.in)
			if len(got) != len(tc.want) {
				t.Fatalf("Usable = %v, want %v", got, tc.want)
			}
			for i := range got {
				if !got[i].Equal(tc.want[i]) {
					t.Errorf("Usable[%d] = %v, want %v", i, got[i], tc.want[i])
				}
			}
		})
	}
}

func TestParseTLSA(t *testing.T) {
	const lower = "8cb0fc6c527506a053f4f14c8464bebbd6dede2738d11468dd953d7d6a3021f1"
	want := TLSA{Usage: 3, Selector: 1, MatchingType: 1, Data: mustHex(t, lower)}
	tests := []struct {
		name    string
		hex     string
		want    TLSA
		wantErr bool
	}{
		{name: "lower case", hex: lower, want: want},
		{name: "upper case", hex: strings.ToUpper(lower), want: want},
		{name: "mixed case", hex: "8CB0fc6C" + lower[8:], want: want},
		{name: "empty is a record, never usable", hex: "", want: TLSA{Usage: 3, Selector: 1, MatchingType: 1, Data: []byte{}}},
		{name: "odd length", hex: lower[:63], wantErr: true},
		{name: "bad digit", hex: "zz" + lower[2:], wantErr: true},
		{name: "embedded space", hex: lower[:32] + " " + lower[32:], wantErr: true},
		{name: "0x prefix", hex: "0x" + lower, wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseTLSA(3, 1, 1, tc.hex)
			if tc.wantErr {
				if !errors.Is(err, ErrBadData) {
					t.Fatalf("ParseTLSA(%q) error = %v, want ErrBadData", tc.hex, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseTLSA(%q): %v", tc.hex, err)
			}
			if !got.Equal(tc.want) {
				t.Errorf("ParseTLSA(%q) = %v, want %v", tc.hex, got, tc.want)
			}
		})
	}
}

func TestTLSAEqual(t *testing.T) {
	base := TLSA{Usage: 3, Selector: 1, MatchingType: 1, Data: []byte{1, 2}}
	tests := []struct {
		name  string
		other TLSA
		want  bool
	}{
		{name: "same", other: TLSA{Usage: 3, Selector: 1, MatchingType: 1, Data: []byte{1, 2}}, want: true},
		{name: "usage", other: TLSA{Usage: 2, Selector: 1, MatchingType: 1, Data: []byte{1, 2}}, want: false},
		{name: "selector", other: TLSA{Usage: 3, Selector: 0, MatchingType: 1, Data: []byte{1, 2}}, want: false},
		{name: "matching", other: TLSA{Usage: 3, Selector: 1, MatchingType: 2, Data: []byte{1, 2}}, want: false},
		{name: "data", other: TLSA{Usage: 3, Selector: 1, MatchingType: 1, Data: []byte{1, 3}}, want: false},
		{name: "data prefix", other: TLSA{Usage: 3, Selector: 1, MatchingType: 1, Data: []byte{1}}, want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := base.Equal(tc.other); got != tc.want {
				t.Errorf("Equal = %v, want %v", got, tc.want)
			}
			if got := tc.other.Equal(base); got != tc.want {
				t.Errorf("reverse Equal = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestTLSAString(t *testing.T) {
	r := TLSA{Usage: 3, Selector: 1, MatchingType: 1, Data: []byte{0xab, 0x12}}
	if got, want := r.String(), "3 1 1 ab12"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
	long := TLSA{Usage: 2, Selector: 0, MatchingType: 0, Data: bytes.Repeat([]byte{0xcd}, 100)}
	if got, want := long.short(), "2 0 0 cdcdcdcdcdcdcdcd..."; got != want {
		t.Errorf("short = %q, want %q", got, want)
	}
}

func TestExpect(t *testing.T) {
	pki := newTestPKI(t)
	leaf := pki.leaf.cert
	tests := []struct {
		name     string
		selector uint8
		matching uint8
		wantHex  string // empty: compare with wantData
		wantData []byte
	}{
		{name: "cert full", selector: 0, matching: 0, wantData: leaf.Raw},
		{name: "spki full", selector: 1, matching: 0, wantData: leaf.RawSubjectPublicKeyInfo},
		{name: "cert sha256", selector: 0, matching: 1, wantHex: sha256Hex(leaf.Raw)},
		{name: "spki sha256", selector: 1, matching: 1, wantHex: sha256Hex(leaf.RawSubjectPublicKeyInfo)},
		{name: "cert sha512", selector: 0, matching: 2, wantHex: sha512Hex(leaf.Raw)},
		{name: "spki sha512", selector: 1, matching: 2, wantHex: sha512Hex(leaf.RawSubjectPublicKeyInfo)},
		{name: "unknown selector", selector: 2, matching: 1, wantData: nil},
		{name: "unknown matching", selector: 1, matching: 3, wantData: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Expect(leaf, UsageDANEEE, tc.selector, tc.matching)
			want := tc.wantData
			if tc.wantHex != "" {
				want = mustHex(t, tc.wantHex)
			}
			if !bytes.Equal(got.Data, want) || got.Usage != UsageDANEEE || got.Selector != tc.selector || got.MatchingType != tc.matching {
				t.Errorf("Expect = %v, want data %x", got, want)
			}
			if want == nil && got.Usable() {
				t.Errorf("Expect with unknown parameters is usable: %v", got)
			}
		})
	}
	// A full-data record must not alias the certificate.
	r := Expect(leaf, UsageDANEEE, SelectorCert, MatchFull)
	r.Data[0] ^= 0xff
	if leaf.Raw[0] == r.Data[0] {
		t.Error("Expect full data aliases cert.Raw")
	}
	if got := Expect(nil, UsageDANEEE, SelectorSPKI, MatchSHA256); got.Data != nil {
		t.Errorf("Expect(nil) data = %x, want nil", got.Data)
	}
}

func mustHex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
