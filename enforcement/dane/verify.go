package dane

import (
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"sealgate/enforcement/dnsname"
)

// Options are the inputs of Verify besides the records and the chain.
type Options struct {
	// Names are the reference identifiers for DANE-TA name checks (RFC 7672
	// §3.2.3): the MX host name before and after CNAME expansion and/or
	// the TLSA base domain. A leaf valid for any of them is accepted.
	// DANE-EE ignores names. Empty Names make every DANE-TA match fail
	// with NameMismatch.
	Names []string
	// Now is the clock for DANE-TA chain validity; nil means time.Now.
	// DANE-EE ignores validity dates.
	Now func() time.Time
}

// Match says which record authenticated the peer and the depth in the chain
// (0 = leaf) of the certificate it designates. For a DANE-TA "2 0 0" record
// whose anchor the server did not send, Depth is where the anchor sits at
// the top of the verified chain.
type Match struct {
	Record TLSA
	Depth  int
}

// Verify authenticates a peer's certificate chain against a TLSA RRset
// (RFC 7672 §3.1, RFC 7671 §5). chain is the chain as presented, leaf first
// (tls.ConnectionState.PeerCertificates). Unusable records are ignored; when
// none is usable the error has kind NoUsable, which the caller should treat
// as "TLS mandatory, no authentication" (better: call Usable first).
//
// A DANE-EE(3) record matches the leaf only; names and validity dates are
// ignored (RFC 7672 §3.1.1). A DANE-TA(2) record matches a certificate of
// the chain at depth ≥ 1; the leaf must then chain up to that anchor, valid
// at opts.Now, with any extended key usage, and be valid for one of
// opts.Names (RFC 7672 §3.1.2, §3.2.3). The first record that matches in
// RRset order authenticates the peer.
//
// On failure the error is an *Error whose Kind is the most specific reason
// among the records: NameMismatch, then ChainInvalid, then NoMatch.
func Verify(rrs []TLSA, chain []*x509.Certificate, opts Options) (Match, error) {
	usable := Usable(rrs)
	if len(usable) == 0 {
		return Match{}, &Error{Kind: NoUsable, Detail: fmt.Sprintf("%d records, none with usage 2 or 3, a known selector and matching type, and data of the right length", len(rrs))}
	}
	if len(chain) == 0 || chain[0] == nil {
		return Match{}, &Error{Kind: NoMatch, Detail: "no certificate presented"}
	}
	clock := opts.Now
	if clock == nil {
		clock = time.Now
	}
	now := clock()

	var worst *Error
	for _, r := range usable {
		var m Match
		var err *Error
		switch r.Usage {
		case UsageDANEEE:
			m, err = verifyEE(r, chain)
		case UsageDANETA:
			m, err = verifyTA(r, chain, opts.Names, now)
		}
		if err == nil {
			return m, nil
		}
		worst = moreSpecific(worst, err)
	}
	if worst.Kind == NoMatch {
		worst = &Error{Kind: NoMatch, Detail: fmt.Sprintf("%d usable records, %d certificates presented", len(usable), len(chain))}
	}
	return Match{}, worst
}

// moreSpecific returns b when it outranks a (or a is nil), else a: the first
// failure of the most specific kind wins.
func moreSpecific(a, b *Error) *Error {
	if a == nil || b.Kind > a.Kind {
		return b
	}
	return a
}

// verifyEE matches a DANE-EE record against the leaf alone.
func verifyEE(r TLSA, chain []*x509.Certificate) (Match, *Error) {
	if matches(r, chain[0]) {
		return Match{Record: r, Depth: 0}, nil
	}
	return Match{}, &Error{Kind: NoMatch}
}

