package e2e

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"sealgate/certs/certstest"
	"sealgate/e2e/netns"
	"sealgate/enforcement/resolver/dnstest"
	"sealgate/upstream/upstreamtest"
)

// hostNet is the legacy mail server's own host running sealgate with
// deploy/nftables/host.nft, joined by a veth pair to an "internet" with
// fake MX hosts on port 25:
//
//	host 10.0.3.1, fd00:3::1 (the legacy client; sealgate on 127.0.0.1:2525, [::1]:2525)  --  10.0.3.2, fd00:3::2 internet
type hostNet struct {
	host, inet *netns.NS
	dns        *dnstest.Server
	mx4, mx6   *upstreamtest.MX
	gateway    *gateway
}

// hostOptions says how the host runs sealgate.
type hostOptions struct {
	// ruleset is host.nft as loaded, its variables already set.
	ruleset string
	// env is added to sealgate's environment.
	env map[string]string
	// uid runs sealgate as this user and group instead of root (0).
	uid int
	// users are /etc/passwd lines added for nft while it loads the
	// ruleset (user names in it are looked up then).
	users string
}

// The MX hosts of the host's internet.
const (
	hostMX4 = "10.0.3.2:25"
	hostMX6 = "[fd00:3::2]:25"
)

func newHostNet(t *testing.T, opts hostOptions) *hostNet {
	t.Helper()
	n := &hostNet{host: netns.New(t, "host"), inet: netns.New(t, "inet")}
	netns.Link(t, n.host, "hx0", []string{"10.0.3.1/24", "fd00:3::1/64"}, n.inet, "xh0", []string{"10.0.3.2/24", "fd00:3::2/64"})
	load := n.host.Command("nft", "-f", "-")
	if opts.users != "" {
		load = withUsers(t, opts.users, load)
	}
	load.Stdin = strings.NewReader(opts.ruleset)
	if out, err := load.CombinedOutput(); err != nil {
		t.Fatalf("loading host.nft: %v: %s (needs nftables)", err, out)
	}

	if err := n.host.Do(func() error { n.dns = dnstest.NewServer(t); return nil }); err != nil {
		t.Fatal(err)
	}
	n.dns.Add(
		"example.test. 300 IN MX 10 mx4.example.test.", "mx4.example.test. 300 IN A 10.0.3.2",
		"example6.test. 300 IN MX 10 mx6.example6.test.", "mx6.example6.test. 300 IN AAAA fd00:3::2",
	)
	ca := certstest.NewCA(t, "sealgate test root")
	c4, c6 := ca.Leaf("mx4.example.test"), ca.Leaf("mx6.example6.test")
	if err := n.inet.Do(func() error {
		n.mx4 = upstreamtest.NewMX(t, upstreamtest.MXOptions{Addr: hostMX4, Hostname: "mx4.example.test", Certificate: &c4})
		n.mx6 = upstreamtest.NewMX(t, upstreamtest.MXOptions{Addr: hostMX6, Hostname: "mx6.example6.test", Certificate: &c6})
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	env := map[string]string{
		// host.nft redirects to loopback at SEALGATE_PORT.
		"SEALGATE_LISTEN":   "127.0.0.1:2525,[::1]:2525",
		"SEALGATE_HOSTNAME": "gw.sealgate.test",
		// A redirected connection keeps the host's own source address.
		"SEALGATE_ALLOWED_NETWORKS": "127.0.0.0/8,::1/128,10.0.3.1/32,fd00:3::1/128",
		"SEALGATE_DNS_RESOLVER":     n.dns.Addr(),
		"SEALGATE_DNS_TIMEOUT":      "2s",
		"SEALGATE_STATE_DIR":        stateDirFor(t, opts.uid),
		"SEALGATE_ADMIN_LISTEN":     "127.0.0.1:9025",
	}
	for k, v := range opts.env {
		env[k] = v
	}
	cmd := n.host.Command(binPath, "serve")
	if opts.uid != 0 {
		id := fmt.Sprint(opts.uid)
		cmd = n.host.Command("setpriv", "--reuid", id, "--regid", id, "--clear-groups", "--", binaryFor(t, opts.uid), "serve")
	}
	n.gateway = startGatewayCmd(t, cmd, env)
	return n
}

// hostDest is a destination of the legacy server on the host.
type hostDest struct {
	name   string
	target string // where the legacy server connects
	rcpt   string
	mx     *upstreamtest.MX
}

// destinations are an IPv4 and an IPv6 MX host.
func (n *hostNet) destinations() []hostDest {
	return []hostDest{
		{name: "IPv4", target: hostMX4, rcpt: "user@example.test", mx: n.mx4},
		{name: "IPv6", target: hostMX6, rcpt: "user@example6.test", mx: n.mx6},
	}
}

// hostRuleset is deploy/nftables/host.nft with its variables set.
func hostRuleset(t *testing.T, values map[string]string) string {
	t.Helper()
	return nftDefine(t, readRuleset(t, "host.nft"), values)
}

// byUser turns host.nft into its exemption by user: the meta skuid rules
// uncommented, the mark rules gone (in both chains, as the README's sed).
func byUser(t *testing.T, ruleset string) string {
	t.Helper()
	const mark, user = "\tmeta mark $SEALGATE_MARK return\n", "\t#meta skuid $SEALGATE_UID return\n"
	if !strings.Contains(ruleset, mark) || !strings.Contains(ruleset, user) {
		t.Fatalf("host.nft has no mark rule %q or no commented user rule %q", mark, user)
	}
	ruleset = strings.ReplaceAll(ruleset, mark, "")
	return strings.ReplaceAll(ruleset, user, "\tmeta skuid $SEALGATE_UID return\n")
}

// withUsers runs cmd in a mount namespace of its own where /etc/passwd
// also holds users.
func withUsers(t *testing.T, users string, cmd *exec.Cmd) *exec.Cmd {
	t.Helper()
	passwd, err := os.ReadFile("/etc/passwd")
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "passwd")
	if err := os.WriteFile(f, append(passwd, users...), 0o644); err != nil {
		t.Fatal(err)
	}
	return exec.Command("unshare", append([]string{"--mount", "--propagation", "private", "--", "sh", "-c",
		`mount --bind "$0" /etc/passwd && exec "$@"`, f}, cmd.Args...)...)
}

// stateDirFor is a state directory that uid owns.
func stateDirFor(t *testing.T, uid int) string {
	t.Helper()
	if uid == 0 {
		return t.TempDir()
	}
	dir := filepath.Join(openDir(t), "state")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, uid, uid); err != nil {
		t.Fatal(err)
	}
	return dir
}

