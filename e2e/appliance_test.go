package e2e

import (
	"bufio"
	"context"
	"crypto/tls"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/miekg/dns"

	"sealgate/certs/certstest"
	"sealgate/e2e/appliance"
	"sealgate/e2e/netns"
	"sealgate/enforcement/resolver/dnstest"
	"sealgate/upstream/upstreamtest"
)

// The appliance test network, inside a network namespace of its own: the
// VM is 10.77.0.2 behind the tap device whose side here is 10.77.0.1,
// where the fake DNS and the fake MX listen. 10.99.0.0/24 is "the
// internet" as the legacy network sees it: routed through the appliance,
// where nothing answers but the interception of port 25.
const (
	applianceTap  = "sgtap0"
	applianceHost = "10.77.0.1"
	applianceVM   = "10.77.0.2"
	internetAddr  = "10.99.0.9"
)

// applianceConf is the appliance.conf the test boots with. The resolver
// is the test's fake DNS instead of the appliance's unbound, which would
// ask the root servers (a test shortcut documented in appliance.conf).
const applianceConf = `HOSTNAME=gw.appliance.test
ADDRESS=10.77.0.2/24
GATEWAY=10.77.0.1
INTERFACE=eth0
ALLOWED_NETWORKS=10.77.0.0/24
TLS_CERT_FILE=/etc/sealgate/tls/cert.pem
TLS_KEY_FILE=/etc/sealgate/tls/key.pem
SEALGATE_DNS_RESOLVER=10.77.0.1:53
SEALGATE_DNS_TIMEOUT=2s
`

// TestAppliance builds the appliance image from Debian packages (the root
// file system is cached under the recipe's hash), boots it under qemu with
// its interface on a tap device of a private network namespace, and
// delivers through it to a fake MX: submitted to the appliance's address
// over STARTTLS with the certificate the configuration names, and
// intercepted on its way to an outside address on port 25.
func TestAppliance(t *testing.T) {
	for _, tool := range []struct{ name, pkg string }{
		{"qemu-system-x86_64", "qemu-system-x86"},
		{"debootstrap", "debootstrap"},
		{"mkfs.ext4", "e2fsprogs"},
		{"ip", "iproute2"},
		{"systemd-sysusers", "systemd"},
	} {
		needTool(t, tool.name, tool.pkg)
	}
	if os.Geteuid() != 0 {
		t.Fatal("the appliance test needs root (debootstrap, network namespaces, tap devices)")
	}
	var buildLog strings.Builder
	recipe := appliance.Recipe{Script: repoFile("deploy", "appliance", "build.sh"), Cache: os.Getenv("APPLIANCE_CACHE"), Log: &buildLog}

	// The root file system: minutes the first time, then cached.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	start := time.Now()
	rootfs, built, err := recipe.Rootfs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("root file system %s (built now: %v) in %v", rootfs, built, time.Since(start).Round(time.Second))

	// The image: a static sealgate (the VM runs it with
	// MemoryDenyWriteExecute), the configuration and the certificate.
	work := t.TempDir()
	bin := filepath.Join(work, "sealgate")
	build := exec.Command("go", "build", "-o", bin, "sealgate/cmd/sealgate")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ca := certstest.NewCA(t, "sealgate appliance test root")
	files := filepath.Join(work, "files")
	certPEM, keyPEM := certstest.KeyPairPEM(t, ca.Leaf("gw.appliance.test"))
	writeFile(t, filepath.Join(files, "etc", "sealgate", "tls", "cert.pem"), certPEM, 0o644)
	writeFile(t, filepath.Join(files, "etc", "sealgate", "tls", "key.pem"), keyPEM, 0o600)
	conf := filepath.Join(work, "appliance.conf")
	writeFile(t, conf, []byte(applianceConf), 0o600)
	start = time.Now()
	img, err := recipe.Image(ctx, rootfs, bin, filepath.Join(work, "out"), conf, files)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("image built in %v", time.Since(start).Round(time.Second))

	ns := applianceNetwork(t)
	mx := applianceMX(t, ns)

	// APPLIANCE_ACCEL=kvm where /dev/kvm works; here it hangs at boot.
	vm, err := appliance.Boot(img, appliance.VMOptions{Netns: ns, Tap: applianceTap, Accel: os.Getenv("APPLIANCE_ACCEL")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		vm.Stop()
		if t.Failed() {
			t.Logf("appliance console:\n%s", lastLines(vm.Console().String(), 150))
		}
	})
	start = time.Now()
	// Under software emulation on a loaded machine a boot can take
	// minutes; the greeting on port 25 is what counts (systemd's status
	// lines on the console are shortened to the terminal's width, and
	// stop once the boot is over).
	bootCtx, bootCancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer bootCancel()
	greeting := waitGreeting(t, bootCtx, ns, net.JoinHostPort(applianceVM, "25"))
	t.Logf("booted and greeting in %v: %s", time.Since(start).Round(time.Second), greeting)
	if !strings.Contains(greeting, "gw.appliance.test") {
		t.Fatalf("greeting %q does not carry the configured host name", greeting)
	}
	console := vm.Console().String()
	for _, want := range []string{"Finished sealgate-applianc", "Started unbound.service", "Finished nftables.service"} {
		if !strings.Contains(console, want) {
			t.Errorf("the console does not show %q", want)
		}
	}

	t.Run("submission over STARTTLS", func(t *testing.T) {
		conn := dialIn(t, ns, net.JoinHostPort(applianceVM, "25"))
		c, err := smtp.NewClientStartTLS(conn, &tls.Config{ServerName: "gw.appliance.test", RootCAs: ca.Pool()})
		if err != nil {
			t.Fatalf("STARTTLS with the configured certificate: %v", err)
		}
		sendOn(t, c, "legacy@appliance.test", "alice@example.test", "Subject: via the appliance\r\n\r\nsubmitted\r\n")
		waitMessages(t, mx, 1)
	})
	t.Run("intercepted port 25", func(t *testing.T) {
		conn := dialIn(t, ns, net.JoinHostPort(internetAddr, "25"))
		c := smtp.NewClient(conn)
		if err := c.Hello("legacy.appliance.test"); err != nil {
			t.Fatal(err)
		}
		sendOn(t, c, "legacy@appliance.test", "bob@example.test", "Subject: intercepted\r\n\r\nintercepted\r\n")
		waitMessages(t, mx, 2)
	})
	for i, m := range mx.Messages() {
		if !strings.Contains(string(m.Data), "gw.appliance.test") {
			t.Errorf("message %d lacks the appliance's Received header:\n%s", i, m.Data)
		}
	}
	if mx.SawCleartextTransaction() {
		t.Fatal("the MX saw a transaction in cleartext")
	}
}

