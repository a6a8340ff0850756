package enforcement

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"sealgate/enforcement/dane"
	"sealgate/enforcement/dnsname"
	"sealgate/enforcement/mtasts"
)

// Result types of TLS-RPT (RFC 8460 §4.3) used to classify failures. The
// MTA-STS ones are those of mtasts.ErrorKind.
const (
	ResultSTARTTLSNotSupported = "starttls-not-supported"
	ResultHostMismatch         = "certificate-host-mismatch"
	ResultExpired              = "certificate-expired"
	ResultNotTrusted           = "certificate-not-trusted"
	ResultValidationFailure    = "validation-failure"
	ResultTLSAInvalid          = "tlsa-invalid"
	ResultDNSSECInvalid        = "dnssec-invalid"
	ResultDANERequired         = "dane-required"
	ResultSTSFetchError        = mtasts.ResultFetchError
	ResultSTSInvalid           = mtasts.ResultInvalid
	ResultSTSWebPKIInvalid     = mtasts.ResultWebPKIInvalid
)

// Verdict is the judgement of one TLS handshake against a requirement.
type Verdict struct {
	Host string
	Req  Requirement
	// OK means the connection may carry mail.
	OK bool
	// Authenticated is true when the server was authenticated at the
	// requirement's level (false for encrypt, and for a testing policy
	// that failed but met the floor).
	Authenticated bool
	// Detail says how the server was authenticated, e.g.
	// "DANE-EE 3 1 1 matched at depth 0", or why not.
	Detail string
	// Result is the TLS-RPT result type of a failure, also set when a
	// testing policy failed but delivery proceeded.
	Result string
	// Err is the classified failure when !OK.
	Err *TLSError
}

// TLSError is a classified certificate or handshake failure.
type TLSError struct {
	Result string // TLS-RPT result type
	Reason string // for humans: "certificate not valid for name"
}

func (e *TLSError) Error() string { return e.Reason }

// Recorder receives every verdict (for TLS-RPT and metrics).
type Recorder interface {
	RecordVerdict(Verdict)
}

// Verifier judges TLS connections against requirements.
type Verifier struct {
	// Roots are the WebPKI roots; nil means the system roots (which
	// honour SSL_CERT_FILE and SSL_CERT_DIR).
	Roots *x509.CertPool
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Recorder, if set, receives every verdict.
	Recorder Recorder
}

func (v *Verifier) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

// Judge evaluates a completed handshake with host against r. A failed
// testing requirement is judged again at r.Floor, with r's versions: the
// requirement is the one owner of the floor and the minimum version.
func (v *Verifier) Judge(r Requirement, host string, cs tls.ConnectionState) Verdict {
	verdict := v.judge(r, host, cs)
	if !verdict.OK && r.Testing {
		floor := Requirement{Source: SourceFloor, Level: r.Floor, Names: []string{host}, MinVersion: r.MinVersion, MaxVersion: r.MaxVersion}
		if floor.Level == 0 {
			floor.Level = LevelEncrypt
		}
		if fv := v.judge(floor, host, cs); fv.OK {
			verdict.OK = true
			verdict.Err = nil
			verdict.Detail = "testing policy failed (" + verdict.Detail + "); delivered under the floor"
		}
	}
	if v.Recorder != nil {
		v.Recorder.RecordVerdict(verdict)
	}
	return verdict
}

func (v *Verifier) judge(r Requirement, host string, cs tls.ConnectionState) Verdict {
	out := Verdict{Host: host, Req: r}
	fail := func(result, reason string) Verdict {
		out.Result = result
		out.Detail = reason
		out.Err = &TLSError{Result: result, Reason: reason}
		return out
	}
	if min := r.minVersion(); cs.Version < min {
		return fail(ResultValidationFailure, "TLS version "+tls.VersionName(cs.Version)+" below "+tls.VersionName(min))
	}
	if len(cs.PeerCertificates) == 0 {
		return fail(ResultValidationFailure, "no server certificate")
	}
	leaf := cs.PeerCertificates[0]
	switch r.Level {
	case LevelEncrypt:
		out.Detail = "encrypted, certificate not checked"
	case LevelVerify:
		if res, reason := v.verifyChain(r, cs.PeerCertificates); res != "" {
			return fail(res, reason)
		}
		name, ok := matchName(r.Names, leaf)
		if !ok {
			return fail(ResultHostMismatch, fmt.Sprintf("certificate not valid for name %s", dnsname.Join(r.Names)))
		}
		out.Authenticated = true
		out.Detail = "certificate chain valid for " + name
	case LevelFingerprint:
		what, ok := fingerprintMatch(r.Fingerprints, leaf)
		if !ok {
			return fail(ResultNotTrusted, "certificate fingerprint not in policy")
		}
		out.Authenticated = true
		out.Detail = what + " fingerprint matched"
	case LevelDANE:
		m, err := dane.Verify(r.TLSA, cs.PeerCertificates, dane.Options{Names: r.Names, Now: v.now})
		if err != nil {
			return fail(daneResult(err), "TLSA: "+err.Error())
		}
		out.Authenticated = true
		out.Detail = fmt.Sprintf("DANE %s matched at depth %d", m.Record, m.Depth)
	default:
		return fail(ResultValidationFailure, "no usable requirement level "+r.Level.String())
	}
	out.OK = true
	return out
}

func (v *Verifier) verifyChain(r Requirement, chain []*x509.Certificate) (result, reason string) {
	roots := r.Roots
	if roots == nil {
		roots = v.Roots
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   v.now(),
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err == nil {
		return "", ""
	}
	var inv x509.CertificateInvalidError
	var unk x509.UnknownAuthorityError
	switch {
	case errors.As(err, &inv) && inv.Reason == x509.Expired:
		return ResultExpired, "certificate expired or not yet valid"
	case errors.As(err, &unk):
		return ResultNotTrusted, "certificate not signed by a trusted authority"
	}
	return ResultNotTrusted, "certificate chain invalid: " + err.Error()
}

// daneResult is the TLS-RPT result type of a DANE failure (RFC 8460
// §4.3.2.1): no record matching the chain is "tlsa-invalid" (none of the
// records in the RRset were found to be valid).
func daneResult(err error) string {
	var inv x509.CertificateInvalidError
	switch {
	case errors.Is(err, dane.ErrNoMatch):
		return ResultTLSAInvalid
	case errors.Is(err, dane.ErrNameMismatch):
		return ResultHostMismatch
	case errors.As(err, &inv) && inv.Reason == x509.Expired:
		return ResultExpired
	}
	return ResultValidationFailure
}
