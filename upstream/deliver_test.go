package upstream

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"sealgate/certs/certstest"
	"sealgate/enforcement"
	"sealgate/upstream/upstreamtest"
)

func route(domain string, hosts ...enforcement.Host) *enforcement.Route {
	return &enforcement.Route{Domain: domain, Hosts: hosts}
}

func hostAt(t *testing.T, name, addr string, req enforcement.Requirement) enforcement.Host {
	t.Helper()
	ap := netip.MustParseAddrPort(addr)
	if req.Level == 0 {
		req.Level = enforcement.LevelEncrypt
		req.Source = enforcement.SourceFloor
	}
	return enforcement.Host{Name: name, Addrs: []netip.Addr{ap.Addr()}, Port: int(ap.Port()), Req: req}
}

func deliverer(roots *certstest.CA) *Deliverer {
	v := &enforcement.Verifier{}
	if roots != nil {
		v.Roots = roots.Pool()
	}
	return &Deliverer{
		Hostname:       "gw.example.test",
		Verifier:       v,
		CommandTimeout: 5 * time.Second,
		DataTimeout:    5 * time.Second,
		Log:            slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
}

func TestOpenDeliversOverTLS(t *testing.T) {
	ca := certstest.NewCA(t, "root")
	cert := ca.Leaf("mx.example.test")
	mx := upstreamtest.NewMX(t, upstreamtest.MXOptions{Hostname: "mx.example.test", Certificate: &cert})
	d := deliverer(ca)
	req := enforcement.Requirement{Source: enforcement.SourceFloor, Level: enforcement.LevelVerify, Names: []string{"mx.example.test"}}
	c, err := d.Open(context.Background(), route("example.test", hostAt(t, "mx.example.test", mx.Addr(), req)))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Verdict.Authenticated || c.TLS.Version != tls.VersionTLS13 {
		t.Errorf("verdict %+v, version %x", c.Verdict, c.TLS.Version)
	}
	if err := c.Mail("a@example.test", nil); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("b@example.test", nil); err != nil {
		t.Fatal(err)
	}
	final, err := c.Data([]byte("Received: x\r\n"), strings.NewReader("Subject: s\r\n\r\n.dot\r\n"))
	if err != nil || final.Code != 250 {
		t.Fatalf("final %v, err %v", final, err)
	}
	c.Close()
	msgs := mx.Messages()
	if len(msgs) != 1 || string(msgs[0].Data) != "Received: x\r\nSubject: s\r\n\r\n.dot\r\n" {
		t.Fatalf("messages %+v", msgs)
	}
	// The only commands before TLS are EHLO and STARTTLS.
	cmds := mx.Conns()[0].Commands
	if len(cmds) < 2 || cmds[0] != "EHLO gw.example.test" || cmds[1] != "STARTTLS" {
		t.Errorf("commands %q", cmds)
	}
}

// rawServer accepts one connection and runs script on it.
func rawServer(t *testing.T, script func(c net.Conn, br *bufio.Reader)) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		script(c, bufio.NewReader(c))
	}()
	return l.Addr().String()
}

func TestSTARTTLSInjectionRefused(t *testing.T) {
	got := make(chan string, 1)
	addr := rawServer(t, func(c net.Conn, br *bufio.Reader) {
		fmt.Fprint(c, "220 mx ESMTP\r\n")
		br.ReadString('\n')
		fmt.Fprint(c, "250-mx\r\n250 STARTTLS\r\n")
		br.ReadString('\n')
		// The 220 and a forged reply in one segment.
		fmt.Fprint(c, "220 go ahead\r\n250 injected\r\n")
		rest, _ := io.ReadAll(br)
		got <- string(rest)
	})
	_, err := deliverer(nil).Open(context.Background(), route("example.test", hostAt(t, "mx.example.test", addr, enforcement.Requirement{})))
	f, ok := enforcement.AsFailure(err)
	if !ok || f.Kind != enforcement.KindUnreachable || !strings.Contains(f.Reason, "before the TLS handshake") {
		t.Fatalf("err = %v", err)
	}
	if rest := <-got; strings.Contains(rest, "MAIL") {
		t.Fatalf("sent %q after an injection", rest)
	}
}

