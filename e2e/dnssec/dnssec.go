// Package dnssec runs a real DNSSEC chain for end-to-end tests: zones signed
// with ldns-signzone (RFC 4033, 4034, 4035; ECDSA P-256 per RFC 6605, NSEC
// denial), served by nsd, validated by unbound as a recursive resolver whose
// only trust anchor is the harness's own signed test. zone (RFC 6761 names,
// so nothing can reach the internet).
//
// Each Zone becomes a child of test.: a signed child gets a DS record there
// and validates as secure (AD set), an unsigned child is provably insecure
// (NSEC proves there is no DS; AD clear), and a broken child has a DS but
// signatures that do not verify, so unbound answers SERVFAIL. That is what
// sealgate's DANE logic (RFC 7672) must tell apart through
// SEALGATE_DNS_RESOLVER.
//
// It needs the Debian packages nsd, unbound and ldnsutils, and root (or the
// rights to bind loopback ports and write its temporary directory). A
// missing tool fails the test with the package to install.
package dnssec

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// Zone is one zone below test. for Start to serve.
type Zone struct {
	// Origin is the zone's name, e.g. "example.test." (the final dot may be
	// left out). It must be below test. and not test. itself.
	Origin string
	// Records are zone-file lines; relative names are relative to Origin and
	// the default TTL is 300. An apex SOA and NS (ns.<origin> with an A
	// record at nsd's address) are added when missing.
	Records []string
	// Sign signs the zone with a fresh KSK and ZSK and puts its DS in the
	// parent, so answers validate as secure.
	Sign bool
	// Break, which needs Sign, corrupts every signature except those over
	// the DNSKEY RRset after signing: the zone is bogus and unbound answers
	// SERVFAIL for its names, NXDOMAIN included.
	Break bool
}

// Env is a running nsd and unbound pair; t.Cleanup stops both.
type Env struct {
	resolver netip.AddrPort
	auth     netip.AddrPort
	dir      string
}

// Resolver returns the validating resolver's host:port, the value for
// SEALGATE_DNS_RESOLVER.
func (e *Env) Resolver() string { return e.resolver.String() }

// Authoritative returns nsd's host:port, which answers without validating.
func (e *Env) Authoritative() string { return e.auth.String() }

// Dir returns the directory holding the zone files, keys, configs and logs.
func (e *Env) Dir() string { return e.dir }

// tools are the absolute paths of the programs Start runs.
type tools struct{ nsd, unbound, keygen, signzone string }

// loopback is where both daemons listen, and the address in generated glue.
var loopback = netip.MustParseAddr("127.0.0.1")

// startAttempts bounds retries when another process takes a chosen port.
const startAttempts = 5

// Start writes, signs and serves zones under a signed test. zone, starts a
// validating unbound in front of nsd, and returns once unbound answers
// "test. SOA" with AD set. Any failure ends the test with t.Fatalf, giving
// the tail of the daemons' logs. Both daemons are stopped in t.Cleanup, and
// their logs are printed there if the test failed.
func Start(t testing.TB, zones ...Zone) *Env {
	t.Helper()
	tl, err := findTools(lookTool)
	if err != nil {
		t.Fatalf("%v", err)
	}
	dir := t.TempDir()
	zonesDir := filepath.Join(dir, "zones")
	if err := os.Mkdir(zonesDir, 0o755); err != nil {
		t.Fatalf("dnssec: %v", err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 90*time.Second)
	defer cancel()
	served, anchor, err := writeZones(ctx, tl, zonesDir, zones)
	if err != nil {
		t.Fatalf("%v", err)
	}
	taFile := filepath.Join(dir, "test.anchor")
	hintsFile := filepath.Join(dir, "root.hints")
	if err := os.WriteFile(taFile, []byte(anchor.String()+"\n"), 0o644); err != nil {
		t.Fatalf("dnssec: %v", err)
	}
	if err := os.WriteFile(hintsFile, []byte(rootHints()), 0o644); err != nil {
		t.Fatalf("dnssec: %v", err)
	}

	env := &Env{dir: dir}
	nsdDaemon, err := retryPorts(func(addr netip.AddrPort) (*daemon, error) {
		env.auth = addr
		return startNSD(ctx, tl.nsd, dir, nsdConfig{dir: dir, zonesDir: zonesDir, addr: addr, zones: served})
	})
	if err != nil {
		t.Fatalf("%v", err)
	}
	stopOnCleanup(t, nsdDaemon)
	names := make([]string, len(served))
	for i, z := range served {
		names[i] = z.name
	}
	unboundDaemon, err := retryPorts(func(addr netip.AddrPort) (*daemon, error) {
		env.resolver = addr
		return startUnbound(ctx, tl.unbound, dir, unboundConfig{
			dir: dir, addr: addr, auth: env.auth,
			trustAnchor: taFile, rootHints: hintsFile, zones: names,
		})
	})
	if err != nil {
		t.Fatalf("%v%s", err, nsdDaemon.tails())
	}
	stopOnCleanup(t, unboundDaemon)
	return env
}

// findTools finds every program Start runs with look, and names the Debian
// package of each one missing.
func findTools(look func(name string) (string, error)) (tools, error) {
	var tl tools
	var missing []error
	for _, x := range []struct {
		dst  *string
		name string
		pkg  string
	}{
		{&tl.nsd, "nsd", "nsd"},
		{&tl.unbound, "unbound", "unbound"},
		{&tl.keygen, "ldns-keygen", "ldnsutils"},
		{&tl.signzone, "ldns-signzone", "ldnsutils"},
	} {
		p, err := look(x.name)
		if err != nil {
			missing = append(missing, fmt.Errorf("%s not found: install the Debian package %s (apt-get install %s)", x.name, x.pkg, x.pkg))
			continue
		}
		*x.dst = p
	}
	if len(missing) > 0 {
		return tools{}, fmt.Errorf("dnssec: %w", errors.Join(missing...))
	}
	return tl, nil
}

// lookTool finds a program in PATH or, since a CI user's PATH may lack
// them, in the sbin directories where Debian puts nsd and unbound.
func lookTool(name string) (string, error) {
	p, err := exec.LookPath(name)
	if err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/bin"} {
		if p, lerr := exec.LookPath(filepath.Join(dir, name)); lerr == nil {
			return p, nil
		}
	}
	return "", err
}

