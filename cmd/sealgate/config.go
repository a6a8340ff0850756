package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/caarlos0/env/v11"

	"sealgate/enforcement"
	"sealgate/enforcement/dnsname"
	"sealgate/proxy"
)

// Config is the whole configuration, from SEALGATE_* variables. The form
// tag says what a valid value looks like, for error messages.
type Config struct {
	Listen          string        `env:"LISTEN" envDefault:":2525" form:"comma-separated host:port addresses, e.g. :2525,[::1]:2525"`
	Hostname        string        `env:"HOSTNAME" form:"a fully qualified host name"`
	AllowedNetworks string        `env:"ALLOWED_NETWORKS" envDefault:"127.0.0.0/8,::1/128" form:"comma-separated CIDR prefixes, e.g. 10.0.0.0/8,fd00::/8"`
	AuthUsersFile   string        `env:"AUTH_USERS_FILE" form:"a readable file of user:bcrypt-hash lines"`
	TLSCertFile     string        `env:"TLS_CERT_FILE" form:"a PEM certificate chain file"`
	TLSKeyFile      string        `env:"TLS_KEY_FILE" form:"a PEM private key file"`
	DNSResolver     string        `env:"DNS_RESOLVER" form:"comma-separated host:port addresses of validating resolvers, e.g. 127.0.0.1:53"`
	DNSTrustAD      bool          `env:"DNS_TRUST_AD" envDefault:"false" form:"true or false"`
	MXPort          int           `env:"MX_PORT" envDefault:"25" form:"a port number from 1 to 65535"`
	MinTLS          string        `env:"MIN_TLS" envDefault:"encrypt" form:"encrypt or verify"`
	TLSMinVersion   string        `env:"TLS_MIN_VERSION" envDefault:"1.2" form:"1.0, 1.1, 1.2 or 1.3"`
	PolicyFile      string        `env:"POLICY_FILE" form:"a readable policy file"`
	ClientCertFile  string        `env:"CLIENT_CERT_FILE" form:"a PEM certificate chain file"`
	ClientKeyFile   string        `env:"CLIENT_KEY_FILE" form:"a PEM private key file"`
	RelayHost       string        `env:"RELAY_HOST" form:"[host]:port (no MX lookup) or host:port, as Postfix's relayhost"`
	RelayUsername   string        `env:"RELAY_USERNAME" form:"the SASL user name at the relay"`
	RelayPassword   string        `env:"RELAY_PASSWORD" form:"the SASL password at the relay"`
	RelayPassFile   string        `env:"RELAY_PASSWORD_FILE" form:"a readable file holding the relay password"`
	StateDir        string        `env:"STATE_DIR" envDefault:"./sealgate-data" form:"a writable directory"`
	RedisURL        string        `env:"REDIS_URL" form:"redis://host:port/db"`
	AdminListen     string        `env:"ADMIN_LISTEN" envDefault:"127.0.0.1:9025" form:"host:port"`
	AdminHosts      []string      `env:"ADMIN_HOSTS" envSeparator:"," form:"comma-separated host names the status page answers to, besides IP addresses, localhost and HOSTNAME"`
	LogFormat       string        `env:"LOG_FORMAT" envDefault:"text" form:"text or json"`
	LogLevel        string        `env:"LOG_LEVEL" envDefault:"info" form:"debug, info, warn or error"`
	MaxConnections  int           `env:"MAX_CONNECTIONS" envDefault:"100" form:"a positive number"`
	MaxMessageSize  int64         `env:"MAX_MESSAGE_SIZE" envDefault:"52428800" form:"a positive number of bytes"`
	MaxRecipients   int           `env:"MAX_RECIPIENTS" envDefault:"100" form:"a positive number"`
	MaxLineLength   int           `env:"MAX_LINE_LENGTH" envDefault:"65536" form:"a number of bytes from 1000 to 1048576"`
	UpstreamIdle    time.Duration `env:"UPSTREAM_IDLE_TIMEOUT" envDefault:"30s" form:"a Go duration, e.g. 30s"`
	UpstreamMaxIdle int           `env:"UPSTREAM_MAX_IDLE" envDefault:"8" form:"a positive number of idle connections per MX address"`
	UpstreamReuse   int           `env:"UPSTREAM_MAX_REUSE" envDefault:"100" form:"a positive number of transactions per connection (1: no reuse)"`
	CommandTimeout  time.Duration `env:"COMMAND_TIMEOUT" envDefault:"5m" form:"a Go duration, e.g. 5m"`
	DataTimeout     time.Duration `env:"DATA_TIMEOUT" envDefault:"10m" form:"a Go duration, e.g. 10m"`
	ConnectTimeout  time.Duration `env:"CONNECT_TIMEOUT" envDefault:"30s" form:"a Go duration, e.g. 30s"`
	DNSTimeout      time.Duration `env:"DNS_TIMEOUT" envDefault:"5s" form:"a Go duration, e.g. 5s"`
	DNSCacheSize    int           `env:"DNS_CACHE_SIZE" envDefault:"10000" form:"a number of DNS answers kept, 0 for no cache"`
	HonorTLSReqNo   bool          `env:"HONOR_TLS_REQUIRED_NO" envDefault:"false" form:"true or false"`

	// TLS reporting (RFC 8460).
	TLSRPTOrg     string `env:"TLSRPT_ORG" form:"the organization-name of TLS reports"`
	TLSRPTContact string `env:"TLSRPT_CONTACT" form:"the contact-info of TLS reports, e.g. postmaster@example.org"`
	TLSRPTFrom    string `env:"TLSRPT_FROM" form:"a mail address, e.g. noreply-tlsrpt@example.org"`
	TLSRPTSend    bool   `env:"TLSRPT_SEND" envDefault:"true" form:"true or false"`

	// Transparent interception.
	TProxyListen string `env:"TPROXY_LISTEN" form:"comma-separated host:port addresses for nftables tproxy, e.g. [::]:2526"`
	UpstreamMark string `env:"UPSTREAM_MARK" envDefault:"0" form:"a firewall mark from 0 (none) to 4294967295, decimal or 0x hexadecimal, e.g. 0x25"`

	// What one client may take of the inbound side.
	MaxConnectionsPerIP int           `env:"MAX_CONNECTIONS_PER_IP" envDefault:"20" form:"a positive number"`
	ReservedConns       int           `env:"RESERVED_CONNECTIONS" form:"a number from 0 to MAX_CONNECTIONS-1"`
	SessionIdleTimeout  time.Duration `env:"SESSION_IDLE_TIMEOUT" envDefault:"5m" form:"a Go duration, e.g. 5m"`
	MinDataRate         int           `env:"MIN_DATA_RATE" envDefault:"500" form:"a positive number of bytes per second"`
	AuthMaxFailures     int           `env:"AUTH_MAX_FAILURES" envDefault:"3" form:"a positive number"`
	AuthFailureDelay    time.Duration `env:"AUTH_FAILURE_DELAY" envDefault:"1s" form:"a Go duration, e.g. 1s"`
	AuthLockout         time.Duration `env:"AUTH_LOCKOUT" envDefault:"5m" form:"a Go duration, e.g. 5m"`

	// Derived values, filled by parseConfig.
	limits    proxy.Limits
	listen    []string
	tproxy    []string
	mark      int
	networks  []netip.Prefix
	resolvers []string
	floor     enforcement.Level
	minTLS    uint16
	relay     *enforcement.RelayHost
}

