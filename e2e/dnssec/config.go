package dnssec

import (
	"fmt"
	"net/netip"
	"strings"
)

// nsdConfig is what nsd.conf is made from.
type nsdConfig struct {
	dir      string         // state, logs, pid
	zonesDir string         // zone files; nsdZone.file is relative to it
	addr     netip.AddrPort // where nsd listens (UDP and TCP)
	zones    []nsdZone
}

type nsdZone struct{ name, file string }

// render returns an nsd.conf for a foreground nsd that keeps its state in
// dir: no database (zones are read from text), no privilege drop, no chroot,
// no remote control, one server process.
func (c nsdConfig) render() string {
	var b strings.Builder
	fmt.Fprintf(&b, `server:
	ip-address: %s@%d
	do-ip6: no
	server-count: 1
	reuseport: no
	username: ""
	chroot: ""
	zonesdir: %q
	database: ""
	zonelistfile: %q
	xfrdfile: %q
	xfrdir: %q
	pidfile: %q
	logfile: %q
	verbosity: 1
	hide-version: yes
	refuse-any: yes
remote-control:
	control-enable: no
`, c.addr.Addr(), c.addr.Port(), c.zonesDir,
		c.dir+"/zone.list", c.dir+"/xfrd.state", c.dir, c.dir+"/nsd.pid", c.dir+"/nsd.log")
	for _, z := range c.zones {
		fmt.Fprintf(&b, "zone:\n\tname: %q\n\tzonefile: %q\n", z.name, z.file)
	}
	return b.String()
}

// unboundConfig is what unbound.conf is made from.
type unboundConfig struct {
	dir         string         // state, logs, pid
	addr        netip.AddrPort // where unbound listens
	auth        netip.AddrPort // nsd
	trustAnchor string         // file with the DNSKEY of test.
	rootHints   string         // file with a loopback-only root hint
	zones       []string       // every zone nsd serves, test. included
}

// render returns an unbound.conf for a foreground validating resolver that
// only ever talks to nsd on loopback:
//   - "local-zone: test. transparent" replaces unbound's built-in RFC 6761
//     local zone for test., which otherwise answers NXDOMAIN for every .test
//     name without asking anyone;
//   - "local-zone: . refuse" answers REFUSED for every name outside test., so
//     the iterator never primes the root;
//   - the root hints name 127.0.0.1 anyway, and outgoing-interface binds
//     queries to loopback, so nothing can leave the machine;
//   - every zone has a stub-zone with nsd's address and port, because the
//     iterator would send delegations to port 53 of the glue address;
//   - do-not-query-localhost: no, or unbound refuses to query 127.0.0.0/8.
func (c unboundConfig) render() string {
	var b strings.Builder
	fmt.Fprintf(&b, `server:
	interface: %s
	port: %d
	do-ip6: no
	do-daemonize: no
	chroot: ""
	username: ""
	directory: %q
	pidfile: %q
	use-syslog: no
	logfile: %q
	log-time-ascii: yes
	verbosity: 1
	val-log-level: 2
	log-servfail: yes
	access-control: 127.0.0.0/8 allow
	do-not-query-localhost: no
	outgoing-interface: %s
	module-config: "validator iterator"
	trust-anchor-file: %q
	trust-anchor-signaling: no
	root-key-sentinel: no
	root-hints: %q
	harden-dnssec-stripped: yes
	harden-glue: yes
	qname-minimisation: no
	local-zone: "." refuse
	local-zone: "test." transparent
	num-threads: 1
	so-reuseport: no
	outgoing-range: 64
	num-queries-per-thread: 32
	msg-cache-size: 1m
	rrset-cache-size: 2m
	key-cache-size: 1m
	neg-cache-size: 1m
	infra-cache-numhosts: 100
remote-control:
	control-enable: no
`, c.addr.Addr(), c.addr.Port(), c.dir, c.dir+"/unbound.pid", c.dir+"/unbound.log",
		c.addr.Addr(), c.trustAnchor, c.rootHints)
	for _, z := range c.zones {
		fmt.Fprintf(&b, "stub-zone:\n\tname: %q\n\tstub-addr: %s@%d\n", z, c.auth.Addr(), c.auth.Port())
	}
	return b.String()
}

// rootHints returns a root hints file whose only server is on loopback.
func rootHints() string {
	return ".\t3600000\tNS\troot.invalid.\nroot.invalid.\t3600000\tA\t127.0.0.1\n"
}
