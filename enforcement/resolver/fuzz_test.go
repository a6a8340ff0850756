package resolver_test

import (
	"context"
	"encoding/hex"
	"errors"
	"strings"
	"testing"

	"github.com/miekg/dns"

	"sealgate/enforcement"
	"sealgate/enforcement/resolver"
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

// FuzzTXTRaw: whatever bytes a TXT record carries on the wire, LookupTXT
// returns exactly those bytes (its character-strings joined), never
// miekg/dns's escaped presentation form.
func FuzzTXTRaw(f *testing.F) {
	f.Add([]byte("v=STSv1;\tid=1;"))
	f.Add([]byte("caf\xc3\xa9 \"q\" back\\slash \\009 \x00\xff"))
	f.Add([]byte(strings.Repeat("\\", 300)))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, raw []byte) {
		if len(raw) > 4000 {
			return
		}
		// The record's wire data: raw cut into character-strings of up
		// to 255 bytes, each behind its length byte.
		var rdata []byte
		for rest := raw; ; {
			n := min(len(rest), 255)
			rdata = append(append(rdata, byte(n)), rest[:n]...)
			if rest = rest[n:]; len(rest) == 0 {
				break
			}
		}
		rr := &dns.RFC3597{
			Hdr:   dns.RR_Header{Name: "fuzz.test.", Rrtype: dns.TypeTXT, Class: dns.ClassINET, Ttl: 60},
			Rdata: hex.EncodeToString(rdata),
		}
		r := &resolver.Resolver{
			Servers: []string{"fuzz"},
			Exchange: func(_ context.Context, _, _ string, q *dns.Msg) (*dns.Msg, error) {
				m := new(dns.Msg)
				m.SetReply(q)
				m.Answer = []dns.RR{rr}
				b, err := m.Pack()
				if err != nil {
					return nil, err
				}
				// Unpacked as a client would receive it.
				out := new(dns.Msg)
				return out, out.Unpack(b)
			},
		}
		got, err := r.LookupTXT(context.Background(), "fuzz.test")
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Records) != 1 || got.Records[0] != string(raw) {
			t.Fatalf("LookupTXT = %q, want %q", got.Records, raw)
		}
	})
}
