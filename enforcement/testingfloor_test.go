package enforcement

import (
	"crypto/tls"
	"testing"

	"sealgate/certs/certstest"
	"sealgate/enforcement/mtasts"
)

// TestTestingFallbackKeepsTheMinimumVersion: when an MTA-STS policy in
// testing mode fails and delivery falls to the floor, the configured
// minimum TLS version still applies, both ways: a domain in testing mode
// is not held to a stricter version than a domain without policy, and a
// version below the minimum is refused on the fallback too.
func TestTestingFallbackKeepsTheMinimumVersion(t *testing.T) {
	self := certstest.SelfSigned(t, "mx.d.test")
	inTesting := &mtasts.Policy{Version: "STSv1", Mode: mtasts.ModeTesting, MX: []string{"mx.d.test"}}
	tests := []struct {
		name    string
		min     uint16 // the configured minimum
		sts     *mtasts.Policy
		floor   Level
		version uint16 // negotiated
		wantOK  bool
	}{
		{name: "no policy, TLS 1.0 allowed", min: tls.VersionTLS10, version: tls.VersionTLS10, wantOK: true},
		{name: "testing, TLS 1.0 allowed", min: tls.VersionTLS10, sts: inTesting, version: tls.VersionTLS10, wantOK: true},
		{name: "testing, TLS 1.1 below a 1.2 minimum", min: tls.VersionTLS12, sts: inTesting, version: tls.VersionTLS11},
		{name: "testing, default minimum refuses TLS 1.1", sts: inTesting, version: tls.VersionTLS11},
		{name: "testing, the engine's verify floor refuses a self-signed certificate", min: tls.VersionTLS10, sts: inTesting, floor: LevelVerify, version: tls.VersionTLS12},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := &Engine{MinVersion: tc.min, Floor: tc.floor}
			req := e.hostRequirement(mxHost{name: "mx.d.test"})
			if tc.sts != nil {
				req, _ = e.stsRequirement(tc.sts, "mx.d.test")
			}
			if got := req.TLSConfig(&Verifier{}, "mx.d.test", nil, &Verdict{}).MinVersion; tc.min != 0 && got != tc.min {
				t.Errorf("offered minimum %x, want %x", got, tc.min)
			}
			v := (&Verifier{}).Judge(req, "mx.d.test", state(self, tc.version))
			if v.OK != tc.wantOK {
				t.Errorf("OK = %v (%s), want %v", v.OK, v.Detail, tc.wantOK)
			}
		})
	}
}