func TestOpenFailureKinds(t *testing.T) {
	ca := certstest.NewCA(t, "root")
	cert := ca.Leaf("mx.example.test")
	tests := []struct {
		name string
		opts upstreamtest.MXOptions
		req  enforcement.Requirement
		want enforcement.Kind
	}{
		{name: "no STARTTLS", opts: upstreamtest.MXOptions{}, want: enforcement.KindNoSTARTTLS},
		{name: "STARTTLS 454", opts: upstreamtest.MXOptions{Certificate: &cert, STARTTLSReply: &smtp.SMTPError{Code: 454, EnhancedCode: smtp.EnhancedCode{4, 7, 0}, Message: "no"}}, want: enforcement.KindNoSTARTTLS},
		{name: "EHLO refused", opts: upstreamtest.MXOptions{Certificate: &cert, EHLOReply: &smtp.SMTPError{Code: 502, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "no"}}, want: enforcement.KindNoSTARTTLS},
		{name: "greeting 554", opts: upstreamtest.MXOptions{Certificate: &cert, GreetingReply: &smtp.SMTPError{Code: 554, EnhancedCode: smtp.EnhancedCode{5, 3, 2}, Message: "go away"}}, want: enforcement.KindUnreachable},
		{name: "wrong name", opts: upstreamtest.MXOptions{Certificate: &cert}, req: enforcement.Requirement{Source: enforcement.SourceFloor, Level: enforcement.LevelVerify, Names: []string{"other.example.test"}}, want: enforcement.KindTLS},
		{name: "TLS 1.2 server under a 1.3 minimum", opts: upstreamtest.MXOptions{Certificate: &cert, MaxVersion: tls.VersionTLS12}, req: enforcement.Requirement{Source: enforcement.SourceFloor, Level: enforcement.LevelEncrypt, MinVersion: tls.VersionTLS13}, want: enforcement.KindTLS},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Hostname = "mx.example.test"
			mx := upstreamtest.NewMX(t, tc.opts)
			_, err := deliverer(ca).Open(context.Background(), route("example.test", hostAt(t, "mx.example.test", mx.Addr(), tc.req)))
			f, ok := enforcement.AsFailure(err)
			if !ok || f.Kind != tc.want {
				t.Fatalf("err = %v, want kind %v", err, tc.want)
			}
			if !strings.HasPrefix(f.Error(), "example.test: ") || !strings.Contains(f.Error(), "mx.example.test") {
				t.Errorf("failure text %q does not name domain and host", f.Error())
			}
			if mx.SawMailFrom() {
				t.Fatal("MX saw MAIL FROM")
			}
		})
	}
}

func TestOpenReportsTheWorstFailure(t *testing.T) {
	self := certstest.SelfSigned(t, "mx2.example.test")
	plain := upstreamtest.NewMX(t, upstreamtest.MXOptions{Hostname: "mx1.example.test"})
	bad := upstreamtest.NewMX(t, upstreamtest.MXOptions{Hostname: "mx2.example.test", Certificate: &self})
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := dead.Addr().String()
	dead.Close()
	verify := enforcement.Requirement{Source: enforcement.SourceFloor, Level: enforcement.LevelVerify, Names: []string{"mx2.example.test"}}
	_, err := deliverer(nil).Open(context.Background(), route("example.test",
		hostAt(t, "mx0.example.test", deadAddr, enforcement.Requirement{}),
		hostAt(t, "mx1.example.test", plain.Addr(), enforcement.Requirement{}),
		hostAt(t, "mx2.example.test", bad.Addr(), verify)))
	f, ok := enforcement.AsFailure(err)
	if !ok || f.Kind != enforcement.KindTLS || f.Host != "mx2.example.test" {
		t.Fatalf("err = %v, want the TLS failure of mx2", err)
	}
	if plain.Connections() != 1 || bad.Connections() != 1 {
		t.Error("not every host was tried once")
	}
}

func TestLostInData(t *testing.T) {
	self := certstest.SelfSigned(t, "mx.example.test")
	mx := upstreamtest.NewMX(t, upstreamtest.MXOptions{Hostname: "mx.example.test", Certificate: &self, DropInData: 1000})
	c, err := deliverer(nil).Open(context.Background(), route("example.test", hostAt(t, "mx.example.test", mx.Addr(), enforcement.Requirement{})))
	if err != nil {
		t.Fatal(err)
	}
	c.Mail("a@example.test", nil)
	c.Rcpt("b@example.test", nil)
	final, err := c.Data(nil, strings.NewReader(strings.Repeat("line of text\r\n", 10000)))
	f, ok := enforcement.AsFailure(err)
	if final != nil || !ok || f.Kind != enforcement.KindLost {
		t.Fatalf("final %v, err %v: want a lost connection", final, err)
	}
	c.Close()
}

func TestParseEnhanced(t *testing.T) {
	for in, want := range map[string]string{
		"2.0.0 Ok: queued as X": "2.0.0|Ok: queued as X",
		"Ok":                    "NoEnhancedCode|Ok",
		"2.6.0x nope":           "NoEnhancedCode|2.6.0x nope",
		"9.9.9 bad class":       "NoEnhancedCode|9.9.9 bad class",
	} {
		code, text := parseEnhanced(in)
		got := "NoEnhancedCode"
		if code != smtp.NoEnhancedCode {
			got = strconv.Itoa(code[0]) + "." + strconv.Itoa(code[1]) + "." + strconv.Itoa(code[2])
		}
		if got+"|"+text != want {
			t.Errorf("parseEnhanced(%q) = %s|%s, want %s", in, got, text, want)
		}
	}
}
