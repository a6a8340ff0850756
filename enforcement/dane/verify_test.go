package dane

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"testing"
	"time"
)

const mxName = "mx1.example.test"

func sha256Hex(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }
func sha512Hex(b []byte) string { s := sha512.Sum512(b); return hex.EncodeToString(s[:]) }

// checkResult asserts Verify's outcome: success with the record and depth
// given, or an *Error of wantKind (0 means success).
func checkResult(t *testing.T, m Match, err error, wantKind Kind, wantRecord TLSA, wantDepth int) {
	t.Helper()
	if wantKind == 0 {
		if err != nil {
			t.Fatalf("Verify error = %v, want match", err)
		}
		if !m.Record.Equal(wantRecord) || m.Depth != wantDepth {
			t.Fatalf("Verify = {%v depth %d}, want {%v depth %d}", m.Record, m.Depth, wantRecord, wantDepth)
		}
		return
	}
	var de *Error
	if !errors.As(err, &de) {
		t.Fatalf("Verify error = %v (%T), want *Error of kind %v", err, err, wantKind)
	}
	if de.Kind != wantKind {
		t.Fatalf("Verify error kind = %v (%v), want %v", de.Kind, err, wantKind)
	}
	sentinel := map[Kind]error{NoUsable: ErrNoUsable, NoMatch: ErrNoMatch, ChainInvalid: ErrChainInvalid, NameMismatch: ErrNameMismatch}[wantKind]
	if !errors.Is(err, sentinel) {
		t.Errorf("errors.Is(%v, sentinel of %v) = false", err, wantKind)
	}
	if m.Depth != 0 || !m.Record.Equal(TLSA{}) {
		t.Errorf("Verify returned match %+v with error %v", m, err)
	}
}

// TestVerifyCombinations walks every usage × selector × matching type. The
// data designates the leaf for end-entity usages and the intermediate for
// trust-anchor usages. Usable records authenticate; PKIX usages never do,
// even with matching data.
func TestVerifyCombinations(t *testing.T) {
	pki := newTestPKI(t)
	presented := chain(pki.leaf, pki.inter, pki.root)
	decoy := TLSA{Usage: UsageDANEEE, Selector: SelectorSPKI, MatchingType: MatchSHA256, Data: make([]byte, 32)}
	for usage := uint8(0); usage <= 3; usage++ {
		for selector := uint8(0); selector <= 1; selector++ {
			for matching := uint8(0); matching <= 2; matching++ {
				target, depth := pki.leaf.cert, 0
				if usage == UsagePKIXTA || usage == UsageDANETA {
					target, depth = pki.inter.cert, 1
				}
				rec := Expect(target, usage, selector, matching)
				usable := usage >= UsageDANETA
				t.Run(fmt.Sprintf("%d %d %d", usage, selector, matching), func(t *testing.T) {
					if rec.Usable() != usable {
						t.Fatalf("%v.Usable() = %v, want %v", rec, rec.Usable(), usable)
					}
					opts := Options{Names: []string{mxName}, Now: fixedNow}
					m, err := Verify([]TLSA{rec}, presented, opts)
					if usable {
						checkResult(t, m, err, 0, rec, depth)
						return
					}
					checkResult(t, m, err, NoUsable, TLSA{}, 0)
					// Beside a usable record that does not match, the
					// matching PKIX record still does not authenticate.
					m, err = Verify([]TLSA{rec, decoy}, presented, opts)
					checkResult(t, m, err, NoMatch, TLSA{}, 0)
				})
			}
		}
	}
}

