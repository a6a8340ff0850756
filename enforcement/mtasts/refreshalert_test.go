package mtasts

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestRefreshFailureAlerts: "MTAs SHOULD alert administrators (through the
// use of logs or similar) when such attempts fail" (RFC 8461 §3.3, of the
// proactive refresh): a refresh whose TXT lookup or policy fetch fails logs
// a warning naming the domain and the cause, and the cached policy stays
// in force.
func TestRefreshFailureAlerts(t *testing.T) {
	tests := []struct {
		name     string
		sabotage func(n *fakeNet)
		want     []string
	}{
		{
			name:     "policy host down",
			sabotage: func(n *fakeNet) { n.mu.Lock(); n.down = true; n.mu.Unlock() },
			want:     []string{"level=WARN", "MTA-STS refresh failed; cached policy kept", "domain=example.test", "connection refused"},
		},
		{
			name:     "TXT lookup fails",
			sabotage: func(n *fakeNet) { n.mu.Lock(); n.txtErr = errors.New("SERVFAIL"); n.mu.Unlock() },
			want:     []string{"level=WARN", "MTA-STS refresh: TXT lookup failed; cached policy kept", "domain=example.test", "SERVFAIL"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m, n, c, _ := newManager(t)
			var buf bytes.Buffer
			m.Log = slog.New(slog.NewTextHandler(&buf, nil))
			ctx := context.Background()
			n.set("example.test", "1", enforceBody)
			if l, err := m.Policy(ctx, "example.test"); err != nil || l.Status != StatusFetched {
				t.Fatalf("first contact: %+v, %v", l, err)
			}
			tc.sabotage(n)
			c.t = c.t.Add(23*time.Hour + 30*time.Minute) // within the last day of max_age
			if got, err := m.RefreshDue(ctx, 24*time.Hour); err != nil || got != 0 {
				t.Fatalf("RefreshDue = %d, %v; want 0 refreshed, no error", got, err)
			}
			out := buf.String()
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("log %q lacks %q", out, w)
				}
			}
			n.mu.Lock()
			n.txtErr, n.down = nil, true // only the cache can answer now
			n.mu.Unlock()
			if l, _ := m.Policy(ctx, "example.test"); l.Policy == nil || l.Policy.Mode != ModeEnforce {
				t.Fatalf("the cached policy is gone after a failed refresh: %+v", l)
			}
		})
	}
}
