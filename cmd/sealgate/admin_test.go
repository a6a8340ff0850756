package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"sealgate/enforcement"
	"sealgate/enforcement/mtasts"
	"sealgate/enforcement/store"
)

// fakeFetcher returns a policy, or an error.
type fakeFetcher struct {
	err error
}

func (f fakeFetcher) Fetch(ctx context.Context, domain string) (*mtasts.Policy, error) {
	if f.err != nil {
		return nil, &mtasts.FetchError{Domain: domain, Kind: mtasts.KindFetch, Err: f.err}
	}
	return mtasts.ParsePolicy([]byte("version: STSv1\r\nmode: enforce\r\nmx: mx." + domain + "\r\nmax_age: 86400\r\n"))
}

// failingPut is a store whose writes fail.
type failingPut struct{ store.Store }

func (failingPut) PutPolicy(context.Context, *store.CachedPolicy) error {
	return errors.New("disk full")
}

// TestAdminStatus: the admin API picks its HTTP status by the kind of
// error, never by its text: a missing policy is 404, a failure at the
// domain's DNS or policy host 502, our own store failing 500, whatever
// the domain's name says. The client gets the same errors back.
func TestAdminStatus(t *testing.T) {
	tests := []struct {
		name     string
		method   string
		path     string
		txt      func(domain string) ([]string, error)
		fetchErr error
		putFails bool
		closed   bool // the store is closed
		want     int
		wantIs   error // what the client's error is
	}{
		{name: "no cached policy", method: http.MethodGet, path: "/mtasts/none.test", want: http.StatusNotFound, wantIs: store.ErrNotFound},
		{name: "cached policy", method: http.MethodGet, path: "/mtasts/cached.test", want: http.StatusOK},
		{name: "refresh", method: http.MethodPost, path: "/mtasts/ok.test/refresh", want: http.StatusOK},
		{name: "TXT lookup fails for a domain named store", method: http.MethodPost, path: "/mtasts/store.test/refresh",
			txt:  func(string) ([]string, error) { return nil, fmt.Errorf("SERVFAIL: %w", enforcement.ErrDNSTemporary) },
			want: http.StatusBadGateway, wantIs: errPolicySource},
		{name: "no TXT record", method: http.MethodPost, path: "/mtasts/none.test/refresh",
			txt: func(string) ([]string, error) { return nil, nil }, want: http.StatusBadGateway, wantIs: errPolicySource},
		{name: "fetch fails for a domain named store", method: http.MethodPost, path: "/mtasts/mystore.test/refresh",
			fetchErr: errors.New("connection refused"), want: http.StatusBadGateway, wantIs: errPolicySource},
		{name: "storing the fetched policy fails", method: http.MethodPost, path: "/mtasts/ok.test/refresh",
			putFails: true, want: http.StatusInternalServerError},
		{name: "store closed", method: http.MethodGet, path: "/mtasts", closed: true, want: http.StatusInternalServerError},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bolt, err := store.OpenBolt(filepath.Join(t.TempDir(), "sealgate.db"))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { bolt.Close() })
			ctx := context.Background()
			if err := bolt.PutPolicy(ctx, &store.CachedPolicy{Domain: "cached.test", ID: "1", Policy: "version: STSv1\nmode: testing\nmx: mx.cached.test\nmax_age: 86400\n",
				FetchedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
				t.Fatal(err)
			}
			var st store.Store = bolt
			if tc.putFails {
				st = failingPut{bolt}
			}
			txt := tc.txt
			if txt == nil {
				txt = func(string) ([]string, error) { return []string{"v=STSv1; id=1"}, nil }
			}
			mgr := &mtasts.Manager{Store: st, Fetcher: fakeFetcher{err: tc.fetchErr},
				LookupTXT: func(_ context.Context, name string) ([]string, error) { return txt(name) },
				Log:       slog.New(slog.NewTextHandler(io.Discard, nil))}
			if tc.closed {
				bolt.Close()
			}
			srv := httptest.NewServer(adminHandler(stsOps{st: st, mgr: mgr}, promhttp.Handler(), testStatusPage(stsOps{st: st, mgr: mgr}), slog.New(slog.NewTextHandler(io.Discard, nil))))
			t.Cleanup(srv.Close)
			req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("%s %s: status %d, want %d: %s", tc.method, tc.path, resp.StatusCode, tc.want, body)
			}
			if tc.want == http.StatusOK {
				return
			}
			verb, domain := "show", ""
			switch {
			case tc.path == "/mtasts":
				verb = "list"
			case strings.HasSuffix(tc.path, "/refresh"):
				verb, domain = "refresh", strings.TrimSuffix(strings.TrimPrefix(tc.path, "/mtasts/"), "/refresh")
			default:
				domain = strings.TrimPrefix(tc.path, "/mtasts/")
			}
			_, err = viaAdmin(ctx, strings.TrimPrefix(srv.URL, "http://"), verb, domain)
			var ae *adminError
			if !errors.As(err, &ae) || ae.Status != tc.want {
				t.Fatalf("client error %v, want one with status %d", err, tc.want)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("client error %v is not %v", err, tc.wantIs)
			}
			if isNotRunning(err) {
				t.Errorf("an answer of the gateway taken for no gateway: %v", err)
			}
		})
	}
}