func TestVerifyDANEEE(t *testing.T) {
	pki := newTestPKI(t)
	expiredLeaf := newCert(t, certSpec{cn: mxName, dns: []string{mxName}, notBefore: testNow.Add(-48 * time.Hour), notAfter: testNow.Add(-time.Hour)}, pki.inter)
	otherLeaf := newCert(t, certSpec{cn: "elsewhere.test", dns: []string{"elsewhere.test"}}, pki.inter)
	selfSigned := newCert(t, certSpec{cn: "self.test"}, nil)
	leaf := pki.leaf.cert
	spki256 := Expect(leaf, UsageDANEEE, SelectorSPKI, MatchSHA256)
	full := Expect(leaf, UsageDANEEE, SelectorCert, MatchFull)
	tests := []struct {
		name       string
		rrs        []TLSA
		chain      []*x509.Certificate
		names      []string
		wantKind   Kind
		wantRecord TLSA
		wantDepth  int
	}{
		{name: "leaf SPKI SHA-256", rrs: []TLSA{spki256}, chain: chain(pki.leaf, pki.inter), names: []string{mxName}, wantRecord: spki256},
		{name: "expired leaf passes", rrs: []TLSA{Expect(expiredLeaf.cert, 3, 1, 1)}, chain: chain(expiredLeaf, pki.inter), names: []string{mxName}, wantRecord: Expect(expiredLeaf.cert, 3, 1, 1)},
		{name: "wrong-name leaf passes", rrs: []TLSA{Expect(otherLeaf.cert, 3, 0, 2)}, chain: chain(otherLeaf, pki.inter), names: []string{mxName}, wantRecord: Expect(otherLeaf.cert, 3, 0, 2)},
		{name: "no names needed", rrs: []TLSA{spki256}, chain: chain(pki.leaf), wantRecord: spki256},
		{name: "self-signed leaf alone", rrs: []TLSA{Expect(selfSigned.cert, 3, 1, 1)}, chain: chain(selfSigned), names: []string{mxName}, wantRecord: Expect(selfSigned.cert, 3, 1, 1)},
		{name: "EE record of the intermediate", rrs: []TLSA{Expect(pki.inter.cert, 3, 1, 1)}, chain: chain(pki.leaf, pki.inter), names: []string{mxName}, wantKind: NoMatch},
		{name: "another leaf's key", rrs: []TLSA{Expect(otherLeaf.cert, 3, 1, 1)}, chain: chain(pki.leaf, pki.inter), names: []string{mxName}, wantKind: NoMatch},
		{name: "full cert truncated", rrs: []TLSA{{Usage: 3, Selector: 0, MatchingType: 0, Data: full.Data[:len(full.Data)-1]}}, chain: chain(pki.leaf), wantKind: NoMatch},
		{name: "full cert over-long", rrs: []TLSA{{Usage: 3, Selector: 0, MatchingType: 0, Data: append(bytes.Clone(full.Data), 0)}}, chain: chain(pki.leaf), wantKind: NoMatch},
		{name: "SHA-256 truncated is unusable", rrs: []TLSA{{Usage: 3, Selector: 1, MatchingType: 1, Data: spki256.Data[:31]}}, chain: chain(pki.leaf), wantKind: NoUsable},
		{name: "SHA-256 over-long is unusable", rrs: []TLSA{{Usage: 3, Selector: 1, MatchingType: 1, Data: append(bytes.Clone(spki256.Data), 0)}}, chain: chain(pki.leaf), wantKind: NoUsable},
		{name: "SHA-256 digest under SHA-512 type", rrs: []TLSA{{Usage: 3, Selector: 1, MatchingType: 2, Data: spki256.Data}}, chain: chain(pki.leaf), wantKind: NoUsable},
		{name: "unusable-only RRset", rrs: []TLSA{Expect(leaf, 1, 1, 1), Expect(leaf, 3, 2, 1), Expect(leaf, 3, 1, 3), {Usage: 3, Selector: 1, MatchingType: 0}}, chain: chain(pki.leaf), wantKind: NoUsable},
		{name: "empty RRset", rrs: nil, chain: chain(pki.leaf), wantKind: NoUsable},
		{name: "empty chain", rrs: []TLSA{spki256}, chain: nil, wantKind: NoMatch},
		{name: "nil leaf", rrs: []TLSA{spki256}, chain: []*x509.Certificate{nil, pki.inter.cert}, wantKind: NoMatch},
		{
			name: "one good record among bad ones",
			rrs: []TLSA{
				Expect(leaf, UsagePKIXEE, 1, 1),
				Expect(otherLeaf.cert, 3, 1, 1),
				{Usage: 3, Selector: 1, MatchingType: 1, Data: spki256.Data[:20]},
				Expect(pki.other.cert, 2, 1, 1),
				Expect(leaf, 3, 2, 1),
				Expect(leaf, 3, 1, 2),
				Expect(otherLeaf.cert, 3, 0, 1),
			},
			chain:      chain(pki.leaf, pki.inter, pki.root),
			names:      []string{mxName},
			wantRecord: Expect(leaf, 3, 1, 2),
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Verify(tc.rrs, tc.chain, Options{Names: tc.names, Now: fixedNow})
			checkResult(t, m, err, tc.wantKind, tc.wantRecord, tc.wantDepth)
		})
	}
}