const envPrefix = "SEALGATE_"

// parseConfig reads the configuration from environ (a pure function of it)
// and validates every value. Errors name the variable and the expected
// form.
func parseConfig(environ map[string]string) (*Config, error) {
	if err := unknownVariables(environ); err != nil {
		return nil, err
	}
	var c Config
	err := env.ParseWithOptions(&c, env.Options{Environment: environ, Prefix: envPrefix})
	if err != nil {
		return nil, explainEnvError(err)
	}
	bad := func(field, value, why string) error {
		name, form := describe(field)
		if why != "" {
			why = ": " + why
		}
		return fmt.Errorf("%s=%q is invalid%s; expected %s", name, value, why, form)
	}
	if c.listen, err = hostPorts(c.Listen, 0); err != nil {
		return nil, bad("Listen", c.Listen, err.Error())
	}
	if len(c.listen) == 0 {
		return nil, bad("Listen", c.Listen, "no address")
	}
	if c.tproxy, err = hostPorts(c.TProxyListen, 0); err != nil {
		return nil, bad("TProxyListen", c.TProxyListen, err.Error())
	}
	// Decimal, or hexadecimal after 0x (ParseUint's base 0 would also
	// take 010 for 8).
	markText, base := strings.TrimSpace(c.UpstreamMark), 10
	if h, ok := strings.CutPrefix(strings.ToLower(markText), "0x"); ok {
		markText, base = h, 16
	}
	mark, err := strconv.ParseUint(markText, base, 32)
	if err != nil {
		return nil, bad("UpstreamMark", c.UpstreamMark, "")
	}
	c.mark = int(mark)
	if c.Hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			return nil, bad("Hostname", "", "the OS host name is unknown")
		}
		c.Hostname = h
	}
	if !hostName(c.Hostname) {
		return nil, bad("Hostname", c.Hostname, "not a host name (letters, digits, hyphens and dots)")
	}
	for i, h := range c.AdminHosts {
		if c.AdminHosts[i] = dnsname.Normalize(strings.TrimSpace(h)); !hostName(c.AdminHosts[i]) {
			return nil, bad("AdminHosts", strings.Join(c.AdminHosts, ","), "not a host name: "+strconv.Quote(h))
		}
	}
	if err := c.tlsrptDefaults(bad); err != nil {
		return nil, err
	}
	for _, n := range splitList(c.AllowedNetworks) {
		p, err := netip.ParsePrefix(n)
		if err != nil {
			return nil, bad("AllowedNetworks", c.AllowedNetworks, err.Error())
		}
		c.networks = append(c.networks, p.Masked())
	}
	if strings.TrimSpace(c.AllowedNetworks) != "" && len(c.networks) == 0 {
		return nil, bad("AllowedNetworks", c.AllowedNetworks, "no prefix in the list")
	}
	if c.resolvers, err = hostPorts(c.DNSResolver, 1); err != nil {
		return nil, bad("DNSResolver", c.DNSResolver, err.Error())
	}
	if c.DNSCacheSize < 0 {
		return nil, bad("DNSCacheSize", strconv.Itoa(c.DNSCacheSize), "")
	}
	if c.MXPort < 1 || c.MXPort > 65535 {
		return nil, bad("MXPort", strconv.Itoa(c.MXPort), "")
	}
	if c.floor, err = enforcement.ParseFloor(c.MinTLS); err != nil {
		return nil, bad("MinTLS", c.MinTLS, "")
	}
	versions := map[string]uint16{"1.0": tls.VersionTLS10, "1.1": tls.VersionTLS11, "1.2": tls.VersionTLS12, "1.3": tls.VersionTLS13}
	var ok bool
	if c.minTLS, ok = versions[c.TLSMinVersion]; !ok {
		return nil, bad("TLSMinVersion", c.TLSMinVersion, "")
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		return nil, errors.New(envPrefix + "TLS_CERT_FILE and " + envPrefix + "TLS_KEY_FILE must be set together")
	}
	if (c.ClientCertFile == "") != (c.ClientKeyFile == "") {
		return nil, errors.New(envPrefix + "CLIENT_CERT_FILE and " + envPrefix + "CLIENT_KEY_FILE must be set together")
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		return nil, bad("LogFormat", c.LogFormat, "")
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return nil, bad("LogLevel", c.LogLevel, "")
	}
	if c.MaxConnections < 1 {
		return nil, bad("MaxConnections", strconv.Itoa(c.MaxConnections), "")
	}
	if c.MaxMessageSize < 1 {
		return nil, bad("MaxMessageSize", strconv.FormatInt(c.MaxMessageSize, 10), "")
	}
	if c.MaxRecipients < 1 {
		return nil, bad("MaxRecipients", strconv.Itoa(c.MaxRecipients), "")
	}
	if c.MaxLineLength < 1000 || c.MaxLineLength > 1<<20 {
		return nil, bad("MaxLineLength", strconv.Itoa(c.MaxLineLength), "")
	}
	if c.UpstreamIdle <= 0 {
		return nil, bad("UpstreamIdle", c.UpstreamIdle.String(), "")
	}
	if c.UpstreamMaxIdle < 1 {
		return nil, bad("UpstreamMaxIdle", strconv.Itoa(c.UpstreamMaxIdle), "")
	}
	if c.UpstreamReuse < 1 {
		return nil, bad("UpstreamReuse", strconv.Itoa(c.UpstreamReuse), "")
	}
	if c.limits, err = parseLimits(&c, environ); err != nil {
		return nil, err
	}
	// A timeout too short for any peer to answer in defers every
	// message for ever: the floors are far below what works.
	for field, d := range map[string]time.Duration{"CommandTimeout": c.CommandTimeout, "DataTimeout": c.DataTimeout, "ConnectTimeout": c.ConnectTimeout, "DNSTimeout": c.DNSTimeout} {
		if d < 100*time.Millisecond {
			return nil, bad(field, d.String(), "must be at least 100ms")
		}
	}
	if c.RelayHost != "" {
		r, err := enforcement.ParseRelayHost(c.RelayHost)
		if err != nil {
			return nil, bad("RelayHost", c.RelayHost, err.Error())
		}
		c.relay = &r
	}
	if c.RelayPassword != "" && c.RelayPassFile != "" {
		return nil, errors.New(envPrefix + "RELAY_PASSWORD and " + envPrefix + "RELAY_PASSWORD_FILE are exclusive: set one")
	}
	if c.RelayPassFile != "" {
		data, err := os.ReadFile(c.RelayPassFile)
		if err != nil {
			return nil, bad("RelayPassFile", c.RelayPassFile, err.Error())
		}
		c.RelayPassword = strings.TrimRight(string(data), "\r\n")
	}
	if (c.RelayUsername != "") != (c.RelayPassword != "") {
		return nil, errors.New(envPrefix + "RELAY_USERNAME needs " + envPrefix + "RELAY_PASSWORD or " + envPrefix + "RELAY_PASSWORD_FILE, and the other way round")
	}
	if c.RelayUsername != "" && c.relay == nil {
		return nil, errors.New(envPrefix + "RELAY_USERNAME is set but " + envPrefix + "RELAY_HOST is not")
	}
	return &c, nil
}

