// Package upstream delivers mail to MX hosts over TLS that a requirement
// of package enforcement approved (RFC 5321, RFC 3207). The cleartext
// phase (greeting, EHLO, STARTTLS) is done by hand; then one complete TLS
// handshake is judged by the verifier before go-smtp's client sends
// anything. No host is ever retried in cleartext.
package upstream

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"

	"sealgate/enforcement"
	"sealgate/enforcement/netx"
)

// maxAttempts bounds the addresses Open tries for one route.
const maxAttempts = 10

// Deliverer opens verified upstream connections. The zero value of each
// field has the documented default.
type Deliverer struct {
	// Hostname is our EHLO name (required).
	Hostname string
	// Port is the MX port; 25 if 0.
	Port int
	// Verifier judges handshakes (required).
	Verifier *enforcement.Verifier
	// Dial opens connections; a net.Dialer if nil, which sets Mark and
	// keeps its sockets in Sockets.
	Dial netx.DialFunc
	// Mark, if not 0, is the SO_MARK of every connection to an MX, so
	// that interception rules can exempt them (Linux, CAP_NET_ADMIN).
	Mark int
	// Sockets, if not nil, holds the local addresses of our live MX
	// connections, for the inbound side to recognise its own connections
	// redirected back to it.
	Sockets *Sockets
	// ConnectTimeout bounds the TCP connect (30s if 0).
	ConnectTimeout time.Duration
	// CommandTimeout bounds each command's reply (5 minutes if 0,
	// RFC 5321 §4.5.3.2).
	CommandTimeout time.Duration
	// DataTimeout bounds each write of the body and the final reply
	// (10 minutes if 0).
	DataTimeout time.Duration
	// RelayUsername and RelayPassword, if set, authenticate to a relay
	// route (smarthost) with SASL PLAIN or LOGIN after TLS.
	RelayUsername, RelayPassword string
	// ClientCertificate, if set, is presented to servers that ask.
	ClientCertificate func(*tls.CertificateRequestInfo) (*tls.Certificate, error)
	// Pool, if not nil, keeps connections between transactions; Open
	// takes one from it before it dials.
	Pool *Pool
	// Sessions caches TLS sessions for resumption with hosts seen
	// before; a resumed session is judged like a full handshake. An LRU
	// cache of 1024 sessions if nil.
	Sessions tls.ClientSessionCache
	// Attempts, if set, receives every session with an MX for TLS-RPT
	// (STARTTLS missing or refused, handshake failures, successes), once
	// per connection, except on a route marked NoReport.
	Attempts enforcement.AttemptRecorder
	// Log receives one line per attempt; slog.Default if nil.
	Log *slog.Logger

	sessionsOnce sync.Once
}

func (d *Deliverer) log() *slog.Logger {
	if d.Log != nil {
		return d.Log
	}
	return slog.Default()
}

func orDefault(v, def time.Duration) time.Duration {
	if v > 0 {
		return v
	}
	return def
}

// Open tries the route's hosts in order and returns the first connection
// that completed a TLS handshake approved by the host's requirement and
// greeted us after it. On a route for a REQUIRETLS message
// (Route.REQUIRETLS), a host that does not advertise REQUIRETLS after
// STARTTLS is left with QUIT and the next one tried (RFC 8689 §4.2.1).
// The error is an *enforcement.Failure naming the most telling cause among
// all attempts: a KindRequireTLS failure (550 5.7.30) only when every
// attempt found a host without REQUIRETLS.
func (d *Deliverer) Open(ctx context.Context, route *enforcement.Route) (*Conn, error) {
	var worst *enforcement.Failure
	var noREQUIRETLS []string
	tried := 0
	certID := certIdentity(d.ClientCertificate)
	for _, h := range route.Hosts {
		for _, a := range h.Addrs {
			if tried == maxAttempts {
				break
			}
			tried++
			if c := d.Pool.take(route, h, d.addr(h, a), certID); c != nil {
				return c, nil
			}
			c, err := d.attempt(ctx, route, h, a, certID)
			if err == nil {
				return c, nil
			}
			f, _ := enforcement.AsFailure(err)
			if f.Kind == enforcement.KindRequireTLS && !slices.Contains(noREQUIRETLS, f.Host) {
				noREQUIRETLS = append(noREQUIRETLS, f.Host)
			}
			if worst == nil || enforcement.Worse(f.Kind, worst.Kind) {
				worst = f
			}
			if ctx.Err() != nil {
				return nil, worst
			}
		}
	}
	switch {
	case worst == nil:
		worst = &enforcement.Failure{Kind: enforcement.KindUnreachable, Domain: route.Domain, Reason: "no MX host to try"}
	case worst.Kind == enforcement.KindRequireTLS:
		worst = &enforcement.Failure{Kind: enforcement.KindRequireTLS, Domain: route.Domain,
			Reason: "REQUIRETLS: no MX host advertises REQUIRETLS after STARTTLS: " + strings.Join(noREQUIRETLS, ", ")}
	}
	return nil, worst
}

