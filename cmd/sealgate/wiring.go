package main

import (
	"fmt"
	"log/slog"

	"sealgate/certs"
	"sealgate/enforcement"
	"sealgate/enforcement/resolver"
	"sealgate/upstream"
)

// newResolver is the DNS client for SEALGATE_DNS_RESOLVER, or for the
// nameservers of /etc/resolv.conf when it is not set, with a cache of
// SEALGATE_DNS_CACHE_SIZE answers (none for 0).
func newResolver(cfg *Config) (*resolver.Resolver, error) {
	servers := cfg.resolvers
	if len(servers) == 0 {
		var err error
		if servers, err = resolver.ServersFromResolvConf("/etc/resolv.conf"); err != nil {
			return nil, &configError{fmt.Errorf("SEALGATE_DNS_RESOLVER is not set and %w", err)}
		}
	}
	r := &resolver.Resolver{Servers: servers, Timeout: cfg.DNSTimeout, TrustAD: trustAD(cfg)}
	if cfg.DNSCacheSize > 0 {
		r.Cache = resolver.NewCache(resolver.CacheOptions{Size: cfg.DNSCacheSize})
	}
	return r, nil
}

// newRouting wires the policy engine and the deliverer exactly as delivery
// uses them, for serve and for check alike: floor, local
// policy, smarthost, client certificate, MTA-STS policies from sts. Files are loaded through w,
// which follows their changes when it runs.
func newRouting(cfg *Config, dns *resolver.Resolver, sts enforcement.STSSource, w *certs.Watcher, rec enforcement.Recorder, log *slog.Logger) (*enforcement.Engine, *upstream.Deliverer, error) {
	engine := &enforcement.Engine{
		DNS: dns, Floor: cfg.floor, MinVersion: cfg.minTLS,
		STS: sts, Relay: cfg.relay, Log: log,
	}
	if cfg.PolicyFile != "" {
		local, err := loadLocalPolicy(cfg.PolicyFile, log)
		if err != nil {
			return nil, nil, &configError{fmt.Errorf("SEALGATE_POLICY_FILE: %w", err)}
		}
		engine.Local = local
	}
	deliver := &upstream.Deliverer{
		Hostname:       cfg.Hostname,
		Port:           cfg.MXPort,
		Mark:           cfg.mark,
		Verifier:       &enforcement.Verifier{Recorder: rec},
		ConnectTimeout: cfg.ConnectTimeout,
		CommandTimeout: cfg.CommandTimeout,
		DataTimeout:    cfg.DataTimeout,
		RelayUsername:  cfg.RelayUsername,
		RelayPassword:  cfg.RelayPassword,
		Log:            log,
	}
	if cfg.ClientCertFile != "" {
		kp := &certs.KeyPair{}
		if err := w.WatchKeyPair("client", kp, cfg.ClientCertFile, cfg.ClientKeyFile); err != nil {
			return nil, nil, &configError{fmt.Errorf("SEALGATE_CLIENT_CERT_FILE: %w", err)}
		}
		deliver.ClientCertificate = kp.GetClientCertificate
	}
	return engine, deliver, nil
}