// openDir is a directory that every user may enter (t.TempDir's parent
// is root's alone), removed at the end of the test.
func openDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "sealgate-uid")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// binaryFor copies the binary where uid can run it: TestMain's build
// directory is root's alone.
func binaryFor(t *testing.T, uid int) string {
	t.Helper()
	src, err := os.Open(binPath)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	path := filepath.Join(openDir(t), "sealgate")
	dst, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("setpriv", "--reuid", fmt.Sprint(uid), "--regid", fmt.Sprint(uid), "--clear-groups", "--", path, "version").CombinedOutput(); err != nil {
		t.Fatalf("running sealgate as uid %d with setpriv (util-linux): %v: %s", uid, err, out)
	}
	return path
}

// logHas reports whether one line of the gateway's log holds every one
// of subs, waiting a few seconds for it (see waitLog).
func (g *gateway) logHas(subs ...string) bool {
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, line := range strings.Split(g.logs.String(), "\n") {
			all := true
			for _, s := range subs {
				all = all && strings.Contains(line, s)
			}
			if all {
				return true
			}
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// On the legacy server's own host, host.nft sends the legacy server's
// connections to port 25 of another machine to sealgate, and lets
// sealgate's own connections pass: by their mark
// (SEALGATE_UPSTREAM_MARK), or by sealgate's user (meta skuid). The
// message reaches the MX over TLS, the log names the address the legacy
// server meant to reach, and the MX sees no cleartext transaction.
func TestInterceptionOnHost(t *testing.T) {
	tests := []struct {
		name string
		opts func(t *testing.T) hostOptions
	}{
		{name: "exempt by mark", opts: func(t *testing.T) hostOptions {
			return hostOptions{
				ruleset: hostRuleset(t, map[string]string{"SEALGATE_PORT": "2525", "SEALGATE_MARK": "0x25"}),
				env:     map[string]string{"SEALGATE_UPSTREAM_MARK": "0x25"},
			}
		}},
		{name: "exempt by user", opts: func(t *testing.T) hostOptions {
			return hostOptions{
				ruleset: byUser(t, hostRuleset(t, map[string]string{"SEALGATE_PORT": "2525", "SEALGATE_UID": `"nobody"`})),
				uid:     65534, // nobody: the listener is above 1024, no capability needed
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			n := newHostNet(t, tc.opts(t))
			for _, d := range n.destinations() {
				t.Run(d.name, func(t *testing.T) {
					greeting, err := sendFrom(t, n.host, d.target, d.rcpt, "host "+tc.name+" "+d.name)
					if err != nil {
						t.Fatalf("legacy delivery to %s: %v (greeting %q)", d.target, err, greeting)
					}
					if !strings.Contains(greeting, "gw.sealgate.test") {
						t.Errorf("greeting %q is not sealgate's: the legacy connection reached the MX", greeting)
					}
					msgs := d.mx.Messages()
					if len(msgs) != 1 || msgs[0].TLS == nil || !strings.Contains(string(msgs[0].Data), "Subject: host "+tc.name+" "+d.name) {
						t.Fatalf("MX got %d messages (%+v), want one over TLS", len(msgs), msgs)
					}
					if d.mx.SawCleartextTransaction() {
						t.Error("the MX saw a cleartext transaction")
					}
					if got := d.mx.Connections(); got != 1 {
						t.Errorf("the MX saw %d connections, want sealgate's one", got)
					}
					if !n.gateway.logHas("original_dst=" + d.target) {
						t.Errorf("no log line with original_dst=%s", d.target)
					}
				})
			}
			m := metricsIn(t, n.host)
			if !strings.Contains(m, `sealgate_intercepted_connections_total{how="redirect"} 2`) {
				t.Errorf("metrics do not count two redirected connections:\n%s", grepLines(m, "intercepted"))
			}
			if strings.Contains(m, `reason="loop"`) {
				t.Errorf("sealgate's own connection came back to it:\n%s", grepLines(m, "refused"))
			}
		})
	}
}

// With no exemption (SEALGATE_UPSTREAM_MARK unset under host.nft's mark
// rule), sealgate's own connection to the MX is redirected back to it:
// it refuses that connection with 421 and the mail-loop text, and the
// legacy server gets 451 4.4.1 and keeps the message. Nothing reaches the
// MX, and nothing loops.
func TestHostInterceptionLoopRefused(t *testing.T) {
	n := newHostNet(t, hostOptions{ruleset: hostRuleset(t, map[string]string{"SEALGATE_PORT": "2525", "SEALGATE_MARK": "0x25"})})
	for i, d := range n.destinations() {
		t.Run(d.name, func(t *testing.T) {
			greeting, err := sendFrom(t, n.host, d.target, d.rcpt, "loop "+d.name)
			if !strings.Contains(greeting, "gw.sealgate.test") {
				t.Fatalf("greeting %q is not sealgate's", greeting)
			}
			var serr *smtp.SMTPError
			if !errors.As(err, &serr) || serr.Code != 451 || serr.EnhancedCode != (smtp.EnhancedCode{4, 4, 1}) {
				t.Fatalf("legacy delivery: %v, want 451 4.4.1", err)
			}
			if !n.gateway.logHas("mail loop: sealgate's own upstream connection was redirected to itself") {
				t.Fatal("the loop is not logged")
			}
			// The refusal reached sealgate's own upstream side as its
			// greeting: the attempt's log line carries the 421.
			if !n.gateway.logHas("421 4.3.0 gw.sealgate.test mail loop: sealgate's own connection was redirected to itself") {
				t.Error("no log line with the 421 mail-loop reply")
			}
			if !n.gateway.logHas("mail loop", "original_dst="+d.target) {
				t.Errorf("the loop's log line has no original_dst=%s", d.target)
			}
			if got := d.mx.Connections(); got != 0 {
				t.Errorf("the MX saw %d connections", got)
			}
			if d.mx.SawCleartextTransaction() || len(d.mx.Messages()) != 0 {
				t.Error("the MX saw a transaction")
			}
			m := metricsIn(t, n.host)
			want := fmt.Sprintf(`sealgate_connections_refused_total{reason="loop"} %d`, i+1)
			if !strings.Contains(m, want) {
				t.Errorf("metrics: want %s (one refusal per attempt, no loop):\n%s", want, grepLines(m, "refused"))
			}
		})
	}
}

// host.nft's exemption by user exempts the user the systemd unit runs
// sealgate as (sealgate), not root: a legacy server that delivers as
// root (sendmail does) stays intercepted when the rule is uncommented
// with its default.
func TestHostRulesetByUserDefault(t *testing.T) {
	n := newHostNet(t, hostOptions{
		ruleset: byUser(t, hostRuleset(t, map[string]string{"SEALGATE_PORT": "2525"})),
		uid:     65534,
		users:   "sealgate:x:65534:65534:sealgate:/var/lib/sealgate:/usr/sbin/nologin\n",
	})
	greeting, err := sendFrom(t, n.host, hostMX4, "user@example.test", "as root")
	if !strings.Contains(greeting, "gw.sealgate.test") {
		t.Fatalf("greeting %q is not sealgate's: a connection made as root was exempt", greeting)
	}
	if err != nil {
		t.Fatalf("legacy delivery: %v", err)
	}
	msgs := n.mx4.Messages()
	if len(msgs) != 1 || msgs[0].TLS == nil || n.mx4.SawCleartextTransaction() {
		t.Fatalf("MX got %d messages (%+v), want one over TLS", len(msgs), msgs)
	}
}
