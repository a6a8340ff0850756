package resolver_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"sealgate/enforcement"
	"sealgate/enforcement/resolver"
	"sealgate/enforcement/resolver/dnstest"
)

func TestQueryFlags(t *testing.T) {
	s := newZone(t, "example.test. IN MX 10 mx.example.test.")
	if _, err := newResolver(s.Addr()).LookupMX(context.Background(), "example.test"); err != nil {
		t.Fatal(err)
	}
	want := []dnstest.Query{{Name: "example.test.", Type: dns.TypeMX, Net: "udp", RD: true, AD: true, DO: true, UDPSize: 1232}}
	if got := s.Queries(); !slices.Equal(got, want) {
		t.Errorf("queries = %+v, want %+v", got, want)
	}
}

func TestTruncatedReplyRetriedOverTCP(t *testing.T) {
	t.Run("forced TC", func(t *testing.T) {
		s := newZone(t, "example.test. IN MX 10 mx.example.test.")
		s.SetSecureZone("example.test.", true)
		s.SetTruncate("example.test.", dns.TypeMX, true)
		got, err := newResolver(s.Addr()).LookupMX(context.Background(), "example.test")
		if err != nil {
			t.Fatal(err)
		}
		if want := (enforcement.MXResult{Hosts: []string{"mx.example.test"}, Secure: true}); !reflect.DeepEqual(got, want) {
			t.Errorf("LookupMX = %+v, want %+v", got, want)
		}
		var nets []string
		for _, q := range s.Queries() {
			nets = append(nets, q.Net)
		}
		if want := []string{"udp", "tcp"}; !slices.Equal(nets, want) {
			t.Errorf("transports = %q, want %q", nets, want)
		}
	})
	t.Run("answer larger than 1232 bytes", func(t *testing.T) {
		s := newZone(t)
		for i := range 30 {
			s.Add(fmt.Sprintf(`big.example.test. IN TXT "%s-%02d"`, strings.Repeat("x", 60), i))
		}
		got, err := newResolver(s.Addr()).LookupTXT(context.Background(), "big.example.test")
		if err != nil {
			t.Fatal(err)
		}
		if len(got.Records) != 30 {
			t.Errorf("got %d records, want 30", len(got.Records))
		}
		if qs := s.Queries(); len(qs) != 2 || qs[1].Net != "tcp" {
			t.Errorf("queries = %+v, want UDP then TCP", qs)
		}
	})
}

// downServer returns the address of a UDP port nobody listens on.
func downServer(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	return addr
}

func TestNextServerOnFailure(t *testing.T) {
	tests := []struct {
		name   string
		break1 func(s *dnstest.Server)
		// firstDown uses a closed port instead of the first fake.
		firstDown bool
	}{
		{name: "first server down", firstDown: true},
		{name: "first server SERVFAIL", break1: func(s *dnstest.Server) { s.SetRcode("example.test.", dns.TypeMX, dns.RcodeServerFailure) }},
		{name: "first server REFUSED", break1: func(s *dnstest.Server) { s.SetRcode("example.test.", dns.TypeANY, dns.RcodeRefused) }},
		{name: "first server silent", break1: func(s *dnstest.Server) { s.SetDrop("example.test.", dns.TypeMX, true) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			first := newZone(t, "example.test. IN MX 10 first.example.test.")
			second := newZone(t, "example.test. IN MX 10 second.example.test.")
			addr1 := first.Addr()
			if tc.firstDown {
				addr1 = downServer(t)
			}
			if tc.break1 != nil {
				tc.break1(first)
			}
			r := newResolver(addr1, second.Addr())
			r.Timeout = 200 * time.Millisecond
			got, err := r.LookupMX(context.Background(), "example.test")
			if err != nil {
				t.Fatal(err)
			}
			if want := []string{"second.example.test"}; !slices.Equal(got.Hosts, want) {
				t.Errorf("Hosts = %q, want %q", got.Hosts, want)
			}
		})
	}
}