// parseLimits checks what one client may take of the inbound side.
func parseLimits(c *Config, environ map[string]string) (proxy.Limits, error) {
	bad := func(field string, value any) error {
		name, form := describe(field)
		return fmt.Errorf("%s=\"%v\" is invalid; expected %s", name, value, form)
	}
	l := proxy.Limits{
		MaxConnectionsPerIP: c.MaxConnectionsPerIP,
		ReservedConnections: c.ReservedConns,
		SessionIdleTimeout:  c.SessionIdleTimeout,
		MinDataRate:         c.MinDataRate,
		AuthMaxFailures:     c.AuthMaxFailures,
		AuthFailureDelay:    c.AuthFailureDelay,
		AuthLockout:         c.AuthLockout,
	}
	for field, n := range map[string]int{"MaxConnectionsPerIP": c.MaxConnectionsPerIP, "MinDataRate": c.MinDataRate, "AuthMaxFailures": c.AuthMaxFailures} {
		if n < 1 {
			return l, bad(field, n)
		}
	}
	for field, d := range map[string]time.Duration{"AuthFailureDelay": c.AuthFailureDelay, "AuthLockout": c.AuthLockout} {
		if d <= 0 {
			return l, bad(field, d)
		}
	}
	if c.SessionIdleTimeout < 100*time.Millisecond { // would cut every session
		return l, bad("SessionIdleTimeout", c.SessionIdleTimeout)
	}
	if c.ReservedConns < 0 || c.ReservedConns >= c.MaxConnections {
		return l, bad("ReservedConns", c.ReservedConns)
	}
	if c.ReservedConns == 0 && environ[envPrefix+"RESERVED_CONNECTIONS"] != "" {
		l.ReservedConnections = -1 // explicitly none; unset means a fifth
	}
	return l, nil
}

