package dnstest_test

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"

	"sealgate/enforcement/resolver/dnstest"
)

type ask struct {
	name  string
	qtype uint16
	net   string // "udp" (default) or "tcp"
	do    bool
	ad    bool
	// timeout of the client; zero means 2s.
	timeout time.Duration
}

func exchange(t *testing.T, addr string, a ask) (*dns.Msg, error) {
	t.Helper()
	m := new(dns.Msg)
	m.SetQuestion(a.name, a.qtype)
	m.AuthenticatedData = a.ad
	if a.do {
		m.SetEdns0(1232, true)
	}
	timeout := a.timeout
	if timeout == 0 {
		timeout = 2 * time.Second
	}
	c := &dns.Client{Net: a.net, Timeout: timeout}
	resp, _, err := c.Exchange(m, addr)
	return resp, err
}

func names(rrs []dns.RR) []string {
	var out []string
	for _, rr := range rrs {
		out = append(out, strings.ReplaceAll(rr.String(), "\t", " "))
	}
	return out
}

func TestServerAnswers(t *testing.T) {
	s := dnstest.NewServer(t)
	s.Add(
		"example.test. 300 IN MX 10 mx.example.test.",
		"mx.example.test. 300 IN A 192.0.2.1",
		"alias.example.test. 300 IN CNAME mid.example.test.",
		"mid.example.test. 300 IN CNAME mx.example.test.",
		"loop1.example.test. 300 IN CNAME loop2.example.test.",
		"loop2.example.test. 300 IN CNAME loop1.example.test.",
		"_25._tcp.mx.example.test. 300 IN TLSA 3 1 1 ABCD",
		"signed.test. 300 IN A 192.0.2.2",
		"insecure.signed.test. 300 IN A 192.0.2.3",
	)
	s.SetSecureZone("signed.test.", true)
	s.SetSecure("insecure.signed.test.", dns.TypeANY, false)

	tests := []struct {
		name       string
		ask        ask
		wantRcode  int
		wantAD     bool
		wantAnswer []string
	}{
		{
			name:       "records",
			ask:        ask{name: "example.test.", qtype: dns.TypeMX},
			wantRcode:  dns.RcodeSuccess,
			wantAnswer: []string{"example.test. 300 IN MX 10 mx.example.test."},
		},
		{
			name:       "case-insensitive name",
			ask:        ask{name: "MX.Example.TEST.", qtype: dns.TypeA},
			wantRcode:  dns.RcodeSuccess,
			wantAnswer: []string{"mx.example.test. 300 IN A 192.0.2.1"},
		},
		{
			name:      "nodata",
			ask:       ask{name: "example.test.", qtype: dns.TypeA},
			wantRcode: dns.RcodeSuccess,
		},
		{
			name:      "empty non-terminal is nodata",
			ask:       ask{name: "_tcp.mx.example.test.", qtype: dns.TypeTXT},
			wantRcode: dns.RcodeSuccess,
		},
		{
			name:      "nxdomain",
			ask:       ask{name: "nope.example.test.", qtype: dns.TypeA},
			wantRcode: dns.RcodeNameError,
		},
		{
			name:      "cname chain followed",
			ask:       ask{name: "alias.example.test.", qtype: dns.TypeA},
			wantRcode: dns.RcodeSuccess,
			wantAnswer: []string{
				"alias.example.test. 300 IN CNAME mid.example.test.",
				"mid.example.test. 300 IN CNAME mx.example.test.",
				"mx.example.test. 300 IN A 192.0.2.1",
			},
		},
		{
			name:      "cname loop stops",
			ask:       ask{name: "loop1.example.test.", qtype: dns.TypeA},
			wantRcode: dns.RcodeSuccess,
			wantAnswer: []string{
				"loop1.example.test. 300 IN CNAME loop2.example.test.",
				"loop2.example.test. 300 IN CNAME loop1.example.test.",
			},
		},
		{
			name:       "secure zone with DO",
			ask:        ask{name: "signed.test.", qtype: dns.TypeA, do: true},
			wantRcode:  dns.RcodeSuccess,
			wantAD:     true,
			wantAnswer: []string{"signed.test. 300 IN A 192.0.2.2"},
		},
		{
			name:       "secure zone with AD only",
			ask:        ask{name: "signed.test.", qtype: dns.TypeA, ad: true},
			wantRcode:  dns.RcodeSuccess,
			wantAD:     true,
			wantAnswer: []string{"signed.test. 300 IN A 192.0.2.2"},
		},
		{
			name:       "secure zone without DO or AD",
			ask:        ask{name: "signed.test.", qtype: dns.TypeA},
			wantRcode:  dns.RcodeSuccess,
			wantAnswer: []string{"signed.test. 300 IN A 192.0.2.2"},
		},
		{
			name:      "secure denial",
			ask:       ask{name: "signed.test.", qtype: dns.TypeMX, do: true},
			wantRcode: dns.RcodeSuccess,
			wantAD:    true,
		},
		{
			name:       "override inside secure zone",
			ask:        ask{name: "insecure.signed.test.", qtype: dns.TypeA, do: true},
			wantRcode:  dns.RcodeSuccess,
			wantAnswer: []string{"insecure.signed.test. 300 IN A 192.0.2.3"},
		},
		{
			name:       "tcp",
			ask:        ask{name: "_25._tcp.mx.example.test.", qtype: dns.TypeTLSA, net: "tcp"},
			wantRcode:  dns.RcodeSuccess,
			wantAnswer: []string{"_25._tcp.mx.example.test. 300 IN TLSA 3 1 1 abcd"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := exchange(t, s.Addr(), tc.ask)
			if err != nil {
				t.Fatal(err)
			}
			if resp.Rcode != tc.wantRcode {
				t.Errorf("rcode = %s, want %s", dns.RcodeToString[resp.Rcode], dns.RcodeToString[tc.wantRcode])
			}
			if resp.AuthenticatedData != tc.wantAD {
				t.Errorf("AD = %v, want %v", resp.AuthenticatedData, tc.wantAD)
			}
			if got := names(resp.Answer); !slices.Equal(got, tc.wantAnswer) {
				t.Errorf("answer = %q, want %q", got, tc.wantAnswer)
			}
		})
	}
}