// writeZones plans, writes and signs every zone in dir and returns what nsd
// must serve and the KSK of test., the trust anchor.
func writeZones(ctx context.Context, tl tools, dir string, zones []Zone) ([]nsdZone, *dns.DNSKEY, error) {
	plans, err := planZones(zones, loopback)
	if err != nil {
		return nil, nil, err
	}
	s := signer{keygenPath: tl.keygen, signzonePath: tl.signzone, dir: dir, now: time.Now()}
	var served []nsdZone
	var anchor *dns.DNSKEY
	for _, p := range plans { // deepest first: children before parents
		if err := os.WriteFile(filepath.Join(dir, p.fileName()), []byte(zoneText(p.origin, p.records)), 0o644); err != nil {
			return nil, nil, fmt.Errorf("dnssec: %w", err)
		}
		file := p.fileName()
		if p.sign {
			signed, ksk, err := s.sign(ctx, p)
			if err != nil {
				return nil, nil, err
			}
			file = signed
			if p.broken {
				if err := breakZone(filepath.Join(dir, signed), p.origin); err != nil {
					return nil, nil, err
				}
			}
			if p.parent != nil {
				p.parent.records = append(p.parent.records, ksk.ToDS(dns.SHA256))
			} else {
				anchor = ksk
			}
		}
		served = append(served, nsdZone{name: p.origin, file: file})
	}
	return served, anchor, nil
}

// breakZone rewrites a signed zone file with corrupted signatures.
func breakZone(path, origin string) error {
	rrs, err := readZone(path, origin)
	if err != nil {
		return err
	}
	bad, err := corruptSignatures(rrs)
	if err != nil {
		return fmt.Errorf("%w in %s", err, origin)
	}
	if err := os.WriteFile(path, []byte(zoneText(origin, bad)), 0o644); err != nil {
		return fmt.Errorf("dnssec: %w", err)
	}
	return nil
}

// retryPorts calls start with fresh loopback ports until one binds.
func retryPorts(start func(netip.AddrPort) (*daemon, error)) (*daemon, error) {
	var err error
	for range startAttempts {
		var addr netip.AddrPort
		if addr, err = freePort(loopback); err != nil {
			return nil, err
		}
		var d *daemon
		if d, err = start(addr); err == nil {
			return d, nil
		}
		if !errors.Is(err, errPortTaken) {
			return nil, err
		}
	}
	return nil, err
}

// errPortTaken marks a start that failed only because the port was taken.
var errPortTaken = errors.New("dnssec: port taken")

func startNSD(ctx context.Context, path, dir string, c nsdConfig) (*daemon, error) {
	conf := filepath.Join(dir, "nsd.conf")
	probe := new(dns.Msg).SetQuestion(rootOrigin, dns.TypeSOA)
	probe.RecursionDesired = false
	return launch(ctx, "nsd", path, []string{"-d", "-c", conf}, conf, c.render(),
		filepath.Join(dir, "nsd.stderr"), filepath.Join(dir, "nsd.log"), c.addr, probe,
		func(m *dns.Msg) bool { return m.Rcode == dns.RcodeSuccess && m.Authoritative })
}

func startUnbound(ctx context.Context, path, dir string, c unboundConfig) (*daemon, error) {
	conf := filepath.Join(dir, "unbound.conf")
	probe := new(dns.Msg).SetQuestion(rootOrigin, dns.TypeSOA)
	probe.SetEdns0(1232, true)
	return launch(ctx, "unbound", path, []string{"-d", "-c", conf}, conf, c.render(),
		filepath.Join(dir, "unbound.stderr"), filepath.Join(dir, "unbound.log"), c.addr, probe,
		func(m *dns.Msg) bool { return m.Rcode == dns.RcodeSuccess && m.AuthenticatedData })
}

// launch writes a config, starts the daemon with fresh logs and waits until
// its probe is answered as ok wants.
func launch(ctx context.Context, name, path string, args []string, conf, text, stderrFile, logFile string,
	addr netip.AddrPort, probe *dns.Msg, ok func(*dns.Msg) bool) (*daemon, error) {
	if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
		return nil, fmt.Errorf("dnssec: %w", err)
	}
	for _, f := range []string{stderrFile, logFile} {
		if err := os.Remove(f); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("dnssec: %w", err)
		}
	}
	d, err := startDaemon(name, path, args, stderrFile, logFile)
	if err != nil {
		return nil, err
	}
	if err := d.waitReady(ctx, addr, probe, ok); err != nil {
		d.stop()
		if errors.Is(err, ErrExited) && d.bindFailed() {
			return nil, fmt.Errorf("%w: %w", errPortTaken, err)
		}
		return nil, fmt.Errorf("%w%s", err, d.tails())
	}
	return d, nil
}

func stopOnCleanup(t testing.TB, d *daemon) {
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("dnssec: %s logs:%s", d.name, d.tails())
		}
		d.stop()
	})
}
