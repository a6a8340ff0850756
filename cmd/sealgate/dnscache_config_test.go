package main

import "testing"

// TestResolverCacheSize: SEALGATE_DNS_CACHE_SIZE gives the resolver a
// cache, on by default, none for 0.
func TestResolverCacheSize(t *testing.T) {
	tests := []struct {
		name      string
		size      string // "": unset
		wantCache bool
	}{
		{name: "on by default", wantCache: true},
		{name: "a size", size: "50", wantCache: true},
		{name: "0 turns it off", size: "0"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"SEALGATE_HOSTNAME": "gw.example.test", "SEALGATE_DNS_RESOLVER": "127.0.0.1:53"}
			if tc.size != "" {
				env["SEALGATE_DNS_CACHE_SIZE"] = tc.size
			}
			cfg, err := parseConfig(env)
			if err != nil {
				t.Fatal(err)
			}
			r, err := newResolver(cfg)
			if err != nil {
				t.Fatal(err)
			}
			if (r.Cache != nil) != tc.wantCache {
				t.Fatalf("cache %v, want %v", r.Cache != nil, tc.wantCache)
			}
		})
	}
}