func (d *Deliverer) attempt(ctx context.Context, route *enforcement.Route, h enforcement.Host, a netip.Addr, certID [32]byte) (*Conn, error) {
	start := time.Now()
	addr := d.addr(h, a)
	fail := func(kind enforcement.Kind, result, reason string, err error) error {
		f := &enforcement.Failure{Kind: kind, Domain: route.Domain, Policy: h.Req.Describe(), Host: h.Name, Reason: reason, Result: result, Err: err}
		d.log().LogAttrs(ctx, slog.LevelWarn, "upstream attempt failed",
			slog.String("domain", route.Domain), slog.String("mx", h.Name), slog.String("ip", a.String()),
			slog.String("policy", h.Req.Describe()), slog.String("failure", kind.String()),
			slog.String("result", result), slog.String("reason", reason),
			slog.Duration("duration", time.Since(start)))
		return f
	}
	var local netip.Addr
	record := func(result, reason string) {
		if d.Attempts == nil || route.NoReport {
			return
		}
		if result == "" {
			reason = ""
		}
		at := route.Attempt(h, result, reason)
		at.SendingIP, at.ReceivingIP = local, a
		d.Attempts.RecordAttempt(at)
	}

	dctx, cancel := context.WithTimeout(ctx, orDefault(d.ConnectTimeout, 30*time.Second))
	raw, err := d.dial(dctx, addr)
	cancel()
	if err != nil {
		return nil, fail(enforcement.KindUnreachable, "", "connect to "+addr+" failed: "+errText(err), err)
	}
	if ap, err := netip.ParseAddrPort(raw.LocalAddr().String()); err == nil {
		local = ap.Addr().Unmap()
	}
	cmdTimeout := orDefault(d.CommandTimeout, 5*time.Minute)
	if !h.ImplicitTLS {
		if _, err := preTLS(raw, d.Hostname, cmdTimeout); err != nil {
			raw.Close()
			if errors.Is(err, errNoSTARTTLS) {
				record(enforcement.ResultSTARTTLSNotSupported, err.Error())
				return nil, fail(enforcement.KindNoSTARTTLS, enforcement.ResultSTARTTLSNotSupported, err.Error(), err)
			}
			return nil, fail(enforcement.KindUnreachable, "", errText(err), err)
		}
	}

	var verdict enforcement.Verdict
	base := &tls.Config{GetClientCertificate: d.ClientCertificate, ClientSessionCache: d.sessions()}
	tc := tls.Client(raw, h.Req.TLSConfig(d.Verifier, h.Name, base, &verdict))
	hctx, cancel := context.WithTimeout(ctx, cmdTimeout)
	err = tc.HandshakeContext(hctx)
	cancel()
	cs := tc.ConnectionState()
	if err == nil && (!verdict.OK || !cs.HandshakeComplete) {
		err = errors.New("handshake not judged")
	}
	if err != nil {
		raw.Close()
		if verdict.Err != nil {
			record(verdict.Err.Result, verdict.Err.Reason)
			return nil, fail(enforcement.KindTLS, verdict.Err.Result, verdict.Err.Reason, err)
		}
		record(enforcement.ResultValidationFailure, "TLS handshake failed: "+errText(err))
		return nil, fail(enforcement.KindTLS, enforcement.ResultValidationFailure, "TLS handshake failed: "+errText(err), err)
	}

	dc := &deadlineConn{Conn: tc, timeout: orDefault(d.DataTimeout, 10*time.Minute)}
	var client *smtp.Client
	if h.ImplicitTLS {
		// The greeting comes over TLS.
		client = smtp.NewClient(dc)
	} else {
		client = smtp.NewClient(&replayConn{Conn: dc, pending: []byte("220 " + h.Name + " ESMTP\r\n")})
	}
	client.CommandTimeout = cmdTimeout
	client.SubmissionTimeout = dc.timeout
	if err := client.Hello(d.Hostname); err != nil {
		client.Close()
		var op *net.OpError
		if errors.As(err, &op) && op.Op == "remote error" {
			// With TLS 1.3 the server judges our certificate after
			// the handshake completed on our side.
			record(enforcement.ResultValidationFailure, "the server ended the TLS session")
			return nil, fail(enforcement.KindTLS, enforcement.ResultValidationFailure, "the server ended the TLS session: "+err.Error(), err)
		}
		record(verdict.Result, verdict.Detail)
		return nil, fail(enforcement.KindUnreachable, "", "EHLO after TLS: "+errText(err), err)
	}
	// The session is established: a success, or the failure of a testing
	// policy delivered under the floor (verdict.Result).
	record(verdict.Result, verdict.Detail)
	if ok, _ := client.Extension("REQUIRETLS"); route.REQUIRETLS && !ok {
		// RFC 8689 §4.2.1: QUIT without sending the message; the
		// next host may support it.
		quit(client)
		return nil, fail(enforcement.KindRequireTLS, "", "MX does not advertise REQUIRETLS after STARTTLS", nil)
	}
	if route.Relay && d.RelayUsername != "" {
		if err := d.auth(client); err != nil {
			client.Close()
			return nil, fail(enforcement.KindAuth, "", "authentication failed: "+errText(err), err)
		}
	}
	c := &Conn{
		Route:   route,
		Host:    h,
		Addr:    addr,
		TLS:     cs,
		Verdict: verdict,
		client:  client,
		raw:     raw,
		wire:    dc,
		log:     d.log(),
		opened:  start,
		pool:    d.Pool,
		certID:  certID,
	}
	d.log().LogAttrs(ctx, slog.LevelInfo, "upstream connected",
		slog.String("domain", route.Domain), slog.String("mx", h.Name), slog.String("ip", a.String()),
		slog.String("tls_version", tls.VersionName(cs.Version)), slog.String("cipher", tls.CipherSuiteName(cs.CipherSuite)),
		slog.String("policy", h.Req.Describe()), slog.Bool("authenticated", verdict.Authenticated),
		slog.String("verification", verdict.Detail), slog.Duration("duration", time.Since(start)))
	return c, nil
}