func TestVerifyDANETA(t *testing.T) {
	pki := newTestPKI(t)
	past := certSpec{notBefore: testNow.Add(-48 * time.Hour), notAfter: testNow.Add(-time.Hour)}
	expiredInter := newCert(t, certSpec{cn: "Expired Intermediate", ca: true, notBefore: past.notBefore, notAfter: past.notAfter}, pki.root)
	leafUnderExpired := newCert(t, certSpec{cn: mxName, dns: []string{mxName}}, expiredInter)
	expiredLeaf := newCert(t, certSpec{cn: mxName, dns: []string{mxName}, notBefore: past.notBefore, notAfter: past.notAfter}, pki.inter)
	wildLeaf := newCert(t, certSpec{cn: "wild", dns: []string{"*.example.test"}}, pki.inter)
	partialWild := newCert(t, certSpec{cn: "partial", dns: []string{"mx*.example.test"}}, pki.inter)
	cnOnly := newCert(t, certSpec{cn: mxName}, pki.inter)
	cnIgnored := newCert(t, certSpec{cn: mxName, dns: []string{"other.example.test"}}, pki.inter)
	multiName := newCert(t, certSpec{cn: "multi", dns: []string{"a.test", "b.test", "c.test", "d.test", "e.test", "f.test"}}, pki.inter)

	interSPKI := Expect(pki.inter.cert, UsageDANETA, SelectorSPKI, MatchSHA256)
	rootCert := Expect(pki.root.cert, UsageDANETA, SelectorCert, MatchSHA256)
	rootSPKI512 := Expect(pki.root.cert, UsageDANETA, SelectorSPKI, MatchSHA512)
	rootFull := Expect(pki.root.cert, UsageDANETA, SelectorCert, MatchFull)
	rootSPKIFull := Expect(pki.root.cert, UsageDANETA, SelectorSPKI, MatchFull)
	otherSPKI := Expect(pki.other.cert, UsageDANETA, SelectorSPKI, MatchSHA256)
	// "2 1 0" keys not sent (RFC 7671 §5.2.2): the topmost presented
	// certificate must be signed by the key.
	// A leaf signed by the root key directly, sent alone.
	direct := newCert(t, certSpec{cn: mxName, dns: []string{mxName}}, pki.root)
	// A non-CA certificate signed by the root key that "issued" a leaf.
	notCA := newCert(t, certSpec{cn: "not a CA", dns: []string{"x.test"}}, pki.root)
	underNotCA := newCert(t, certSpec{cn: mxName, dns: []string{mxName}}, notCA)
	ed := newCert(t, certSpec{cn: "Ed25519 Root", ca: true, ed25519: true}, nil)
	edKey := TLSA{Usage: UsageDANETA, Selector: SelectorSPKI, MatchingType: MatchFull, Data: ed.cert.RawSubjectPublicKeyInfo}
	underEd := newCert(t, certSpec{cn: "Ed Intermediate", ca: true}, ed)
	leafUnderEd := newCert(t, certSpec{cn: mxName, dns: []string{mxName}}, underEd)
	mx := []string{mxName}

	tests := []struct {
		name       string
		rrs        []TLSA
		chain      []*x509.Certificate
		names      []string
		now        time.Time // zero: testNow
		wantKind   Kind
		wantRecord TLSA
		wantDepth  int
		wantCause  x509.InvalidReason // checked when wantKind is ChainInvalid and non-zero
	}{
		{name: "anchor at depth 1", rrs: []TLSA{interSPKI}, chain: chain(pki.leaf, pki.inter, pki.root), names: mx, wantRecord: interSPKI, wantDepth: 1},
		{name: "anchor at depth 1, root not sent", rrs: []TLSA{interSPKI}, chain: chain(pki.leaf, pki.inter), names: mx, wantRecord: interSPKI, wantDepth: 1},
		{name: "root at depth 2", rrs: []TLSA{rootCert}, chain: chain(pki.leaf, pki.inter, pki.root), names: mx, wantRecord: rootCert, wantDepth: 2},
		{name: "root SPKI SHA-512 at depth 2", rrs: []TLSA{rootSPKI512}, chain: chain(pki.leaf, pki.inter, pki.root), names: mx, wantRecord: rootSPKI512, wantDepth: 2},
		{name: "chain sent out of order", rrs: []TLSA{rootCert}, chain: chain(pki.leaf, pki.root, pki.inter), names: mx, wantRecord: rootCert, wantDepth: 1},
		{name: "2 0 0 anchor not sent", rrs: []TLSA{rootFull}, chain: chain(pki.leaf, pki.inter), names: mx, wantRecord: rootFull, wantDepth: 2},
		{name: "2 0 0 unrelated anchor not sent", rrs: []TLSA{Expect(pki.other.cert, 2, 0, 0)}, chain: chain(pki.leaf, pki.inter), names: mx, wantKind: NoMatch},
		{name: "2 1 0 key not sent signed the intermediate", rrs: []TLSA{rootSPKIFull}, chain: chain(pki.leaf, pki.inter), names: mx, wantRecord: rootSPKIFull, wantDepth: 2},
		{name: "2 1 0 unrelated key not sent", rrs: []TLSA{Expect(pki.other.cert, 2, 1, 0)}, chain: chain(pki.leaf, pki.inter), names: mx, wantKind: NoMatch},
		{name: "2 1 1 key not sent is unsupported", rrs: []TLSA{Expect(pki.root.cert, 2, 1, 1)}, chain: chain(pki.leaf, pki.inter), names: mx, wantKind: NoMatch},
		{name: "anchor not in chain", rrs: []TLSA{otherSPKI}, chain: chain(pki.leaf, pki.inter, pki.root), names: mx, wantKind: NoMatch},
		{name: "TA record of the leaf", rrs: []TLSA{Expect(pki.leaf.cert, 2, 1, 1)}, chain: chain(pki.leaf, pki.inter, pki.root), names: mx, wantKind: NoMatch},
		{name: "unrelated CA sent in chain", rrs: []TLSA{otherSPKI}, chain: chain(pki.leaf, pki.inter, pki.other), names: mx, wantKind: ChainInvalid},
		{name: "wrong name", rrs: []TLSA{interSPKI}, chain: chain(pki.leaf, pki.inter), names: []string{"mx2.example.test"}, wantKind: NameMismatch},
		{name: "no reference identifiers", rrs: []TLSA{interSPKI}, chain: chain(pki.leaf, pki.inter), wantKind: NameMismatch},
		{name: "second name matches", rrs: []TLSA{interSPKI}, chain: chain(pki.leaf, pki.inter), names: []string{"example.test", mxName}, wantRecord: interSPKI, wantDepth: 1},
		{name: "name case and trailing dot", rrs: []TLSA{interSPKI}, chain: chain(pki.leaf, pki.inter), names: []string{"MX1.Example.TEST."}, wantRecord: interSPKI, wantDepth: 1},
		{name: "expired intermediate", rrs: []TLSA{rootCert}, chain: chain(leafUnderExpired, expiredInter, pki.root), names: mx, wantKind: ChainInvalid, wantCause: x509.Expired},
		{name: "expired anchor", rrs: []TLSA{Expect(expiredInter.cert, 2, 1, 1)}, chain: chain(leafUnderExpired, expiredInter, pki.root), names: mx, wantKind: ChainInvalid, wantCause: x509.Expired},
		{name: "expired leaf", rrs: []TLSA{interSPKI}, chain: chain(expiredLeaf, pki.inter), names: mx, wantKind: ChainInvalid, wantCause: x509.Expired},
		{name: "clock before validity", rrs: []TLSA{interSPKI}, chain: chain(pki.leaf, pki.inter), names: mx, now: testNow.Add(-72 * time.Hour), wantKind: ChainInvalid, wantCause: x509.Expired},
		{name: "wildcard matches one label", rrs: []TLSA{interSPKI}, chain: chain(wildLeaf, pki.inter), names: mx, wantRecord: interSPKI, wantDepth: 1},
		{name: "wildcard does not match two labels", rrs: []TLSA{interSPKI}, chain: chain(wildLeaf, pki.inter), names: []string{"a.mx1.example.test"}, wantKind: NameMismatch},
		{name: "wildcard does not match the parent", rrs: []TLSA{interSPKI}, chain: chain(wildLeaf, pki.inter), names: []string{"example.test"}, wantKind: NameMismatch},
		{name: "wildcard reference identifier never matches", rrs: []TLSA{interSPKI}, chain: chain(wildLeaf, pki.inter), names: []string{"*.example.test"}, wantKind: NameMismatch},
		{name: "partial wildcard is literal", rrs: []TLSA{interSPKI}, chain: chain(partialWild, pki.inter), names: mx, wantKind: NameMismatch},
		{name: "CN-ID when no DNS-ID", rrs: []TLSA{interSPKI}, chain: chain(cnOnly, pki.inter), names: mx, wantRecord: interSPKI, wantDepth: 1},
		{name: "CN-ID ignored beside a DNS-ID", rrs: []TLSA{interSPKI}, chain: chain(cnIgnored, pki.inter), names: mx, wantKind: NameMismatch},
		{name: "many names, none matching", rrs: []TLSA{interSPKI}, chain: chain(multiName, pki.inter), names: mx, wantKind: NameMismatch},
		{name: "IP literal reference", rrs: []TLSA{interSPKI}, chain: chain(pki.leaf, pki.inter), names: []string{"127.0.0.1"}, wantKind: NameMismatch},
		{name: "2 1 0 key signed the leaf sent alone", rrs: []TLSA{rootSPKIFull}, chain: chain(direct), names: mx, wantRecord: rootSPKIFull, wantDepth: 1},
		{name: "2 1 0 Ed25519 key", rrs: []TLSA{edKey}, chain: chain(leafUnderEd, underEd), names: mx, wantRecord: edKey, wantDepth: 2},
		{name: "2 1 0 key: name checked", rrs: []TLSA{rootSPKIFull}, chain: chain(pki.leaf, pki.inter), names: []string{"mx2.example.test"}, wantKind: NameMismatch},
		{name: "2 1 0 key: expiry checked", rrs: []TLSA{rootSPKIFull}, chain: chain(leafUnderExpired, expiredInter), names: mx, wantKind: ChainInvalid, wantCause: x509.Expired},
		{name: "2 1 0 key: the signed certificate must be a CA to issue", rrs: []TLSA{rootSPKIFull}, chain: chain(underNotCA, notCA), names: mx, wantKind: ChainInvalid},
		{name: "2 1 0 garbage key", rrs: []TLSA{{Usage: 2, Selector: 1, MatchingType: 0, Data: []byte{0x30, 0x03, 0x01, 0x01, 0x00}}}, chain: chain(pki.leaf, pki.inter), names: mx, wantKind: NoMatch},
		{name: "2 1 0 key of a presented certificate still matches there", rrs: []TLSA{rootSPKIFull}, chain: chain(pki.leaf, pki.inter, pki.root), names: mx, wantRecord: rootSPKIFull, wantDepth: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now := tc.now
			if now.IsZero() {
				now = testNow
			}
			m, err := Verify(tc.rrs, tc.chain, Options{Names: tc.names, Now: func() time.Time { return now }})
			checkResult(t, m, err, tc.wantKind, tc.wantRecord, tc.wantDepth)
			if tc.wantCause != 0 {
				var inv x509.CertificateInvalidError
				if !errors.As(err, &inv) || inv.Reason != tc.wantCause {
					t.Errorf("cause of %v is not x509 reason %v", err, tc.wantCause)
				}
			}
		})
	}
}

