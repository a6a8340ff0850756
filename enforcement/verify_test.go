package enforcement

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"testing"

	"sealgate/certs/certstest"
	"sealgate/enforcement/dane"
)

func state(c tls.Certificate, version uint16) tls.ConnectionState {
	var chain []*x509.Certificate
	for _, der := range c.Certificate {
		x, err := x509.ParseCertificate(der)
		if err != nil {
			panic(err)
		}
		chain = append(chain, x)
	}
	return tls.ConnectionState{Version: version, PeerCertificates: chain}
}

type recorder struct{ got []Verdict }

func (r *recorder) RecordVerdict(v Verdict) { r.got = append(r.got, v) }

func TestJudge(t *testing.T) {
	ca := certstest.NewCA(t, "root")
	other := certstest.NewCA(t, "other root")
	good := ca.Leaf("mx.example.test")
	expired := ca.Issue(certstest.Names("mx.example.test"), certstest.Expired())
	untrusted := other.Leaf("mx.example.test")
	self := certstest.SelfSigned(t, "mx.example.test")
	certDigest := sha256.Sum256(good.Leaf.Raw)
	keyDigest := sha256.Sum256(good.Leaf.RawSubjectPublicKeyInfo)

	tests := []struct {
		name       string
		req        Requirement
		cert       tls.Certificate
		version    uint16
		wantOK     bool
		wantAuth   bool
		wantResult string
	}{
		{name: "encrypt accepts self-signed", req: Requirement{Level: LevelEncrypt}, cert: self, wantOK: true},
		{name: "TLS 1.1 below the minimum", req: Requirement{Level: LevelEncrypt}, cert: self, version: tls.VersionTLS11, wantResult: ResultValidationFailure},
		{name: "TLS 1.1 allowed when configured", req: Requirement{Level: LevelEncrypt, MinVersion: tls.VersionTLS11}, cert: self, version: tls.VersionTLS11, wantOK: true},
		{name: "verify good", req: Requirement{Level: LevelVerify, Names: []string{"mx.example.test"}}, cert: good, wantOK: true, wantAuth: true},
		{name: "verify name case-insensitive", req: Requirement{Level: LevelVerify, Names: []string{"MX.Example.Test."}}, cert: good, wantOK: true, wantAuth: true},
		{name: "verify dot pattern", req: Requirement{Level: LevelVerify, Names: []string{".example.test"}}, cert: good, wantOK: true, wantAuth: true},
		{name: "verify wrong name", req: Requirement{Level: LevelVerify, Names: []string{"mx2.example.test"}}, cert: good, wantResult: ResultHostMismatch},
		{name: "verify expired", req: Requirement{Level: LevelVerify, Names: []string{"mx.example.test"}}, cert: expired, wantResult: ResultExpired},
		{name: "verify untrusted", req: Requirement{Level: LevelVerify, Names: []string{"mx.example.test"}}, cert: untrusted, wantResult: ResultNotTrusted},
		{name: "verify self-signed", req: Requirement{Level: LevelVerify, Names: []string{"mx.example.test"}}, cert: self, wantResult: ResultNotTrusted},
		{name: "verify with private roots", req: Requirement{Level: LevelVerify, Names: []string{"mx.example.test"}, Roots: other.Pool()}, cert: untrusted, wantOK: true, wantAuth: true},
		{name: "private roots refuse public", req: Requirement{Level: LevelVerify, Names: []string{"mx.example.test"}, Roots: other.Pool()}, cert: good, wantResult: ResultNotTrusted},
		{name: "fingerprint of certificate", req: Requirement{Level: LevelFingerprint, Fingerprints: [][]byte{certDigest[:]}}, cert: good, wantOK: true, wantAuth: true},
		{name: "fingerprint of key", req: Requirement{Level: LevelFingerprint, Fingerprints: [][]byte{keyDigest[:]}}, cert: good, wantOK: true, wantAuth: true},
		{name: "fingerprint mismatch", req: Requirement{Level: LevelFingerprint, Fingerprints: [][]byte{keyDigest[:]}}, cert: self, wantResult: ResultNotTrusted},
		{name: "DANE-EE match", req: Requirement{Level: LevelDANE, TLSA: []dane.TLSA{dane.Expect(self.Leaf, 3, 1, 1)}}, cert: self, wantOK: true, wantAuth: true},
		{name: "DANE-EE mismatch", req: Requirement{Level: LevelDANE, TLSA: []dane.TLSA{dane.Expect(good.Leaf, 3, 1, 1)}}, cert: self, wantResult: ResultTLSAInvalid},
		{name: "testing failure falls to floor", req: Requirement{Source: SourceMTASTS, Level: LevelVerify, Testing: true, Names: []string{"mx.example.test"}}, cert: self, wantOK: true, wantResult: ResultNotTrusted},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{}
			v := &Verifier{Roots: ca.Pool(), Recorder: rec}
			if tc.version == 0 {
				tc.version = tls.VersionTLS13
			}
			got := v.Judge(tc.req, "mx.example.test", state(tc.cert, tc.version))
			if got.OK != tc.wantOK || got.Authenticated != tc.wantAuth || got.Result != tc.wantResult {
				t.Errorf("verdict OK=%v auth=%v result=%q (%s), want OK=%v auth=%v result=%q", got.OK, got.Authenticated, got.Result, got.Detail, tc.wantOK, tc.wantAuth, tc.wantResult)
			}
			if !got.OK && (got.Err == nil || got.Err.Result != tc.wantResult) {
				t.Errorf("refusal without a classified error: %+v", got.Err)
			}
			if len(rec.got) != 1 {
				t.Errorf("recorder got %d verdicts, want 1", len(rec.got))
			}
		})
	}
}