// verifyTA looks for the trust anchor a DANE-TA record designates among the
// presented certificates above the leaf, then checks the chain and the name.
//
// RFC 7671 §5.2.2 also allows a DANE-TA record to designate an anchor the
// server does not send. A "2 0 0" record carries the whole anchor
// certificate: it becomes the only root. A "2 1 0" record carries the
// anchor's public key: the topmost presented certificate must be signed by
// that key (see keyAnchored). A digest ("2 x 1", "2 x 2") of an anchor that
// is not sent designates nothing we can check and yields NoMatch; RFC 7672
// §3.2.2 asks servers to include the anchor in the chain for this reason.
func verifyTA(r TLSA, chain []*x509.Certificate, names []string, now time.Time) (Match, *Error) {
	var worst *Error
	for depth := 1; depth < len(chain); depth++ {
		if !matches(r, chain[depth]) {
			continue
		}
		m, err := anchored(r, chain, chain[depth], depth, names, now)
		if err == nil {
			return m, nil
		}
		worst = moreSpecific(worst, err)
	}
	if worst != nil {
		return Match{}, worst
	}
	switch {
	case r.Selector == SelectorCert && r.MatchingType == MatchFull:
		if anchor, err := x509.ParseCertificate(r.Data); err == nil {
			return anchored(r, chain, anchor, -1, names, now)
		}
	case r.Selector == SelectorSPKI && r.MatchingType == MatchFull:
		return keyAnchored(r, chain, names, now)
	}
	return Match{}, &Error{Kind: NoMatch}
}

// keyAnchored handles a "2 1 0" record whose public key no presented
// certificate carries: the topmost presented certificate must carry a
// signature by that key (a SHA-1 signature does not count), and, unless it
// is the leaf, be a CA. It then serves as the root of the chain, whose
// validity and names are checked as for any DANE-TA anchor. The match depth
// is that of the key, one above the topmost certificate.
func keyAnchored(r TLSA, chain []*x509.Certificate, names []string, now time.Time) (Match, *Error) {
	key, err := x509.ParsePKIXPublicKey(r.Data)
	top := chain[len(chain)-1]
	if err != nil || top == nil || !signedBy(top, key) {
		return Match{}, &Error{Kind: NoMatch}
	}
	depth := len(chain)
	if top != chain[0] && (!top.BasicConstraintsValid || !top.IsCA) {
		return Match{}, &Error{Kind: ChainInvalid, Detail: fmt.Sprintf("DANE-TA %s at depth %d: the certificate it signed is not a CA", r.short(), depth)}
	}
	return anchored(r, chain, top, depth, names, now)
}

// signedBy reports whether key made the signature of cert.
func signedBy(cert *x509.Certificate, key any) bool {
	switch cert.SignatureAlgorithm {
	case x509.SHA1WithRSA, x509.ECDSAWithSHA1, x509.DSAWithSHA1, x509.MD5WithRSA, x509.MD2WithRSA:
		return false
	}
	holder := &x509.Certificate{PublicKey: key}
	return holder.CheckSignature(cert.SignatureAlgorithm, cert.RawTBSCertificate, cert.Signature) == nil
}

// anchored verifies the leaf up to anchor, the only root, with the other
// presented certificates as intermediates, then checks the reference
// identifiers. depth < 0 means the anchor was not presented: the depth is
// then taken from the verified chain.
func anchored(r TLSA, chain []*x509.Certificate, anchor *x509.Certificate, depth int, names []string, now time.Time) (Match, *Error) {
	roots := x509.NewCertPool()
	roots.AddCert(anchor)
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		if c != nil && c != anchor {
			inter.AddCert(c)
		}
	}
	leaf := chain[0]
	verified, err := leaf.Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   now,
		// SMTP servers' certificates often carry odd EKUs; DANE does
		// not require serverAuth.
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	where := fmt.Sprintf("DANE-TA %s", r.short())
	if depth >= 0 {
		where += fmt.Sprintf(" at depth %d", depth)
	}
	if err != nil {
		var unknown x509.UnknownAuthorityError
		if depth < 0 && errors.As(err, &unknown) {
			// A "2 0 0" anchor that was not sent and did not issue
			// the chain designates nothing the peer presented.
			return Match{}, &Error{Kind: NoMatch}
		}
		return Match{}, &Error{Kind: ChainInvalid, Detail: where + ": " + err.Error(), Err: err}
	}
	if depth < 0 {
		depth = len(verified[0]) - 1
	}
	if !matchName(leaf, names) {
		return Match{}, &Error{Kind: NameMismatch, Detail: fmt.Sprintf("%s: certificate names %s, expected %s", where, leafNames(leaf), dnsname.Join(names))}
	}
	return Match{Record: r, Depth: depth}, nil
}
