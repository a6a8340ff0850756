package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"sealgate/enforcement"
	"sealgate/enforcement/mtasts"
	"sealgate/enforcement/store"
)

// openStore opens the shared state: Redis when SEALGATE_REDIS_URL is set,
// otherwise a bbolt file in SEALGATE_STATE_DIR.
func openStore(cfg *Config) (store.Store, string, error) {
	if cfg.RedisURL != "" {
		s, err := store.OpenRedis(cfg.RedisURL)
		if err != nil {
			return nil, "", &configError{fmt.Errorf("SEALGATE_REDIS_URL: %w", err)}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Ping(ctx); err != nil {
			s.Close()
			return nil, "", fmt.Errorf("SEALGATE_REDIS_URL: Redis not reachable: %w", err)
		}
		return s, "redis", nil
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, "", &configError{fmt.Errorf("SEALGATE_STATE_DIR: %w", err)}
	}
	path := filepath.Join(cfg.StateDir, "sealgate.db")
	s, err := store.OpenBolt(path)
	if err != nil {
		return nil, "", &configError{fmt.Errorf("SEALGATE_STATE_DIR: %s: %w", path, err)}
	}
	return s, path, nil
}

// newSTSManager wires the MTA-STS policy cache to our resolver: the TXT
// record and the address of mta-sts.<domain> are looked up through
// SEALGATE_DNS_RESOLVER, never the system resolver.
func newSTSManager(dns enforcement.DNS, st store.Store, log *slog.Logger) *mtasts.Manager {
	txt := func(ctx context.Context, name string) ([]string, error) {
		r, err := dns.LookupTXT(ctx, name)
		if errors.Is(err, enforcement.ErrNotFound) {
			return nil, nil
		}
		return r.Records, err
	}
	addrs := func(ctx context.Context, host string) ([]netip.Addr, error) {
		r, err := dns.LookupAddrs(ctx, host)
		return r.Addrs, err
	}
	return &mtasts.Manager{
		Store:     st,
		Fetcher:   &mtasts.Fetcher{LookupAddrs: addrs},
		LookupTXT: txt,
		Log:       log,
	}
}
