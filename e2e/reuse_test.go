package e2e

import (
	"os"
	"path/filepath"
	"testing"

	"sealgate/upstream/upstreamtest"
)

// TestUpstreamReuse: messages to one destination share one verified
// upstream connection (RSET between them); SEALGATE_UPSTREAM_MAX_REUSE=1
// gives every message its own, and a domain under another requirement
// never gets a connection verified under a weaker one.
func TestUpstreamReuse(t *testing.T) {
	for _, tc := range []struct {
		name      string
		env       map[string]string
		wantConns int
	}{
		{"reuse", nil, 1},
		{"reuse off", map[string]string{"SEALGATE_UPSTREAM_MAX_REUSE": "1"}, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			mx := w.mx("example.test", "mx1.example.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx1.example.test")})
			g := w.start(tc.env)
			for i := range 3 {
				if res := g.send("a@legacy.sealgate.test", []string{"b@example.test"}, message("reuse")); res.Rcpt[0] != nil || res.Data != nil {
					t.Fatalf("message %d: %+v", i, res)
				}
			}
			if n := len(mx.Messages()); n != 3 {
				t.Fatalf("MX got %d messages", n)
			}
			if n := len(mx.Conns()); n != tc.wantConns {
				t.Fatalf("3 messages took %d MX connections, want %d", n, tc.wantConns)
			}
		})
	}
	t.Run("no reuse across requirements", func(t *testing.T) {
		w := newWorld(t)
		mx := w.mx("weak.test", "mx.shared.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx.shared.test")})
		// strong.test uses the same MX host under a local policy that
		// pins verification.
		w.dns.Add("strong.test. 300 IN MX 10 mx.shared.test.")
		policy := filepath.Join(t.TempDir(), "policy")
		if err := os.WriteFile(policy, []byte("strong.test verify\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		g := w.start(map[string]string{"SEALGATE_POLICY_FILE": policy})
		for _, d := range []string{"weak.test", "strong.test", "weak.test"} {
			if res := g.send("a@legacy.sealgate.test", []string{"b@" + d}, message(d)); res.Rcpt[0] != nil || res.Data != nil {
				t.Fatalf("%s: %+v", d, res)
			}
		}
		if n := len(mx.Conns()); n != 2 {
			t.Fatalf("3 messages under two requirements took %d connections, want 2 (one per requirement)", n)
		}
	})
}
