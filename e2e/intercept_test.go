package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"sealgate/certs/certstest"
	"sealgate/e2e/netns"
	"sealgate/enforcement/resolver/dnstest"
	"sealgate/upstream/upstreamtest"
)

// nftDefine rewrites the "define NAME = value" lines of a ruleset, as the
// appliance and operators do.
func nftDefine(t *testing.T, ruleset string, values map[string]string) string {
	t.Helper()
	for name, v := range values {
		re := regexp.MustCompile(`(?m)^define ` + name + ` = .*$`)
		if !re.MatchString(ruleset) {
			t.Fatalf("ruleset has no define %s", name)
		}
		ruleset = re.ReplaceAllLiteralString(ruleset, "define "+name+" = "+v)
	}
	return ruleset
}

func readRuleset(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "deploy", "nftables", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// nftCheck runs "nft -c -f -" on ruleset in a private network namespace.
func nftCheck(ruleset string) error {
	cmd := exec.Command("unshare", "--net", "nft", "-c", "-f", "-")
	cmd.Stdin = strings.NewReader(ruleset)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%v: %s (needs root, util-linux and nftables)", err, out)
	}
	return nil
}

func TestNftablesRulesetsParse(t *testing.T) {
	router, host := readRuleset(t, "router.nft"), readRuleset(t, "host.nft")
	tests := []struct {
		name    string
		ruleset string
		wantErr bool
	}{
		{name: "router.nft", ruleset: router},
		{name: "router.nft forwarding nothing else", ruleset: nftDefine(t, router, map[string]string{"FORWARD_POLICY": `"drop"`})},
		{name: "router.nft with tproxy", ruleset: strings.ReplaceAll(router, "#tproxy#", "")},
		{name: "router.nft with other networks", ruleset: nftDefine(t, router, map[string]string{
			"LEGACY_NETS_V4": "{ 192.168.1.0/24, 10.0.1.0/24 }", "LEGACY_NETS_V6": "{ fd00:1::/64 }", "SEALGATE_PORT": "10025"})},
		{name: "host.nft", ruleset: host},
		{name: "host.nft by user", ruleset: strings.Replace(nftDefine(t, host, map[string]string{"SEALGATE_UID": "65534"}), "\t#meta skuid", "\tmeta skuid", -1)},
		{name: "a bad policy is refused", ruleset: nftDefine(t, router, map[string]string{"FORWARD_POLICY": `"maybe"`}), wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := nftCheck(tc.ruleset)
			if tc.wantErr != (err != nil) {
				t.Fatalf("nft -c: %v, want error %v", err, tc.wantErr)
			}
		})
	}
}

// interceptNet is a legacy network behind a router running sealgate
// with deploy/nftables/router.nft, and an "internet" with fake MX hosts:
//
//	legacy 10.0.1.2, fd00:1::2  --  10.0.1.1, fd00:1::1 gateway 10.0.2.1, fd00:2::1  --  10.0.2.2, fd00:2::2 internet
type interceptNet struct {
	legacy, gw, inet *netns.NS
	dns              *dnstest.Server
	mx4, mx6         *upstreamtest.MX
	gateway          *gateway
}

func newInterceptNet(t *testing.T) *interceptNet { return newInterceptNetHow(t, false) }

