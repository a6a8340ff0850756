package dane

import (
	"encoding/hex"
	"errors"
	"strings"
	"testing"
)

// FuzzVerify feeds arbitrary record fields and data against a fixed chain
// (leaf ← intermediate ← root, all sent). Verify must not panic, a match must
// be a usable record with a sane depth, and a failure must be a classified
// *Error consistent with the record's usability.
func FuzzVerify(f *testing.F) {
	pki := newTestPKI(f)
	presented := chain(pki.leaf, pki.inter, pki.root)
	for _, c := range []*issued{pki.leaf, pki.inter, pki.root, pki.other} {
		for usage := uint8(0); usage <= 3; usage++ {
			r := Expect(c.cert, usage, SelectorSPKI, MatchSHA256)
			f.Add(r.Usage, r.Selector, r.MatchingType, r.Data)
		}
		r := Expect(c.cert, UsageDANETA, SelectorCert, MatchFull)
		f.Add(r.Usage, r.Selector, r.MatchingType, r.Data)
		r = Expect(c.cert, UsageDANEEE, SelectorCert, MatchSHA512)
		f.Add(r.Usage, r.Selector, r.MatchingType, r.Data)
		r = Expect(c.cert, UsageDANETA, SelectorSPKI, MatchFull)
		f.Add(r.Usage, r.Selector, r.MatchingType, r.Data)
	}
	f.Add(uint8(3), uint8(1), uint8(1), []byte{})
	f.Add(uint8(255), uint8(255), uint8(255), []byte{0})
	f.Add(uint8(2), uint8(0), uint8(0), []byte{0x30, 0x82, 0x01})
	opts := Options{Names: []string{mxName}, Now: fixedNow}
	f.Fuzz(func(t *testing.T, usage, selector, matching uint8, data []byte) {
		r := TLSA{Usage: usage, Selector: selector, MatchingType: matching, Data: data}
		m, err := Verify([]TLSA{r}, presented, opts)
		if err == nil {
			if !r.Usable() || !m.Record.Equal(r) {
				t.Fatalf("match %v at depth %d for record %v (usable %v)", m.Record, m.Depth, r, r.Usable())
			}
			if m.Depth < 0 || m.Depth > len(presented) {
				t.Fatalf("match depth %d out of range", m.Depth)
			}
			if usage == UsageDANEEE && m.Depth != 0 {
				t.Fatalf("DANE-EE matched at depth %d", m.Depth)
			}
			return
		}
		var de *Error
		if !errors.As(err, &de) {
			t.Fatalf("error %v is %T, not *Error", err, err)
		}
		if (de.Kind == NoUsable) == r.Usable() {
			t.Fatalf("kind %v for record %v with Usable() = %v", de.Kind, r, r.Usable())
		}
		if de.Kind < NoUsable || de.Kind > NameMismatch {
			t.Fatalf("unknown kind %v", de.Kind)
		}
	})
}

// FuzzVerifyPair feeds two records against a chain whose root is not sent
// (leaf ← intermediate), which reaches digest algorithm agility between the
// two records and the DANE-TA "2 1 0" key that is not presented. Verify must
// not panic; a match must be one of the records Usable keeps, at a sane
// depth; a failure must be a classified *Error.
func FuzzVerifyPair(f *testing.F) {
	pki := newTestPKI(f)
	presented := chain(pki.leaf, pki.inter)
	add := func(a, b TLSA) {
		f.Add(a.Usage, a.Selector, a.MatchingType, a.Data, b.Usage, b.Selector, b.MatchingType, b.Data)
	}
	leaf := pki.leaf.cert
	wrong512 := TLSA{Usage: UsageDANEEE, Selector: SelectorSPKI, MatchingType: MatchSHA512, Data: make([]byte, 64)}
	add(Expect(leaf, 3, 1, 1), wrong512)
	add(Expect(leaf, 3, 1, 2), Expect(leaf, 3, 1, 1))
	add(Expect(leaf, 3, 1, 0), wrong512)
	add(Expect(pki.root.cert, 2, 1, 0), wrong512)
	add(Expect(pki.other.cert, 2, 1, 0), Expect(pki.root.cert, 2, 0, 0))
	add(Expect(pki.inter.cert, 2, 1, 1), Expect(pki.inter.cert, 2, 1, 2))
	opts := Options{Names: []string{mxName}, Now: fixedNow}
	f.Fuzz(func(t *testing.T, u1, s1, m1 uint8, d1 []byte, u2, s2, m2 uint8, d2 []byte) {
		rrs := []TLSA{{Usage: u1, Selector: s1, MatchingType: m1, Data: d1}, {Usage: u2, Selector: s2, MatchingType: m2, Data: d2}}
		m, err := Verify(rrs, presented, opts)
		if err == nil {
			kept := false
			for _, r := range Usable(rrs) {
				kept = kept || r.Equal(m.Record)
			}
			if !kept {
				t.Fatalf("match %v is not among the records Usable keeps from %v", m.Record, rrs)
			}
			if m.Depth < 0 || m.Depth > len(presented) || (m.Record.Usage == UsageDANEEE && m.Depth != 0) {
				t.Fatalf("match %v at depth %d", m.Record, m.Depth)
			}
			return
		}
		var de *Error
		if !errors.As(err, &de) || de.Kind < NoUsable || de.Kind > NameMismatch {
			t.Fatalf("error %v (%T) is not a classified *Error", err, err)
		}
	})
}

// FuzzParseTLSA checks that ParseTLSA never panics, accepts exactly the
// even-length hex strings, and round-trips the data case-insensitively.
func FuzzParseTLSA(f *testing.F) {
	for _, s := range []string{
		"",
		"00",
		"8cb0fc6c527506a053f4f14c8464bebbd6dede2738d11468dd953d7d6a3021f1",
		"8CB0FC6C527506A053F4F14C8464BEBBD6DEDE2738D11468DD953D7D6A3021F1",
		"abc",
		"zz",
		"0x00",
		"ab cd",
	} {
		f.Add(uint8(3), uint8(1), uint8(1), s)
	}
	f.Fuzz(func(t *testing.T, usage, selector, matching uint8, s string) {
		r, err := ParseTLSA(usage, selector, matching, s)
		_, hexErr := hex.DecodeString(s)
		if (err == nil) != (hexErr == nil) {
			t.Fatalf("ParseTLSA(%q) error = %v, hex says %v", s, err, hexErr)
		}
		if err != nil {
			if !errors.Is(err, ErrBadData) {
				t.Fatalf("ParseTLSA(%q) error %v does not wrap ErrBadData", s, err)
			}
			return
		}
		if r.Usage != usage || r.Selector != selector || r.MatchingType != matching {
			t.Fatalf("ParseTLSA fields = %v, want %d %d %d", r, usage, selector, matching)
		}
		if got := hex.EncodeToString(r.Data); got != strings.ToLower(s) {
			t.Fatalf("round trip %q -> %q", s, got)
		}
	})
}
