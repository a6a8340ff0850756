package mtasts

import (
	"context"
	"io"
	"log/slog"
	"testing"

	"sealgate/enforcement/store"
	"sealgate/enforcement/store/storetest"
)

// BenchmarkManagerPolicy measures the lookup of a stored policy whose TXT
// id is current, the path of every message to an MTA-STS domain, with
// each store backend.
func BenchmarkManagerPolicy(b *testing.B) {
	for _, bc := range []struct {
		name  string
		store func(b *testing.B) store.Store
	}{
		{name: "store=bolt", store: func(b *testing.B) store.Store { return nil }},
		{name: "store=redis", store: func(b *testing.B) store.Store {
			st, err := store.OpenRedis(storetest.StartRedis(b))
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { st.Close() })
			return st
		}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			m, n, _, _ := newManager(b)
			if st := bc.store(b); st != nil {
				m.Store = st
			}
			m.Now = nil // the Redis store expires entries by the real clock
			m.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
			n.set("example.test", "1", enforceBody)
			ctx := context.Background()
			if _, err := m.Policy(ctx, "example.test"); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				l, err := m.Policy(ctx, "example.test")
				if err != nil || l.Status != StatusCached {
					b.Fatalf("%+v %v", l, err)
				}
			}
		})
	}
}
