package dane

import (
	"bytes"
	"testing"
)

// TestDigestAgility checks RFC 7671 §9: among the usable records of one
// usage and selector, only those of the strongest digest the host publishes
// count; full data (matching type 0) is no digest and always counts.
func TestDigestAgility(t *testing.T) {
	pki := newTestPKI(t)
	leaf := pki.leaf.cert
	presented := chain(pki.leaf, pki.inter, pki.root)
	right256 := Expect(leaf, UsageDANEEE, SelectorSPKI, MatchSHA256)
	right512 := Expect(leaf, UsageDANEEE, SelectorSPKI, MatchSHA512)
	wrong512 := TLSA{Usage: UsageDANEEE, Selector: SelectorSPKI, MatchingType: MatchSHA512, Data: bytes.Repeat([]byte{7}, 64)}
	wrong256 := TLSA{Usage: UsageDANEEE, Selector: SelectorSPKI, MatchingType: MatchSHA256, Data: bytes.Repeat([]byte{7}, 32)}
	shortSHA512 := TLSA{Usage: UsageDANEEE, Selector: SelectorSPKI, MatchingType: MatchSHA512, Data: bytes.Repeat([]byte{7}, 32)}
	unknown := TLSA{Usage: UsageDANEEE, Selector: SelectorSPKI, MatchingType: 3, Data: bytes.Repeat([]byte{7}, 64)}
	fullSPKI := Expect(leaf, UsageDANEEE, SelectorSPKI, MatchFull)
	certRight256 := Expect(leaf, UsageDANEEE, SelectorCert, MatchSHA256)
	taRight256 := Expect(pki.inter.cert, UsageDANETA, SelectorSPKI, MatchSHA256)
	tests := []struct {
		name       string
		rrs        []TLSA
		wantKind   Kind
		wantRecord TLSA
		wantDepth  int
	}{
		{name: "SHA-512 published: the right SHA-256 record no longer counts", rrs: []TLSA{right256, wrong512}, wantKind: NoMatch},
		{name: "order does not matter", rrs: []TLSA{wrong512, right256}, wantKind: NoMatch},
		{name: "the right SHA-512 record counts", rrs: []TLSA{wrong256, right512}, wantRecord: right512},
		{name: "an unusable SHA-512 record does not demote SHA-256", rrs: []TLSA{right256, shortSHA512}, wantRecord: right256},
		{name: "an unknown matching type does not demote SHA-256", rrs: []TLSA{unknown, right256}, wantRecord: right256},
		{name: "full data is no digest: kept beside SHA-512", rrs: []TLSA{wrong512, fullSPKI}, wantRecord: fullSPKI},
		{name: "another selector is its own group", rrs: []TLSA{wrong512, certRight256}, wantRecord: certRight256},
		{name: "another usage is its own group", rrs: []TLSA{wrong512, taRight256}, wantRecord: taRight256, wantDepth: 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Verify(tc.rrs, presented, Options{Names: []string{mxName}, Now: fixedNow})
			checkResult(t, m, err, tc.wantKind, tc.wantRecord, tc.wantDepth)
		})
	}
}