// auth authenticates to the relay with PLAIN, or LOGIN when the relay
// offers only that.
func (d *Deliverer) auth(c *smtp.Client) error {
	ok, mechs := c.Extension("AUTH")
	if !ok {
		return errors.New("the relay offers no AUTH")
	}
	for _, m := range strings.Fields(strings.ToUpper(mechs)) {
		switch m {
		case sasl.Plain:
			return c.Auth(sasl.NewPlainClient("", d.RelayUsername, d.RelayPassword))
		}
	}
	for _, m := range strings.Fields(strings.ToUpper(mechs)) {
		if m == sasl.Login {
			return c.Auth(sasl.NewLoginClient(d.RelayUsername, d.RelayPassword))
		}
	}
	return fmt.Errorf("the relay offers neither PLAIN nor LOGIN (AUTH %s)", mechs)
}

// addr is the address of host h at a.
func (d *Deliverer) addr(h enforcement.Host, a netip.Addr) string {
	port := h.Port
	if port == 0 {
		port = d.Port
	}
	if port == 0 {
		port = 25
	}
	return net.JoinHostPort(a.String(), strconv.Itoa(port))
}

func (d *Deliverer) sessions() tls.ClientSessionCache {
	d.sessionsOnce.Do(func() {
		if d.Sessions == nil {
			d.Sessions = tls.NewLRUClientSessionCache(1024)
		}
	})
	return d.Sessions
}

func (d *Deliverer) dial(ctx context.Context, addr string) (net.Conn, error) {
	if d.Dial != nil {
		return d.Dial(ctx, "tcp", addr)
	}
	return dialTCP(ctx, addr, d.Mark, d.Sockets)
}

func errText(err error) string {
	var se *smtp.SMTPError
	if errors.As(err, &se) {
		return fmt.Sprintf("server replied %d %s", se.Code, se.Message)
	}
	return err.Error()
}
