package resolver_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"sealgate/enforcement/resolver"
	"sealgate/enforcement/resolver/dnstest"
)

// noShuffle keeps MX hosts of equal preference in the server's order.
func noShuffle(int, func(i, j int)) {}

// reverseShuffle reverses each run of equal preference.
func reverseShuffle(n int, swap func(i, j int)) {
	for i := range n / 2 {
		swap(i, n-1-i)
	}
}

func newResolver(servers ...string) *resolver.Resolver {
	return &resolver.Resolver{Servers: servers, Timeout: 2 * time.Second, Shuffle: noShuffle}
}

// newZone starts a fake server holding records.
func newZone(t testing.TB, records ...string) *dnstest.Server {
	t.Helper()
	s := dnstest.NewServer(t)
	if len(records) > 0 {
		s.Add(records...)
	}
	return s
}

// checkErr compares err with the wanted sentinel and text; a nil wantErr
// wants no error.
func checkErr(t *testing.T, err, wantErr error, wantText string) {
	t.Helper()
	if wantErr == nil {
		if err != nil {
			t.Fatalf("unexpected error: %v", err)
		}
		return
	}
	if !errors.Is(err, wantErr) {
		t.Fatalf("error = %v, want one wrapping %v", err, wantErr)
	}
	if wantText != "" && !strings.Contains(err.Error(), wantText) {
		t.Errorf("error text = %q, want it to contain %q", err.Error(), wantText)
	}
}