// TestVerifyPrecedence checks that the most specific failure of an RRset is
// reported and that the first matching record in RRset order wins.
func TestVerifyPrecedence(t *testing.T) {
	pki := newTestPKI(t)
	presented := chain(pki.leaf, pki.inter, pki.root, pki.other)
	nomatch := Expect(newCert(t, certSpec{cn: "x"}, nil).cert, 3, 1, 1)
	chainBad := Expect(pki.other.cert, 2, 1, 1) // sent, but did not issue the chain
	taGood := Expect(pki.inter.cert, 2, 1, 1)
	eeGood := Expect(pki.leaf.cert, 3, 1, 1)
	tests := []struct {
		name       string
		rrs        []TLSA
		names      []string
		wantKind   Kind
		wantRecord TLSA
		wantDepth  int
	}{
		{name: "chain invalid over no match", rrs: []TLSA{nomatch, chainBad, nomatch}, names: []string{mxName}, wantKind: ChainInvalid},
		{name: "name mismatch over chain invalid", rrs: []TLSA{chainBad, taGood, nomatch}, names: []string{"wrong.example.test"}, wantKind: NameMismatch},
		{name: "name mismatch over chain invalid, reversed", rrs: []TLSA{nomatch, taGood, chainBad}, names: []string{"wrong.example.test"}, wantKind: NameMismatch},
		{name: "a match beats every failure", rrs: []TLSA{chainBad, taGood, nomatch, eeGood}, names: []string{"wrong.example.test"}, wantRecord: eeGood},
		{name: "first match wins: EE", rrs: []TLSA{eeGood, taGood}, names: []string{mxName}, wantRecord: eeGood},
		{name: "first match wins: TA", rrs: []TLSA{taGood, eeGood}, names: []string{mxName}, wantRecord: taGood, wantDepth: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Verify(tc.rrs, presented, Options{Names: tc.names, Now: fixedNow})
			checkResult(t, m, err, tc.wantKind, tc.wantRecord, tc.wantDepth)
		})
	}
}