func TestTestingPolicyDoesNotEscapeAVerifyFloor(t *testing.T) {
	v := &Verifier{Roots: x509.NewCertPool()}
	self := certstest.SelfSigned(t, "mx.example.test")
	got := v.Judge(Requirement{Source: SourceMTASTS, Level: LevelVerify, Testing: true, Floor: LevelVerify, Names: []string{"mx.example.test"}}, "mx.example.test", state(self, tls.VersionTLS13))
	if got.OK {
		t.Fatal("a failed testing policy let a self-signed certificate pass a verify floor")
	}
}

func TestDANEFailureResults(t *testing.T) {
	ca := certstest.NewCA(t, "anchor")
	good := ca.Issue(certstest.Names("mx.example.test"), certstest.IncludeRoot())
	expired := ca.Issue(certstest.Names("mx.example.test"), certstest.IncludeRoot(), certstest.Expired())
	other := certstest.NewCA(t, "another anchor").Issue(certstest.Names("mx.example.test"), certstest.IncludeRoot())
	ta := dane.Expect(ca.Root(), 2, 0, 1)
	v := &Verifier{}
	for _, tc := range []struct {
		name  string
		names []string
		cert  tls.Certificate
		want  string
	}{
		{name: "DANE-TA wrong name", names: []string{"other.example.test"}, cert: good, want: ResultHostMismatch},
		{name: "DANE-TA expired leaf", names: []string{"mx.example.test"}, cert: expired, want: ResultExpired},
		{name: "DANE-TA good", names: []string{"mx.example.test"}, cert: good},
		{name: "DANE-TA of another authority", names: []string{"mx.example.test"}, cert: other, want: ResultTLSAInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := v.Judge(Requirement{Level: LevelDANE, TLSA: []dane.TLSA{ta}, Names: tc.names}, "mx.example.test", state(tc.cert, tls.VersionTLS13))
			if got.Result != tc.want || got.OK != (tc.want == "") {
				t.Errorf("result %q ok=%v (%s), want %q", got.Result, got.OK, got.Detail, tc.want)
			}
		})
	}
}

// TestHostMismatchNamesTheReferences checks the reason of a name mismatch:
// the expected names listed as in DANE's, at most four of them.
func TestHostMismatchNamesTheReferences(t *testing.T) {
	ca := certstest.NewCA(t, "root")
	good := ca.Leaf("mx.example.test")
	v := &Verifier{Roots: ca.Pool()}
	for _, tc := range []struct {
		name  string
		names []string
		want  string
	}{
		{name: "one", names: []string{"a.example.test"}, want: "certificate not valid for name a.example.test"},
		{name: "two", names: []string{"a.example.test", "b.example.test"}, want: "certificate not valid for name a.example.test, b.example.test"},
		{name: "six", names: []string{"a.test", "b.test", "c.test", "d.test", "e.test", "f.test"}, want: "certificate not valid for name a.test, b.test, c.test, d.test and 2 more"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := v.Judge(Requirement{Level: LevelVerify, Names: tc.names}, "mx.example.test", state(good, tls.VersionTLS13))
			if got.OK || got.Result != ResultHostMismatch || got.Detail != tc.want {
				t.Errorf("verdict OK=%v result=%q detail %q, want result %q detail %q", got.OK, got.Result, got.Detail, ResultHostMismatch, tc.want)
			}
		})
	}
}