func TestNXDOMAINDoesNotTryNextServer(t *testing.T) {
	first := newZone(t, "other.test. IN A 192.0.2.1")
	second := newZone(t, "example.test. IN MX 10 mx.example.test.")
	_, err := newResolver(first.Addr(), second.Addr()).LookupMX(context.Background(), "example.test")
	checkErr(t, err, enforcement.ErrNotFound, "lookup MX example.test: NXDOMAIN")
	if qs := second.Queries(); len(qs) != 0 {
		t.Errorf("second server asked %+v", qs)
	}
}

func TestAllServersFail(t *testing.T) {
	first := newZone(t, "example.test. IN MX 10 mx.example.test.")
	second := newZone(t, "example.test. IN MX 10 mx.example.test.")
	first.SetRcode("example.test.", dns.TypeMX, dns.RcodeServerFailure)
	second.SetRcode("example.test.", dns.TypeMX, dns.RcodeRefused)
	_, err := newResolver(first.Addr(), second.Addr()).LookupMX(context.Background(), "example.test")
	want := fmt.Sprintf("lookup MX example.test: %s: SERVFAIL; %s: REFUSED: temporary DNS failure", first.Addr(), second.Addr())
	checkErr(t, err, enforcement.ErrDNSTemporary, want)
	var le *resolver.LookupError
	if !errors.As(err, &le) || le.Name != "example.test" || le.Type != "MX" {
		t.Errorf("errors.As LookupError: %#v", le)
	}
	if errors.Is(err, enforcement.ErrDNSUnanswered) {
		t.Errorf("servers that answered SERVFAIL and REFUSED: %v is marked unanswered", err)
	}
}

// TestUnanswered: a lookup that got no reply from any server is marked
// ErrDNSUnanswered (TLS-RPT does not report it); one server that replied
// with a failure is enough to leave the mark off.
func TestUnanswered(t *testing.T) {
	silent := newZone(t, "example.test. IN MX 10 mx.example.test.")
	silent.SetDrop("example.test.", dns.TypeMX, true)
	failing := newZone(t, "example.test. IN MX 10 mx.example.test.")
	failing.SetRcode("example.test.", dns.TypeMX, dns.RcodeServerFailure)
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tc := range []struct {
		name string
		r    *resolver.Resolver
		ctx  context.Context
		want bool
	}{
		{name: "timeout", r: newResolver(silent.Addr()), ctx: context.Background(), want: true},
		{name: "timeout, then SERVFAIL", r: newResolver(silent.Addr(), failing.Addr()), ctx: context.Background(), want: false},
		{name: "SERVFAIL", r: newResolver(failing.Addr()), ctx: context.Background(), want: false},
		{name: "no servers", r: &resolver.Resolver{}, ctx: context.Background(), want: true},
		{name: "caller gave up", r: newResolver(failing.Addr()), ctx: cancelled, want: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Long enough for a server that answers to be heard on a
			// loaded machine; a silent one costs that much.
			tc.r.Timeout = time.Second
			_, err := tc.r.LookupMX(tc.ctx, "example.test")
			checkErr(t, err, enforcement.ErrDNSTemporary, "")
			if got := errors.Is(err, enforcement.ErrDNSUnanswered); got != tc.want {
				t.Fatalf("%v: unanswered = %v, want %v", err, got, tc.want)
			}
		})
	}
}

func TestTimeout(t *testing.T) {
	s := newZone(t, "example.test. IN TXT \"x\"")
	s.SetDrop("example.test.", dns.TypeTXT, true)
	r := newResolver(s.Addr())
	r.Timeout = 100 * time.Millisecond
	start := time.Now()
	_, err := r.LookupTXT(context.Background(), "example.test")
	checkErr(t, err, enforcement.ErrDNSTemporary, "lookup TXT example.test: timeout: temporary DNS failure")
	if elapsed := time.Since(start); elapsed > 2*time.Second {
		t.Errorf("took %v with a 100ms timeout", elapsed)
	}
}