func TestServerSwitches(t *testing.T) {
	s := dnstest.NewServer(t)
	s.Add("a.test. 60 IN A 192.0.2.1", "a.test. 60 IN AAAA 2001:db8::1")

	s.SetRcode("a.test.", dns.TypeA, dns.RcodeServerFailure)
	if resp, err := exchange(t, s.Addr(), ask{name: "a.test.", qtype: dns.TypeA}); err != nil || resp.Rcode != dns.RcodeServerFailure || len(resp.Answer) != 0 {
		t.Errorf("SetRcode: resp %v, err %v", resp, err)
	}
	if resp, err := exchange(t, s.Addr(), ask{name: "a.test.", qtype: dns.TypeAAAA}); err != nil || resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 1 {
		t.Errorf("SetRcode leaked to AAAA: resp %v, err %v", resp, err)
	}
	s.SetRcode("a.test.", dns.TypeA, dns.RcodeSuccess)
	s.SetRcode("a.test.", dns.TypeANY, dns.RcodeRefused)
	if resp, err := exchange(t, s.Addr(), ask{name: "a.test.", qtype: dns.TypeAAAA}); err != nil || resp.Rcode != dns.RcodeRefused {
		t.Errorf("SetRcode ANY: resp %v, err %v", resp, err)
	}
	s.SetRcode("a.test.", dns.TypeANY, dns.RcodeSuccess)

	s.SetTruncate("a.test.", dns.TypeA, true)
	resp, err := exchange(t, s.Addr(), ask{name: "a.test.", qtype: dns.TypeA})
	if err != nil || !resp.Truncated || len(resp.Answer) != 0 {
		t.Errorf("SetTruncate over UDP: resp %v, err %v", resp, err)
	}
	resp, err = exchange(t, s.Addr(), ask{name: "a.test.", qtype: dns.TypeA, net: "tcp"})
	if err != nil || resp.Truncated || len(resp.Answer) != 1 {
		t.Errorf("SetTruncate over TCP: resp %v, err %v", resp, err)
	}
	s.SetTruncate("a.test.", dns.TypeA, false)

	s.SetDrop("a.test.", dns.TypeA, true)
	for _, network := range []string{"udp", "tcp"} {
		_, err := exchange(t, s.Addr(), ask{name: "a.test.", qtype: dns.TypeA, net: network, timeout: 100 * time.Millisecond})
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Errorf("SetDrop over %s: err = %v, want timeout", network, err)
		}
	}
	s.SetDrop("a.test.", dns.TypeA, false)

	s.Remove("a.test.", dns.TypeA)
	if resp, err := exchange(t, s.Addr(), ask{name: "a.test.", qtype: dns.TypeA}); err != nil || resp.Rcode != dns.RcodeSuccess || len(resp.Answer) != 0 {
		t.Errorf("after Remove A: resp %v, err %v", resp, err)
	}
	s.Remove("a.test.", dns.TypeANY)
	if resp, err := exchange(t, s.Addr(), ask{name: "a.test.", qtype: dns.TypeAAAA}); err != nil || resp.Rcode != dns.RcodeNameError {
		t.Errorf("after Remove ANY: resp %v, err %v", resp, err)
	}
}

func TestServerNoFollow(t *testing.T) {
	s := dnstest.NewServer(t)
	s.Add("alias.test. 60 IN CNAME target.test.", "target.test. 60 IN A 192.0.2.1")
	s.SetFollowCNAME(false)
	resp, err := exchange(t, s.Addr(), ask{name: "alias.test.", qtype: dns.TypeA})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"alias.test. 60 IN CNAME target.test."}
	if got := names(resp.Answer); resp.Rcode != dns.RcodeSuccess || !slices.Equal(got, want) {
		t.Errorf("rcode %s, answer %q, want NOERROR %q", dns.RcodeToString[resp.Rcode], got, want)
	}
}

