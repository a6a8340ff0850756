package postfix

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// DefaultMyHostname is the name the instance gives itself when
// Options.MyHostname is empty.
const DefaultMyHostname = "legacy.sealgate.test"

// ErrBadOption reports an Options field the harness cannot use.
var ErrBadOption = errors.New("postfix: bad option")

// Options configures one private Postfix instance. The zero value is not
// usable: RelayHost is required, or MX with SMTPListen.
type Options struct {
	// RelayHost is the numeric "127.0.0.1:PORT" every message is relayed
	// to, written as relayhost = [127.0.0.1]:PORT (brackets: no MX lookup).
	// It may be empty when MX is set.
	RelayHost string
	// MyHostname is myhostname, used in HELO and Message-ID. Empty means
	// DefaultMyHostname. It must differ from the name the relay greets
	// with, or Postfix reports a mail loop and defers.
	MyHostname string
	// SMTPListen, when set, is a loopback "127.0.0.x:port" where Postfix's
	// smtpd also accepts mail (from 127.0.0.0/8, no authentication), so
	// that tests can submit over SMTP too. Empty means no inet service.
	SMTPListen string
	// MX, when set, makes the instance the MX of MX.Domains on SMTPListen
	// (required then): see MXOptions. Nil means a legacy client.
	MX *MXOptions
	// MainCF holds extra main.cf parameters; they override the harness's
	// own settings. Nil means none.
	MainCF map[string]string
}

// paths are the locations of one instance, all under one private root.
type paths struct {
	root    string // 0755, owned by root
	config  string // config_directory: main.cf, master.cf
	queue   string // queue_directory; subdirectories made by post-install
	data    string // data_directory, owned by postfix
	maillog string // maillog_file, written by postlogd
}

// validate checks the options and returns them with defaults applied.
func (o Options) validate() (Options, error) {
	if o.MyHostname == "" {
		o.MyHostname = DefaultMyHostname
	}
	if strings.ContainsAny(o.MyHostname, " \t\r\n") {
		return o, fmt.Errorf("%w: MyHostname %q", ErrBadOption, o.MyHostname)
	}
	if o.RelayHost != "" || o.MX == nil {
		if _, err := loopbackHostPort("RelayHost", o.RelayHost); err != nil {
			return o, err
		}
	}
	if o.MX != nil {
		if err := o.MX.validate(); err != nil {
			return o, err
		}
		if o.SMTPListen == "" {
			return o, fmt.Errorf("%w: MX needs SMTPListen", ErrBadOption)
		}
	}
	if o.SMTPListen != "" {
		if _, err := loopbackHostPort("SMTPListen", o.SMTPListen); err != nil {
			return o, err
		}
	}
	for k, v := range o.MainCF {
		if k == "" || strings.ContainsAny(k, " \t\r\n=") || strings.ContainsAny(v, "\r\n") {
			return o, fmt.Errorf("%w: MainCF %q = %q", ErrBadOption, k, v)
		}
	}
	return o, nil
}

// loopbackHostPort parses "127.0.0.x:port" (IPv4 loopback, numeric port).
func loopbackHostPort(field, s string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%w: %s %q: %w", ErrBadOption, field, s, err)
	}
	addr, err := netip.ParseAddr(host)
	if err != nil || !addr.Is4() || !addr.IsLoopback() {
		return netip.AddrPort{}, fmt.Errorf("%w: %s %q: want an IPv4 loopback address", ErrBadOption, field, s)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return netip.AddrPort{}, fmt.Errorf("%w: %s %q: want a numeric port", ErrBadOption, field, s)
	}
	return netip.AddrPortFrom(addr, uint16(n)), nil
}

// mainCF renders main.cf. Options must have been validated.
func mainCF(o Options, p paths) string {
	params := map[string]string{
		"compatibility_level":   "3.6",
		"queue_directory":       p.queue,
		"data_directory":        p.data,
		"maillog_file":          p.maillog,
		"maillog_file_prefixes": p.root,
		"myhostname":            o.MyHostname,
		"mydestination":         "",
		"relay_domains":         "",
		"alias_maps":            "",
		"alias_database":        "",
		"mynetworks":            "127.0.0.0/8",
		"inet_interfaces":       "loopback-only",
		"inet_protocols":        "ipv4",
		// No DNS: the machine's resolver is not on loopback.
		"smtp_dns_support_level": "disabled",
		"smtpd_peername_lookup":  "no",
		// The hop to sealgate is plaintext by design; sealgate enforces TLS.
		"smtp_tls_security_level":  "none",
		"smtpd_tls_security_level": "none",
		"biff":                     "no",
		// Retry a deferred message within seconds, not minutes.
		"queue_run_delay":      "1s",
		"minimal_backoff_time": "1s",
		"maximal_backoff_time": "2s",
	}
	if relay, err := loopbackHostPort("RelayHost", o.RelayHost); err == nil {
		params["relayhost"] = fmt.Sprintf("[%s]:%d", relay.Addr(), relay.Port())
	}
	if o.MX != nil {
		maps.Copy(params, mxMainCF(o.MX, p))
	}
	maps.Copy(params, o.MainCF)
	var b strings.Builder
	b.WriteString("# Written by sealgate/e2e/postfix for one test.\n")
	for _, k := range slices.Sorted(maps.Keys(params)) {
		fmt.Fprintf(&b, "%s = %s\n", k, params[k])
	}
	return b.String()
}

// masterServices is the minimal master.cf: every service runs outside a
// chroot (the queue is in a temporary directory with no chroot set up).
// There is no local delivery: mydestination is empty. tlsmgr serves an MX
// instance's smtpd with STARTTLS; tlsproxy lets smtp_tls_connection_reuse
// keep TLS connections to the relayhost open between messages.
const masterServices = `# service type  private unpriv chroot wakeup maxproc command
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
tlsproxy  unix  -       -       n       -       0       tlsproxy
`

// masterCF renders master.cf. Options must have been validated.
func masterCF(o Options) string {
	s := masterServices
	if o.SMTPListen != "" {
		s += fmt.Sprintf("%s inet n - n - - smtpd\n", o.SMTPListen)
	}
	return s
}
