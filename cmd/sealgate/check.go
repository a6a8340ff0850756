package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"sealgate/certs"
	"sealgate/enforcement"
	"sealgate/enforcement/dnsname"
	"sealgate/enforcement/store"
	"sealgate/proxy"
	"sealgate/upstream"
)

// hostReport is what "sealgate check" found for one MX address.
type hostReport struct {
	Host          string `json:"host"`
	Addr          string `json:"addr"`
	Policy        string `json:"policy"`
	Level         string `json:"level"`
	OK            bool   `json:"ok"`
	TLSVersion    string `json:"tls_version,omitempty"`
	Cipher        string `json:"cipher,omitempty"`
	Authenticated bool   `json:"authenticated"`
	Verification  string `json:"verification,omitempty"`
	Error         string `json:"error,omitempty"`
}

// domainReport is the result of "sealgate check" for one domain.
type domainReport struct {
	Domain  string `json:"domain"`
	Proceed bool   `json:"proceed"`
	Reply   string `json:"reply,omitempty"`
	// DNSSECTrusted says whether DNSSEC answers were believed (the AD
	// flag of every resolver is trusted); DNSSEC says why.
	DNSSECTrusted bool         `json:"dnssec_trusted"`
	DNSSEC        string       `json:"dnssec"`
	Hosts         []hostReport `json:"hosts,omitempty"`
}

// runCheck implements "sealgate check [--json] DOMAIN...": the policy of
// each domain and a live probe of its MX hosts (greeting, EHLO, STARTTLS,
// the verified handshake, QUIT: no mail is sent). Exit status 0 when
// delivery to every domain would proceed, 1 when one would be deferred or
// refused.
func runCheck(args []string, stdout, stderr io.Writer) int {
	asJSON := false
	var domains []string
	for _, a := range args {
		switch {
		case a == "--json" || a == "-json":
			asJSON = true
		case strings.HasPrefix(a, "-"):
			fmt.Fprintf(stderr, "sealgate check: unknown flag %s\nusage: sealgate check [--json] DOMAIN...\n", a)
			return 2
		default:
			domains = append(domains, a)
		}
	}
	if len(domains) == 0 {
		fmt.Fprintln(stderr, "usage: sealgate check [--json] DOMAIN...")
		return 2
	}
	cfg, err := parseConfig(environ())
	if err != nil {
		fmt.Fprintf(stderr, "sealgate: configuration error: %v\n", err)
		return 2
	}
	dns, err := newResolver(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "sealgate check: %v\n", err)
		return 2
	}
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, cleanup, err := checkStore(cfg)
	if err != nil {
		fmt.Fprintf(stderr, "sealgate check: %v\n", err)
		return 1
	}
	defer cleanup()
	engine, deliver, err := newRouting(cfg, dns, newSTSManager(dns, st, quiet), certs.NewWatcher(quiet), nil, quiet)
	if err != nil {
		fmt.Fprintf(stderr, "sealgate check: %v\n", err)
		return 2
	}
	deliver.CommandTimeout = 30 * time.Second
	trusted, why := dnssecTrust(cfg, dns)
	status := 0
	var reports []domainReport
	for _, d := range domains {
		r := checkDomain(engine, deliver, d)
		r.DNSSECTrusted, r.DNSSEC = trusted, why
		if !r.Proceed {
			status = 1
		}
		reports = append(reports, r)
	}
	if asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(reports)
		return status
	}
	if trusted {
		fmt.Fprintf(stdout, "DNSSEC trusted: %s\n", why)
	} else {
		fmt.Fprintf(stdout, "DNSSEC NOT trusted: %s\n", why)
	}
	for _, r := range reports {
		verdict := "delivery would proceed"
		if !r.Proceed {
			verdict = "delivery would be deferred or refused: " + r.Reply
		}
		fmt.Fprintf(stdout, "%s: %s\n", r.Domain, verdict)
		for _, h := range r.Hosts {
			mark := "FAIL"
			if h.OK {
				mark = "ok  "
			}
			fmt.Fprintf(stdout, "  %s %s [%s] policy %s (%s)", mark, h.Host, h.Addr, h.Policy, h.Level)
			if h.OK {
				fmt.Fprintf(stdout, ": %s %s, %s\n", h.TLSVersion, h.Cipher, h.Verification)
			} else {
				fmt.Fprintf(stdout, ": %s\n", h.Error)
			}
		}
	}
	return status
}

// checkStore opens the state store, or a scratch one when the running
// gateway holds the bbolt file.
func checkStore(cfg *Config) (store.Store, func(), error) {
	st, _, err := openStore(cfg)
	if err == nil {
		return st, func() { st.Close() }, nil
	}
	if cfg.RedisURL != "" {
		return nil, nil, err
	}
	dir, derr := os.MkdirTemp("", "sealgate-check")
	if derr != nil {
		return nil, nil, derr
	}
	st, err = store.OpenBolt(filepath.Join(dir, "check.db"))
	if err != nil {
		os.RemoveAll(dir)
		return nil, nil, err
	}
	return st, func() { st.Close(); os.RemoveAll(dir) }, nil
}

func checkDomain(engine *enforcement.Engine, deliver *upstream.Deliverer, domain string) domainReport {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r := domainReport{Domain: dnsname.Normalize(domain)}
	route, err := engine.Resolve(ctx, domain)
	if err != nil {
		r.Reply = replyText(err)
		return r
	}
	var last error
	for _, h := range route.Hosts {
		for _, a := range h.Addrs {
			one := *route
			host := h
			host.Addrs = append(host.Addrs[:0:0], a)
			one.Hosts = []enforcement.Host{host}
			hr := hostReport{Host: h.Name, Addr: a.String(), Policy: h.Req.Describe(), Level: h.Req.Level.String()}
			c, err := deliver.Open(ctx, &one)
			if err != nil {
				last = err
				hr.Error = err.Error()
			} else {
				hr.OK, r.Proceed = true, true
				hr.TLSVersion, hr.Cipher = tls.VersionName(c.TLS.Version), tls.CipherSuiteName(c.TLS.CipherSuite)
				hr.Authenticated, hr.Verification = c.Verdict.Authenticated, c.Verdict.Detail
				c.Close()
			}
			r.Hosts = append(r.Hosts, hr)
		}
	}
	if !r.Proceed && last != nil {
		r.Reply = replyText(last)
	}
	return r
}

// replyText is the reply the legacy server would get.
func replyText(err error) string {
	r := proxy.Reply(err)
	return fmt.Sprintf("%d %d.%d.%d %s", r.Code, r.EnhancedCode[0], r.EnhancedCode[1], r.EnhancedCode[2], r.Message)
}