// TestIsNotRunning: only a refused connection means that no gateway
// runs (then the command opens the store itself); a gateway that answers
// with an error, or does not answer in time, is running.
func TestIsNotRunning(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, refused := viaAdmin(context.Background(), addr, "list", "")
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{name: "connection refused", err: refused, want: true},
		{name: "answered with an error", err: &adminError{Status: http.StatusInternalServerError, Msg: "store: closed"}},
		{name: "timed out", err: &net.OpError{Op: "dial", Net: "tcp", Err: context.DeadlineExceeded}},
		{name: "no error", err: nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := isNotRunning(tc.err); got != tc.want {
				t.Errorf("isNotRunning(%v) = %v, want %v", tc.err, got, tc.want)
			}
		})
	}
}

func TestChangesOnlyFromLoopback(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	h := adminGuard("gw.example.test", nil)(ok)
	tests := []struct {
		method, remote string
		want           int
	}{
		{http.MethodDelete, "10.1.2.3:4000", http.StatusForbidden},
		{http.MethodPost, "[2001:db8::1]:4000", http.StatusForbidden},
		{http.MethodPost, "[::ffff:10.1.2.3]:4000", http.StatusForbidden},
		{http.MethodDelete, "127.0.0.1:4000", http.StatusOK},
		{http.MethodPost, "[::1]:4000", http.StatusOK},
		{http.MethodGet, "10.1.2.3:4000", http.StatusOK},
		{http.MethodPost, "not an address", http.StatusForbidden},
	}
	for _, tc := range tests {
		r := httptest.NewRequest(tc.method, "/mtasts/example.test", nil)
		r.RemoteAddr = tc.remote
		r.Host = "127.0.0.1:9025"
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tc.want {
			t.Errorf("%s from %s: %d, want %d", tc.method, tc.remote, w.Code, tc.want)
		}
	}
}

// TestAdminRefusesOtherSites: a web page of another site, opened by a
// browser on the gateway's host or inside its network, can neither post
// to the admin endpoint (the browser sends Origin, sealgate's commands do
// not) nor read the status page through a name it points at the gateway
// (DNS rebinding: the Host is that name). Probes and scrapers are served
// whatever their Host.
func TestAdminRefusesOtherSites(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	h := adminGuard("gw.example.test", []string{"sealgate-admin.mail.svc", " Other.Name.test. "})(ok)
	tests := []struct {
		method, path, host, origin string
		want                       int
	}{
		{method: "POST", path: "/tlsrpt/send", host: "127.0.0.1:9025", origin: "http://rebound.evil.test", want: http.StatusForbidden},
		{method: "POST", path: "/mtasts/example.test/refresh", host: "127.0.0.1:9025", origin: "null", want: http.StatusForbidden},
		{method: "DELETE", path: "/mtasts/example.test", host: "localhost:9025", origin: "http://localhost:9025", want: http.StatusForbidden},
		{method: "POST", path: "/tlsrpt/send", host: "127.0.0.1:9025", want: http.StatusOK},
		{method: "GET", path: "/status.json", host: "rebound.evil.test:9025", want: http.StatusMisdirectedRequest},
		{method: "GET", path: "/", host: "rebound.evil.test", want: http.StatusMisdirectedRequest},
		{method: "POST", path: "/mtasts/example.test/refresh", host: "rebound.evil.test:9025", want: http.StatusMisdirectedRequest},
		{method: "GET", path: "/status.json", host: "127.0.0.1:9025", want: http.StatusOK},
		{method: "GET", path: "/status.json", host: "[::1]:9025", want: http.StatusOK},
		{method: "GET", path: "/", host: "localhost:9025", want: http.StatusOK},
		{method: "GET", path: "/", host: "GW.example.test.", want: http.StatusOK},
		{method: "GET", path: "/", host: "sealgate-admin.mail.svc:9025", want: http.StatusOK},
		{method: "GET", path: "/", host: "other.name.test", want: http.StatusOK},
		{method: "GET", path: "/metrics", host: "sealgate-admin.mail.svc.cluster.local:9025", want: http.StatusOK},
		{method: "GET", path: "/healthz", host: "anything.test", want: http.StatusOK},
		{method: "GET", path: "/readyz", host: "anything.test", want: http.StatusOK},
	}
	for _, tc := range tests {
		r := httptest.NewRequest(tc.method, tc.path, nil)
		r.RemoteAddr = "127.0.0.1:40000"
		r.Host = tc.host
		if tc.origin != "" {
			r.Header.Set("Origin", tc.origin)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tc.want {
			t.Errorf("%s %s Host %q Origin %q: %d, want %d", tc.method, tc.path, tc.host, tc.origin, w.Code, tc.want)
		}
	}
}