func TestServerTruncatesLargeUDPAnswers(t *testing.T) {
	s := dnstest.NewServer(t)
	for i := range 40 {
		s.Add(fmt.Sprintf("big.test. 60 IN TXT \"%s-%02d\"", strings.Repeat("x", 60), i))
	}
	resp, err := exchange(t, s.Addr(), ask{name: "big.test.", qtype: dns.TypeTXT, do: true})
	if err != nil || !resp.Truncated {
		t.Fatalf("UDP: resp %v, err %v; want TC", resp, err)
	}
	resp, err = exchange(t, s.Addr(), ask{name: "big.test.", qtype: dns.TypeTXT, net: "tcp"})
	if err != nil || resp.Truncated || len(resp.Answer) != 40 {
		t.Fatalf("TCP: err %v, TC %v, %d records; want 40", err, resp != nil && resp.Truncated, len(resp.Answer))
	}
}

func TestServerRecordsQueries(t *testing.T) {
	s := dnstest.NewServer(t)
	s.Add("a.test. 60 IN A 192.0.2.1")
	if _, err := exchange(t, s.Addr(), ask{name: "a.test.", qtype: dns.TypeA, do: true, ad: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := exchange(t, s.Addr(), ask{name: "A.test.", qtype: dns.TypeAAAA, net: "tcp"}); err != nil {
		t.Fatal(err)
	}
	want := []dnstest.Query{
		{Name: "a.test.", Type: dns.TypeA, Net: "udp", RD: true, AD: true, DO: true, UDPSize: 1232},
		{Name: "A.test.", Type: dns.TypeAAAA, Net: "tcp", RD: true},
	}
	if got := s.Queries(); !slices.Equal(got, want) {
		t.Errorf("Queries() = %+v, want %+v", got, want)
	}
	s.ResetQueries()
	if got := s.Queries(); len(got) != 0 {
		t.Errorf("after ResetQueries: %+v", got)
	}
}

// fatalTB records Fatalf instead of failing the test.
type fatalTB struct {
	*testing.T
	mu    sync.Mutex
	fatal string
}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.mu.Lock()
	f.fatal = fmt.Sprintf(format, args...)
	f.mu.Unlock()
	runtime.Goexit()
}

func TestServerAddRejectsBadRecord(t *testing.T) {
	tb := &fatalTB{T: t}
	s := dnstest.NewServer(tb)
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.Add("bad.test. 60 IN MX not-a-number mx.test.")
	}()
	<-done
	tb.mu.Lock()
	defer tb.mu.Unlock()
	if !strings.Contains(tb.fatal, "bad.test.") {
		t.Errorf("Fatalf = %q, want a message naming the record", tb.fatal)
	}
}

func TestServerClose(t *testing.T) {
	s := dnstest.NewServer(t)
	s.Close()
	s.Close() // idempotent
	_, err := exchange(t, s.Addr(), ask{name: "a.test.", qtype: dns.TypeA, net: "tcp"})
	if err == nil {
		t.Error("exchange after Close succeeded")
	}
}

func TestServerNegativeTTL(t *testing.T) {
	s := dnstest.NewServer(t)
	s.Add("mx.example.test. 300 IN A 192.0.2.1", "alias.example.test. 300 IN CNAME mx.example.test.")
	tests := []struct {
		name      string
		ttl       uint32
		ask       ask
		wantRcode int
		wantNs    []string
	}{
		{name: "no SOA by default", ask: ask{name: "none.example.test.", qtype: dns.TypeA}, wantRcode: dns.RcodeNameError},
		{name: "NXDOMAIN", ttl: 120, ask: ask{name: "none.example.test.", qtype: dns.TypeA}, wantRcode: dns.RcodeNameError,
			wantNs: []string{"example.test. 120 IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 120"}},
		{name: "NODATA after a CNAME", ttl: 60, ask: ask{name: "alias.example.test.", qtype: dns.TypeAAAA}, wantRcode: dns.RcodeSuccess,
			wantNs: []string{"example.test. 60 IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 60"}},
		{name: "an answer has none", ttl: 60, ask: ask{name: "mx.example.test.", qtype: dns.TypeA}, wantRcode: dns.RcodeSuccess},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s.SetNegativeTTL(tc.ttl)
			resp, err := exchange(t, s.Addr(), tc.ask)
			if err != nil {
				t.Fatal(err)
			}
			if got := names(resp.Ns); resp.Rcode != tc.wantRcode || !slices.Equal(got, tc.wantNs) {
				t.Errorf("rcode %s, authority %q; want %s, %q", dns.RcodeToString[resp.Rcode], got, dns.RcodeToString[tc.wantRcode], tc.wantNs)
			}
		})
	}
}