func TestContextCancellation(t *testing.T) {
	s := newZone(t, "example.test. IN TXT \"x\"")
	s.SetDrop("example.test.", dns.TypeTXT, true)
	r := newResolver(s.Addr())
	r.Timeout = 10 * time.Second

	t.Run("already cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		s.ResetQueries()
		_, err := r.LookupTXT(ctx, "example.test")
		checkErr(t, err, context.Canceled, "")
		checkErr(t, err, enforcement.ErrDNSTemporary, "")
		if qs := s.Queries(); len(qs) != 0 {
			t.Errorf("queries sent: %+v", qs)
		}
	})
	t.Run("cancelled while waiting", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		time.AfterFunc(50*time.Millisecond, cancel)
		start := time.Now()
		_, err := r.LookupTXT(ctx, "example.test")
		checkErr(t, err, context.Canceled, "")
		if elapsed := time.Since(start); elapsed > 3*time.Second {
			t.Errorf("returned after %v, want soon after cancellation", elapsed)
		}
	})
}

func TestConfigurationErrors(t *testing.T) {
	tests := []struct {
		name     string
		r        *resolver.Resolver
		domain   string
		wantErr  []error
		wantText string
	}{
		{
			name:     "no servers",
			r:        &resolver.Resolver{},
			domain:   "example.test",
			wantErr:  []error{enforcement.ErrDNSTemporary},
			wantText: "lookup MX example.test: no DNS servers configured: temporary DNS failure",
		},
		{
			name:    "empty name",
			r:       newResolver("127.0.0.1:1"),
			domain:  "",
			wantErr: []error{enforcement.ErrNotFound, resolver.ErrInvalidName},
		},
		{
			name:    "empty label",
			r:       newResolver("127.0.0.1:1"),
			domain:  "a..example.test",
			wantErr: []error{enforcement.ErrNotFound, resolver.ErrInvalidName},
		},
		{
			name:    "root",
			r:       newResolver("127.0.0.1:1"),
			domain:  ".",
			wantErr: []error{enforcement.ErrNotFound, resolver.ErrInvalidName},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := tc.r.LookupMX(context.Background(), tc.domain)
			for _, want := range tc.wantErr {
				checkErr(t, err, want, tc.wantText)
			}
		})
	}
}

func TestReplyChecks(t *testing.T) {
	tests := []struct {
		name     string
		reply    func(q *dns.Msg) *dns.Msg
		wantText string
	}{
		{
			name: "question mismatch",
			reply: func(q *dns.Msg) *dns.Msg {
				m := new(dns.Msg)
				m.SetQuestion("other.test.", dns.TypeMX)
				m.Id, m.Response = q.Id, true
				return m
			},
			wantText: "reply does not match the question",
		},
		{
			name:     "no reply",
			reply:    func(*dns.Msg) *dns.Msg { return nil },
			wantText: "udp: no reply",
		},
		{
			name: "unknown rcode",
			reply: func(q *dns.Msg) *dns.Msg {
				m := new(dns.Msg)
				m.SetRcode(q, 12)
				return m
			},
			wantText: "RCODE12",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &resolver.Resolver{
				Servers: []string{"fake"},
				Exchange: func(_ context.Context, _, _ string, m *dns.Msg) (*dns.Msg, error) {
					return tc.reply(m), nil
				},
			}
			_, err := r.LookupMX(context.Background(), "example.test")
			checkErr(t, err, enforcement.ErrDNSTemporary, tc.wantText)
		})
	}
}

func TestServersFromResolvConf(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name    string
		path    string
		want    []string
		wantErr bool
	}{
		{
			name: "IPv4 and IPv6",
			path: write("ok", "search example.test\nnameserver 127.0.0.1\nnameserver ::1\n"),
			want: []string{"127.0.0.1:53", "[::1]:53"},
		},
		{name: "no nameserver", path: write("none", "search example.test\n"), wantErr: true},
		{name: "missing file", path: filepath.Join(dir, "missing"), wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := resolver.ServersFromResolvConf(tc.path)
			if (err != nil) != tc.wantErr {
				t.Fatalf("error = %v, wantErr %v", err, tc.wantErr)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("servers = %q, want %q", got, tc.want)
			}
		})
	}
}