// newInterceptNetHow is newInterceptNet with, when tproxy is set, the
// router.nft's tproxy alternative in place of its redirect rules: the
// policy routing its comment gives, and sealgate on
// SEALGATE_TPROXY_LISTEN.
func newInterceptNetHow(t *testing.T, tproxy bool) *interceptNet {
	t.Helper()
	n := &interceptNet{legacy: netns.New(t, "legacy"), gw: netns.New(t, "gw"), inet: netns.New(t, "inet")}
	netns.Link(t, n.legacy, "lg0", []string{"10.0.1.2/24", "fd00:1::2/64"}, n.gw, "gl0", []string{"10.0.1.1/24", "fd00:1::1/64"})
	netns.Link(t, n.gw, "gi0", []string{"10.0.2.1/24", "fd00:2::1/64"}, n.inet, "ig0", []string{"10.0.2.2/24", "fd00:2::2/64"})
	n.legacy.Run("ip", "route", "add", "default", "via", "10.0.1.1")
	n.legacy.Run("ip", "-6", "route", "add", "default", "via", "fd00:1::1")
	n.inet.Run("ip", "route", "add", "default", "via", "10.0.2.1")
	n.inet.Run("ip", "-6", "route", "add", "default", "via", "fd00:2::1")
	n.gw.Run("sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1")

	ruleset := readRuleset(t, "router.nft")
	if tproxy {
		var lines []string
		for _, l := range strings.Split(ruleset, "\n") {
			if strings.Contains(l, "redirect to :$SEALGATE_PORT") {
				continue
			}
			lines = append(lines, strings.TrimPrefix(l, "#tproxy#"))
		}
		ruleset = strings.Join(lines, "\n")
		if strings.Contains(ruleset, "dport 25 redirect") {
			t.Fatal("router.nft: the redirect rules were not removed")
		}
		if !strings.Contains(ruleset, "tproxy ip to :$TPROXY_PORT") {
			t.Fatal("router.nft has no tproxy rule to uncomment")
		}
		n.gw.Run("ip", "rule", "add", "fwmark", "0x2526", "lookup", "2526")
		n.gw.Run("ip", "route", "add", "local", "0.0.0.0/0", "dev", "lo", "table", "2526")
		n.gw.Run("ip", "-6", "rule", "add", "fwmark", "0x2526", "lookup", "2526")
		n.gw.Run("ip", "-6", "route", "add", "local", "::/0", "dev", "lo", "table", "2526")
	}
	rules := nftDefine(t, ruleset, map[string]string{
		"LEGACY_NETS_V4": "{ 10.0.1.0/24 }", "LEGACY_NETS_V6": "{ fd00:1::/64 }", "SEALGATE_PORT": "2525"})
	load := n.gw.Command("nft", "-f", "-")
	load.Stdin = strings.NewReader(rules)
	if out, err := load.CombinedOutput(); err != nil {
		t.Fatalf("loading router.nft: %v: %s", err, out)
	}

	ca := certstest.NewCA(t, "sealgate test root")
	if err := n.gw.Do(func() error { n.dns = dnstest.NewServer(t); return nil }); err != nil {
		t.Fatal(err)
	}
	n.dns.Add(
		"example.test. 300 IN MX 10 mx4.example.test.", "mx4.example.test. 300 IN A 10.0.2.2",
		"example6.test. 300 IN MX 10 mx6.example6.test.", "mx6.example6.test. 300 IN AAAA fd00:2::2",
	)
	c4, c6 := ca.Leaf("mx4.example.test"), ca.Leaf("mx6.example6.test")
	if err := n.inet.Do(func() error {
		n.mx4 = upstreamtest.NewMX(t, upstreamtest.MXOptions{Addr: "10.0.2.2:25", Hostname: "mx4.example.test", Certificate: &c4})
		n.mx6 = upstreamtest.NewMX(t, upstreamtest.MXOptions{Addr: "[fd00:2::2]:25", Hostname: "mx6.example6.test", Certificate: &c6})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"SEALGATE_LISTEN":           ":2525",
		"SEALGATE_HOSTNAME":         "gw.sealgate.test",
		"SEALGATE_ALLOWED_NETWORKS": "10.0.1.0/24,fd00:1::/64",
		"SEALGATE_DNS_RESOLVER":     n.dns.Addr(),
		"SEALGATE_DNS_TIMEOUT":      "2s",
		"SEALGATE_STATE_DIR":        t.TempDir(),
		"SEALGATE_ADMIN_LISTEN":     "127.0.0.1:9025",
	}
	if tproxy {
		env["SEALGATE_TPROXY_LISTEN"] = "[::]:2526"
	}
	n.gateway = startGatewayCmd(t, n.gw.Command(binPath, "serve"), env)
	return n
}

// sendFromLegacy connects from the legacy network to addr, as a legacy
// server delivering straight to an MX would, and sends one message.
func (n *interceptNet) sendFromLegacy(t *testing.T, addr, rcpt, subject string) (greeting string, err error) {
	t.Helper()
	return sendFrom(t, n.legacy, addr, rcpt, subject)
}

// sendFrom connects from inside ns to addr and sends one message.
func sendFrom(t *testing.T, ns *netns.NS, addr, rcpt, subject string) (greeting string, err error) {
	t.Helper()
	var conn net.Conn
	if err := ns.Do(func() error {
		var derr error
		conn, derr = net.DialTimeout("tcp", addr, 5*time.Second)
		return derr
	}); err != nil {
		t.Fatalf("connect from the legacy network to %s: %v", addr, err)
	}
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(conn)
	greeting, rerr := br.ReadString('\n')
	if rerr != nil {
		conn.Close()
		return "", rerr
	}
	c := smtp.NewClient(&replayConn{Conn: conn, r: io.MultiReader(strings.NewReader(greeting), br)})
	defer c.Close()
	if err := c.Hello("legacy.example.test"); err != nil {
		return greeting, err
	}
	if err := c.Mail("sender@legacy.example.test", nil); err != nil {
		return greeting, err
	}
	if err := c.Rcpt(rcpt, nil); err != nil {
		return greeting, err
	}
	w, err := c.Data()
	if err != nil {
		return greeting, err
	}
	fmt.Fprintf(w, "Subject: %s\r\n\r\nintercepted\r\n", subject)
	if err := w.Close(); err != nil {
		return greeting, err
	}
	return greeting, c.Quit()
}

// replayConn reads through r (the greeting already read, then the rest).
type replayConn struct {
	net.Conn
	r io.Reader
}

func (c *replayConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// metrics reads the gateway's /metrics inside its namespace.
func (n *interceptNet) metrics(t *testing.T) string {
	t.Helper()
	return metricsIn(t, n.gw)
}

// metricsIn reads /metrics of a gateway whose admin listener is
// 127.0.0.1:9025 inside ns.
func metricsIn(t *testing.T, ns *netns.NS) string {
	t.Helper()
	var conn net.Conn
	if err := ns.Do(func() error {
		var err error
		conn, err = net.DialTimeout("tcp", "127.0.0.1:9025", 5*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprint(conn, "GET /metrics HTTP/1.0\r\nHost: gw\r\n\r\n")
	b, err := io.ReadAll(conn)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A legacy server that sends straight to an MX's port 25 reaches
// sealgate through the router's rule; the message arrives over TLS, the
// log names the address it meant to reach, and no cleartext transaction
// ever reaches the MX.
func TestInterceptionOnRouter(t *testing.T) {
	for _, how := range []string{"redirect", "tproxy"} {
		t.Run(how, func(t *testing.T) { testInterceptionOnRouter(t, how) })
	}
}

// testInterceptionOnRouter runs TestInterceptionOnRouter with router.nft's
// redirect rules, or with its tproxy alternative ("tproxy": the
// connection keeps its destination address, which sealgate's
// transparent socket takes as its own).
func testInterceptionOnRouter(t *testing.T, how string) {
	n := newInterceptNetHow(t, how == "tproxy")
	tests := []struct {
		name   string
		target string // where the legacy server connects
		rcpt   string
		mx     *upstreamtest.MX
	}{
		{name: "IPv4", target: "10.0.2.2:25", rcpt: "user@example.test", mx: n.mx4},
		{name: "IPv6", target: "[fd00:2::2]:25", rcpt: "user@example6.test", mx: n.mx6},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			greeting, err := n.sendFromLegacy(t, tc.target, tc.rcpt, "via "+tc.name)
			if err != nil {
				t.Fatalf("legacy delivery to %s: %v (greeting %q)", tc.target, err, greeting)
			}
			if !strings.Contains(greeting, "gw.sealgate.test") {
				t.Errorf("greeting %q is not sealgate's: the connection reached the MX", greeting)
			}
			msgs := tc.mx.Messages()
			if len(msgs) != 1 || msgs[0].TLS == nil || !strings.Contains(string(msgs[0].Data), "Subject: via "+tc.name) {
				t.Fatalf("MX got %d messages (%+v), want one over TLS", len(msgs), msgs)
			}
			if tc.mx.SawCleartextTransaction() {
				t.Error("the MX saw a cleartext transaction")
			}
			want := "original_dst=" + tc.target
			found := false
			for _, line := range strings.Split(n.gateway.logs.String(), "\n") {
				if strings.Contains(line, want) {
					found = true
				}
			}
			if !found {
				t.Errorf("no log line with %s", want)
			}
		})
	}
	m := n.metrics(t)
	if !strings.Contains(m, `sealgate_intercepted_connections_total{how="`+how+`"} 2`) {
		t.Errorf("metrics do not count two %s connections:\n%s", how, grepLines(m, "intercepted"))
	}
}

// Without the redirect (sealgate's rule lost, a typo in the networks),
// the router still never forwards port 25 from the legacy networks.
func TestRouterNeverForwardsCleartextSMTP(t *testing.T) {
	n := newInterceptNet(t)
	n.gw.Run("nft", "flush", "chain", "inet", "sealgate", "prerouting")
	for _, target := range []string{"10.0.2.2:25", "[fd00:2::2]:25"} {
		err := n.legacy.Do(func() error {
			c, err := net.DialTimeout("tcp", target, 2*time.Second)
			if err == nil {
				c.Close()
			}
			return err
		})
		if err == nil {
			t.Errorf("the legacy network reached %s in cleartext", target)
		}
	}
	if got := n.mx4.Connections() + n.mx6.Connections(); got != 0 {
		t.Errorf("the MX hosts saw %d connections", got)
	}
	// The refusals were the forward chain's, not a broken route: the
	// drop rules counted them, and another port gets through.
	if rules := n.gw.Run("nft", "list", "chain", "inet", "sealgate", "forward"); strings.Contains(rules, "dport 25 counter packets 0 ") || !strings.Contains(rules, "dport 25 counter packets") {
		t.Errorf("the forward chain's port-25 drops did not count:\n%s", rules)
	}
	for _, target := range []string{"10.0.2.2:26", "[fd00:2::2]:26"} {
		var l net.Listener
		if err := n.inet.Do(func() error {
			var err error
			l, err = net.Listen("tcp", target)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		err := n.legacy.Do(func() error {
			c, err := net.DialTimeout("tcp", target, 5*time.Second)
			if err == nil {
				c.Close()
			}
			return err
		})
		l.Close()
		if err != nil {
			t.Errorf("port 26 through the router: %v; the test network itself is broken", err)
		}
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
