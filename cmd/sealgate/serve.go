package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/emersion/go-smtp"

	"sealgate/certs"
	"sealgate/enforcement/localpolicy"
	"sealgate/enforcement/mtasts"
	"sealgate/enforcement/store"
	"sealgate/proxy"
	"sealgate/proxy/outcome"
	"sealgate/upstream"
)

func newLogger(cfg *Config, w io.Writer) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// gateway is everything serve wires together.
type gateway struct {
	log     *slog.Logger
	store   store.Store
	watcher *certs.Watcher
	local   *localpolicy.Live // nil without a policy file
	metrics *metrics
	sts     *mtasts.Manager
	proxy   *proxy.Server
	pool    *upstream.Pool

	// tlsrpt records every upstream attempt and sends the reports.
	tlsrpt *tlsrptService

	// outcomes feed the status page.
	outcomes *outcome.Recorder
}

func build(cfg *Config, logw io.Writer) (g *gateway, err error) {
	log := newLogger(cfg, logw)
	res, err := newResolver(cfg)
	if err != nil {
		return nil, err
	}
	if trusted, why := dnssecTrust(cfg, res); trusted {
		log.Info("DNSSEC trusted: these resolvers must validate DNSSEC", "resolvers", strings.Join(res.Servers, ","), "dnssec", why)
	} else {
		log.Warn("DNSSEC not trusted: DANE is off and no MX set counts as DNSSEC-secure", "resolvers", strings.Join(res.Servers, ","), "dnssec", why)
	}

	st, where, err := openStore(cfg)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			st.Close()
		}
	}()
	log.Info("state store open", "store", where)

	watcher := certs.NewWatcher(log)
	met := newMetrics(watcher)
	sts := newSTSManager(res, st, log)
	engine, deliver, err := newRouting(cfg, res, sts, watcher, met, log)
	if err != nil {
		return nil, err
	}
	if err = wireInterception(cfg, deliver); err != nil {
		return nil, err
	}
	// Verified connections serve later transactions (DESIGN: upstream
	// connection reuse); serve closes the pool at shutdown.
	deliver.Pool = &upstream.Pool{IdleTimeout: cfg.UpstreamIdle, MaxIdle: cfg.UpstreamMaxIdle, MaxReuse: cfg.UpstreamReuse}
	rpt := newTLSRPT(cfg, res, st, engine, deliver, met, log)
	if cfg.relay != nil {
		log.Info("smarthost mode: every message goes through the relay", "relay", cfg.relay.String(), "auth", cfg.RelayUsername != "")
	}

	kp := &certs.KeyPair{}
	if cfg.TLSCertFile != "" {
		if err = watcher.WatchKeyPair("inbound", kp, cfg.TLSCertFile, cfg.TLSKeyFile); err != nil {
			return nil, &configError{fmt.Errorf("SEALGATE_TLS_CERT_FILE: %w", err)}
		}
	} else {
		var c *tls.Certificate
		if c, err = certs.SelfSigned(cfg.Hostname); err != nil {
			return nil, err
		}
		kp.Store(c)
		log.Info("inbound STARTTLS uses a self-signed certificate; set SEALGATE_TLS_CERT_FILE and SEALGATE_TLS_KEY_FILE for your own")
	}

	var users proxy.Users
	if cfg.AuthUsersFile != "" {
		if users, err = proxy.LoadUsers(cfg.AuthUsersFile); err != nil {
			return nil, &configError{fmt.Errorf("SEALGATE_AUTH_USERS_FILE: %w", err)}
		}
	}
	outcomes := outcome.New(0, nil)
	srv := proxy.New(proxy.Options{
		Hostname:           cfg.Hostname,
		AllowedNetworks:    cfg.networks,
		Users:              users,
		TLSConfig:          &tls.Config{GetCertificate: kp.GetCertificate, MinVersion: tls.VersionTLS12},
		MaxConnections:     cfg.MaxConnections,
		MaxMessageBytes:    cfg.MaxMessageSize,
		MaxRecipients:      cfg.MaxRecipients,
		MaxLineLength:      cfg.MaxLineLength,
		CommandTimeout:     cfg.CommandTimeout,
		DataTimeout:        cfg.DataTimeout,
		HonorTLSRequiredNo: cfg.HonorTLSReqNo,
		Limits:             cfg.limits,
		Metrics:            met,
		Intercepts:         met,
		OwnSockets:         deliver.Sockets,
		Outcomes:           outcomes,
		Router:             engine,
		Opener:             proxy.Deliverer(deliver),
		Log:                log,
	})
	local, _ := engine.Local.(*localpolicy.Live)
	return &gateway{tlsrpt: rpt, log: log, watcher: watcher, local: local, metrics: met, store: st, sts: sts, proxy: srv, outcomes: outcomes, pool: deliver.Pool}, nil
}

func serve(ctx context.Context, cfg *Config, logw io.Writer) error {
	g, err := build(cfg, logw)
	if err != nil {
		return err
	}
	defer g.store.Close()
	bg, stopBG := context.WithCancel(context.Background())
	defer stopBG()
	defer g.tlsrpt.start(bg)()
	go g.sts.Run(bg, time.Hour, 24*time.Hour)
	go g.watcher.Run(bg)
	go g.local.Run(bg)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-bg.Done():
				return
			case <-hup:
				g.log.Info("SIGHUP: reloading key material and the local policy")
				g.watcher.Reload()
				g.local.Reload()
			}
		}
	}()
	if cfg.AdminListen != "" {
		ops := stsOps{st: g.store, mgr: g.sts}
		status := &statusPage{rec: g.outcomes, sts: ops, replica: cfg.Hostname, since: time.Now(), now: time.Now, log: g.log}
		if _, err := serveAdmin(bg, cfg.AdminListen, adminGuard(cfg.Hostname, cfg.AdminHosts)(g.tlsrpt.handler(adminHandler(ops, g.metrics.handler(), status, g.log))), g.log); err != nil {
			return err
		}
	}
	listeners, err := listenAll(cfg, g.log)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	errc := make(chan error, len(listeners))
	for _, l := range listeners {
		g.log.Info("listening", "addr", l.Addr().String(), "hostname", cfg.Hostname, "floor", cfg.floor.String())
		wg.Add(1)
		go func() {
			defer wg.Done()
			errc <- g.proxy.Serve(l)
		}()
	}
	select {
	case <-ctx.Done():
		g.log.Info("shutting down: waiting for sessions in progress", "grace", "30s")
	case err = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if serr := g.proxy.Shutdown(sctx); serr != nil {
		g.proxy.Close()
	}
	wg.Wait()
	g.pool.Close()
	if err != nil && !errors.Is(err, net.ErrClosed) && !errors.Is(err, smtp.ErrServerClosed) {
		return err
	}
	return nil
}
