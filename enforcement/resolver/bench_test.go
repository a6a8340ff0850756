package resolver_test

import (
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"sealgate/enforcement"
	"sealgate/enforcement/mtasts"
	"sealgate/enforcement/resolver"
	"sealgate/enforcement/store"
)

// fixedFetcher serves one MTA-STS policy for every domain.
type fixedFetcher struct{ body string }

func (f fixedFetcher) Fetch(context.Context, string) (*mtasts.Policy, error) {
	return mtasts.ParsePolicy([]byte(f.body))
}

// benchEngine is the engine as the gateway wires it, for a domain with a
// secure MX, its address, a usable TLSA record and an MTA-STS policy, all
// on the fake DNS server. cache is the resolver's cache (nil: none).
func benchEngine(b *testing.B, cache *resolver.Cache) *enforcement.Engine {
	b.Helper()
	s := newZone(b,
		"bench.test. 300 IN MX 10 mx.bench.test.",
		"mx.bench.test. 300 IN A 127.0.0.1",
		"_25._tcp.mx.bench.test. 300 IN TLSA 3 1 1 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
		`_mta-sts.bench.test. 300 IN TXT "v=STSv1; id=1;"`,
	)
	s.SetSecureZone("bench.test.", true)
	s.SetNegativeTTL(300) // NODATA for AAAA, with an SOA as from a real resolver
	r := &resolver.Resolver{Servers: []string{s.Addr()}, Timeout: 2 * time.Second, Cache: cache}
	st, err := store.OpenBolt(filepath.Join(b.TempDir(), "state.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	mgr := &mtasts.Manager{
		Store:   st,
		Log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		Fetcher: fixedFetcher{"version: STSv1\nmode: enforce\nmax_age: 86400\nmx: mx.bench.test\n"},
		LookupTXT: mtasts.TXTLookup(func(ctx context.Context, name string) ([]string, error) {
			res, err := r.LookupTXT(ctx, name)
			return res.Records, err
		}),
	}
	return &enforcement.Engine{DNS: r, STS: mgr}
}

// BenchmarkEngineResolve measures the route of one domain (MX, A, AAAA,
// TLSA, the MTA-STS TXT record and the cached policy) once the policy is
// stored, without and with the DNS cache.
func BenchmarkEngineResolve(b *testing.B) {
	for _, bc := range []struct {
		name  string
		cache func() *resolver.Cache
	}{
		{name: "dns-cache=off", cache: func() *resolver.Cache { return nil }},
		{name: "dns-cache=on", cache: func() *resolver.Cache { return resolver.NewCache(resolver.CacheOptions{}) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			e := benchEngine(b, bc.cache())
			ctx := context.Background()
			if _, err := e.Resolve(ctx, "bench.test"); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := e.Resolve(ctx, "bench.test"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