// describe returns the variable name and the expected form of a field.
// unknownVariables refuses SEALGATE_ variables that sealgate does not
// know: a misspelt name (SEALGATE_MINTLS=verify) would otherwise leave
// the default in force without a word.
func unknownVariables(environ map[string]string) error {
	known := map[string]bool{}
	t := reflect.TypeOf(Config{})
	for i := range t.NumField() {
		if tag := t.Field(i).Tag.Get("env"); tag != "" {
			known[envPrefix+tag] = true
		}
	}
	var unknown []string
	for k := range environ {
		if strings.HasPrefix(k, envPrefix) && !known[k] {
			unknown = append(unknown, k)
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	slices.Sort(unknown)
	return fmt.Errorf("%s: not a variable sealgate knows (misspelt?); see the configuration table of the README", strings.Join(unknown, ", "))
}

func describe(field string) (name, form string) {
	f, ok := reflect.TypeOf(Config{}).FieldByName(field)
	if !ok {
		return field, "a valid value"
	}
	return envPrefix + f.Tag.Get("env"), f.Tag.Get("form")
}

// explainEnvError rewrites the env library's parse errors to name the
// variable and the expected form.
func explainEnvError(err error) error {
	var agg env.AggregateError
	if !errors.As(err, &agg) {
		return err
	}
	var msgs []string
	for _, e := range agg.Errors {
		var pe env.ParseError
		if errors.As(e, &pe) {
			name, form := describe(pe.Name)
			msgs = append(msgs, fmt.Sprintf("%s is invalid: %v; expected %s", name, pe.Err, form))
			continue
		}
		msgs = append(msgs, e.Error())
	}
	return errors.New(strings.Join(msgs, "; "))
}

// splitList splits a comma-separated list, trimming spaces.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// environ returns the process environment as a map.
func environ() map[string]string {
	m := map[string]string{}
	for _, kv := range os.Environ() {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return m
}

// hostPorts splits a comma-separated list of host:port addresses whose
// ports are numbers from minPort to 65535 (0: any free port, for a
// listener). A list that is not blank but holds no address is an error.
func hostPorts(list string, minPort int) ([]string, error) {
	var out []string
	for _, a := range splitList(list) {
		_, port, err := net.SplitHostPort(a)
		if err != nil {
			return nil, err
		}
		if n, err := strconv.Atoi(port); err != nil || n < minPort || n > 65535 {
			return nil, fmt.Errorf("port %q is not %d to 65535", port, minPort)
		}
		out = append(out, a)
	}
	if strings.TrimSpace(list) != "" && len(out) == 0 {
		return nil, errors.New("no address in the list")
	}
	return out, nil
}

// hostName reports whether s is a host name (a final dot allowed).
func hostName(s string) bool { return dnsname.ValidHostname(strings.TrimSuffix(s, ".")) }
