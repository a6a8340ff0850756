package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"sealgate/enforcement/mtasts"
	"sealgate/enforcement/store"
)

// TestAdminPurgeReachesTheManagersMemory: a policy purged through the
// admin API is gone for the next message of the running gateway, not only
// from the store.
func TestAdminPurgeReachesTheManagersMemory(t *testing.T) {
	bolt, err := store.OpenBolt(filepath.Join(t.TempDir(), "sealgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bolt.Close() })
	var published atomic.Bool
	published.Store(true)
	mgr := &mtasts.Manager{Store: bolt, Fetcher: fakeFetcher{},
		LookupTXT: func(context.Context, string) ([]string, error) {
			if published.Load() {
				return []string{"v=STSv1; id=1"}, nil
			}
			return nil, nil
		},
		Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ctx := context.Background()
	if l, err := mgr.Policy(ctx, "purged.test"); err != nil || l.Policy == nil {
		t.Fatalf("first contact: %+v %v", l, err)
	}
	ops := stsOps{st: bolt, mgr: mgr}
	srv := httptest.NewServer(adminHandler(ops, promhttp.Handler(), testStatusPage(ops), slog.New(slog.NewTextHandler(io.Discard, nil))))
	t.Cleanup(srv.Close)
	req, _ := http.NewRequest(http.MethodDelete, srv.URL+"/mtasts/purged.test", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("DELETE: status %d", resp.StatusCode)
	}
	// The domain withdrew its record: without the purged policy, there
	// is none.
	published.Store(false)
	if l, err := mgr.Policy(ctx, "purged.test"); err != nil || l.Policy != nil {
		t.Fatalf("after the purge: %+v %v; want no policy", l, err)
	}
}
