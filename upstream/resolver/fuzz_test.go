package resolver_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"sealgate/enforcement"
	"sealgate/upstream/resolver"
)

// FuzzReply feeds arbitrary DNS replies (the resolver's outside input) to
// every lookup: it must not panic, must classify every error, and must
// return MX host names in canonical form.
func FuzzReply(f *testing.F) {
	seed := func(rcode int, ad bool, records ...string) {
		m := new(dns.Msg)
		m.SetQuestion("fuzz.test.", dns.TypeMX)
		m.Response, m.Rcode, m.AuthenticatedData = true, rcode, ad
		for _, text := range records {
			rr, err := dns.NewRR(text)
			if err != nil {
				f.Fatal(err)
			}
			m.Answer = append(m.Answer, rr)
		}
		b, err := m.Pack()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	seed(dns.RcodeSuccess, true, "fuzz.test. IN MX 10 MX.fuzz.test.", "fuzz.test. IN MX 10 b.fuzz.test.")
	seed(dns.RcodeSuccess, false, "fuzz.test. IN MX 0 .")
	seed(dns.RcodeSuccess, true, "fuzz.test. IN CNAME a.test.", "a.test. IN CNAME fuzz.test.")
	seed(dns.RcodeSuccess, true, "fuzz.test. IN CNAME t.test.", "t.test. IN A 192.0.2.1", "t.test. IN AAAA 2001:db8::1")
	seed(dns.RcodeSuccess, true, "fuzz.test. IN TLSA 3 1 1 abcd", `fuzz.test. IN TXT "a" "b"`)
	seed(dns.RcodeNameError, false)
	seed(dns.RcodeServerFailure, false)
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, data []byte) {
		r := &resolver.Resolver{
			Servers: []string{"fuzz"},
			Shuffle: noShuffle,
			Exchange: func(_ context.Context, _, _ string, q *dns.Msg) (*dns.Msg, error) {
				m := new(dns.Msg)
				if err := m.Unpack(data); err != nil {
					return nil, err
				}
				// Match the question so that the content is judged.
				m.Id, m.Question = q.Id, q.Question
				return m, nil
			},
		}
		ctx := context.Background()
		check := func(err error) {
			if err != nil && !errors.Is(err, enforcement.ErrNotFound) && !errors.Is(err, enforcement.ErrDNSTemporary) {
				t.Errorf("unclassified error: %v", err)
			}
		}
		mx, err := r.LookupMX(ctx, "fuzz.test")
		check(err)
		for _, h := range mx.Hosts {
			if h == "" || strings.HasSuffix(h, ".") || h != strings.ToLower(h) {
				t.Errorf("MX host %q is not canonical", h)
			}
		}
		if mx.Null && len(mx.Hosts) > 0 {
			t.Errorf("null MX with hosts %q", mx.Hosts)
		}
		_, err = r.LookupAddrs(ctx, "fuzz.test")
		check(err)
		_, err = r.LookupTLSA(ctx, "fuzz.test")
		check(err)
		_, err = r.LookupTXT(ctx, "fuzz.test")
		check(err)
	})
}