// applianceNetwork makes the namespace with the tap device for the VM and
// the route to "the internet" through it.
func applianceNetwork(t *testing.T) *netns.NS {
	t.Helper()
	ns := netns.New(t, "appliance")
	ns.Run("ip", "tuntap", "add", "dev", applianceTap, "mode", "tap")
	ns.Run("ip", "addr", "add", applianceHost+"/24", "dev", applianceTap)
	ns.Run("ip", "link", "set", applianceTap, "up")
	ns.Run("ip", "route", "add", "10.99.0.0/24", "via", applianceVM)
	return ns
}

// applianceMX starts the fake DNS and the fake MX of example.test on the
// namespace's side of the tap device.
func applianceMX(t *testing.T, ns *netns.NS) *upstreamtest.MX {
	t.Helper()
	zone := dnstest.NewServer(t)
	zone.Add("example.test. 300 IN MX 10 mx.example.test.", "mx.example.test. 300 IN A "+applianceHost)
	leaf := certstest.NewCA(t, "sealgate appliance MX root").Leaf("mx.example.test")
	var mx *upstreamtest.MX
	err := ns.Do(func() error {
		pc, err := net.ListenPacket("udp", net.JoinHostPort(applianceHost, "53"))
		if err != nil {
			return err
		}
		l, err := net.Listen("tcp", net.JoinHostPort(applianceHost, "53"))
		if err != nil {
			return err
		}
		for _, srv := range []*dns.Server{{PacketConn: pc, Handler: zone}, {Listener: l, Handler: zone}} {
			go srv.ActivateAndServe()
			t.Cleanup(func() { srv.Shutdown() })
		}
		mx = upstreamtest.NewMX(t, upstreamtest.MXOptions{Addr: net.JoinHostPort(applianceHost, "25"), Hostname: "mx.example.test", Certificate: &leaf})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return mx
}

// dialIn connects from inside the namespace.
func dialIn(t *testing.T, ns *netns.NS, addr string) net.Conn {
	t.Helper()
	var c net.Conn
	err := ns.Do(func() error {
		var err error
		c, err = net.DialTimeout("tcp", addr, 10*time.Second)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	t.Cleanup(func() { c.Close() })
	return c
}

// waitGreeting dials addr until a 220 greeting comes, and returns it.
func waitGreeting(t *testing.T, ctx context.Context, ns *netns.NS, addr string) string {
	t.Helper()
	var last error
	for ctx.Err() == nil {
		var line string
		last = ns.Do(func() error {
			c, err := net.DialTimeout("tcp", addr, 3*time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			line, err = bufio.NewReader(c).ReadString('\n')
			return err
		})
		if last == nil && strings.HasPrefix(line, "220") {
			return strings.TrimSpace(line)
		}
		time.Sleep(time.Second)
	}
	t.Fatalf("no greeting from %s: %v", addr, last)
	return ""
}

// sendOn runs one transaction on an SMTP client that said hello.
func sendOn(t *testing.T, c *smtp.Client, from, to, body string) {
	t.Helper()
	if err := c.Mail(from, nil); err != nil {
		t.Fatalf("MAIL: %v", err)
	}
	if err := c.Rcpt(to, nil); err != nil {
		t.Fatalf("RCPT: %v", err)
	}
	w, err := c.Data()
	if err != nil {
		t.Fatalf("DATA: %v", err)
	}
	if _, err := w.Write([]byte(body)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("end of DATA: %v", err)
	}
	c.Quit()
}

func waitMessages(t *testing.T, mx *upstreamtest.MX, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(mx.Messages()) < n {
		if time.Now().After(deadline) {
			t.Fatalf("the MX has %d messages, want %d", len(mx.Messages()), n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func writeFile(t *testing.T, path string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, mode); err != nil {
		t.Fatal(err)
	}
}

func lastLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