// TestVerifyDefaultClock checks that a nil Now means the real clock: a chain
// valid only in 2000 fails DANE-TA but still passes DANE-EE.
func TestVerifyDefaultClock(t *testing.T) {
	old := certSpec{notBefore: time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC), notAfter: time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)}
	root := newCert(t, certSpec{cn: "Old Root", ca: true, notBefore: old.notBefore, notAfter: old.notAfter}, nil)
	leaf := newCert(t, certSpec{cn: mxName, dns: []string{mxName}, notBefore: old.notBefore, notAfter: old.notAfter}, root)
	presented := chain(leaf, root)
	opts := Options{Names: []string{mxName}}

	m, err := Verify([]TLSA{Expect(root.cert, 2, 1, 1)}, presented, opts)
	checkResult(t, m, err, ChainInvalid, TLSA{}, 0)

	ee := Expect(leaf.cert, 3, 1, 1)
	m, err = Verify([]TLSA{ee}, presented, opts)
	checkResult(t, m, err, 0, ee, 0)
}

func TestVerifyErrorDetail(t *testing.T) {
	pki := newTestPKI(t)
	_, err := Verify([]TLSA{Expect(pki.inter.cert, 2, 1, 1)}, chain(pki.leaf, pki.inter), Options{Names: []string{"mx2.example.test", "example.test"}, Now: fixedNow})
	want := "certificate not valid for name: DANE-TA 2 1 1 " + sha256Hex(pki.inter.cert.RawSubjectPublicKeyInfo)[:16] +
		"... at depth 1: certificate names mx1.example.test, expected mx2.example.test, example.test"
	if err == nil || err.Error() != want {
		t.Errorf("error = %v\nwant    %s", err, want)
	}
	_, err = Verify([]TLSA{Expect(pki.other.cert, 3, 1, 1)}, chain(pki.leaf, pki.inter), Options{Now: fixedNow})
	if want := "no TLSA record matched the certificate chain: 1 usable records, 2 certificates presented"; err == nil || err.Error() != want {
		t.Errorf("error = %v, want %s", err, want)
	}
}
