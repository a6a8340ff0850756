package mtasts

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"
)

// TestFetchUsesNoHTTPCache: "HTTP caching (as specified in [RFC7234]) MUST
// NOT be used" for policies (RFC 8461 §3.3). A policy host that marks its
// answer cacheable for a day, with validators, still gets every fetch,
// without conditional headers, and a later fetch returns the new body; a
// 304 Not Modified is not a policy.
func TestFetchUsesNoHTTPCache(t *testing.T) {
	ca := newTestCA(t)
	const testingPolicy = "version: STSv1\nmode: testing\nmx: mail.example.com\nmax_age: 86400\n"
	var (
		mu       sync.Mutex
		body     = rfcPolicy
		status   = http.StatusOK
		requests []http.Header
	)
	port := startPolicyServer(t, ca.issue(t, "mta-sts.example.test"), func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		requests = append(requests, r.Header.Clone())
		w.Header().Set("Cache-Control", "public, max-age=86400, immutable")
		w.Header().Set("Expires", time.Now().Add(24*time.Hour).UTC().Format(http.TimeFormat))
		w.Header().Set("ETag", `"policy-1"`)
		w.Header().Set("Last-Modified", time.Now().Add(-time.Hour).UTC().Format(http.TimeFormat))
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(status)
		if status == http.StatusOK {
			_, _ = w.Write([]byte(body))
		}
	})
	f := &Fetcher{LookupAddrs: loopbackLookup(localhost), Roots: ca.pool, Port: port, Timeout: 5 * time.Second}
	set := func(b string, s int) {
		mu.Lock()
		body, status = b, s
		mu.Unlock()
	}

	tests := []struct {
		name     string
		body     string
		status   int
		wantMode Mode  // when the fetch succeeds
		wantErr  error // otherwise, for errors.Is
	}{
		{name: "first fetch", body: rfcPolicy, status: http.StatusOK, wantMode: ModeEnforce},
		{name: "the changed body, although the first was cacheable", body: testingPolicy, status: http.StatusOK, wantMode: ModeTesting},
		{name: "304 Not Modified is no policy (refused as any 3xx)", status: http.StatusNotModified, wantErr: ErrRedirect},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			set(tc.body, tc.status)
			p, err := f.Fetch(context.Background(), testDomain)
			switch {
			case tc.wantErr != nil && !errors.Is(err, tc.wantErr):
				t.Fatalf("Fetch error = %v, want %v", err, tc.wantErr)
			case tc.wantErr == nil && (err != nil || p.Mode != tc.wantMode):
				t.Fatalf("Fetch = %+v, %v; want mode %v", p, err, tc.wantMode)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(requests) != i+1 {
				t.Fatalf("the policy host saw %d requests after %d fetches: an answer came from a cache", len(requests), i+1)
			}
			for _, h := range []string{"If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since", "If-Range"} {
				if v := requests[i].Get(h); v != "" {
					t.Errorf("conditional request header %s: %q", h, v)
				}
			}
		})
	}
}
