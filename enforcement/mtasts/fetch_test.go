package mtasts

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"net/netip"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const testDomain = "example.test"

func servePolicy(contentType, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", contentType)
		_, _ = w.Write([]byte(body))
	}
}

func TestFetch(t *testing.T) {
	ca := newTestCA(t)
	goodCert := ca.issue(t, "mta-sts.example.test")
	// A policy of exactly DefaultMaxBody bytes, padded with an extension.
	pad := "x: " + strings.Repeat("a", DefaultMaxBody-len(rfcPolicy)-len("\nx: \n")) + "\n"
	maxPolicy := rfcPolicy + "\n" + pad
	if len(maxPolicy) != DefaultMaxBody {
		t.Fatalf("padded policy is %d bytes", len(maxPolicy))
	}

	tests := []struct {
		name     string
		handler  http.HandlerFunc
		cert     *tls.Certificate // nil: goodCert
		setup    func(f *Fetcher) // changes to the fetcher
		want     *Policy
		wantKind ErrorKind
		wantErr  error // for errors.Is, optional
	}{
		{
			name: "success",
			handler: func(w http.ResponseWriter, r *http.Request) {
				if r.Host != "mta-sts.example.test" || r.URL.Path != "/.well-known/mta-sts.txt" ||
					r.TLS == nil || r.TLS.ServerName != "mta-sts.example.test" || r.Method != http.MethodGet {
					http.Error(w, "wrong request", http.StatusBadRequest)
					return
				}
				w.Header().Set("Content-Type", "text/plain; charset=utf-8")
				_, _ = w.Write([]byte(rfcPolicy))
			},
			want: rfcParsed,
		},
		{name: "CRLF policy, upper-case media type", handler: servePolicy("Text/Plain", strings.ReplaceAll(rfcPolicy, "\n", "\r\n")), want: rfcParsed},
		{name: "body of exactly the limit", handler: servePolicy("text/plain", maxPolicy), want: rfcParsed},
		{
			name:    "second address used when the first refuses",
			handler: servePolicy("text/plain", rfcPolicy),
			setup: func(f *Fetcher) {
				f.LookupAddrs = loopbackLookup(netip.MustParseAddr("127.0.0.2"), localhost)
			},
			want: rfcParsed,
		},
		{
			name: "redirect refused",
			handler: func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/.well-known/mta-sts.txt" {
					t.Errorf("redirect followed to %s", r.URL.Path)
				}
				http.Redirect(w, r, "/elsewhere.txt", http.StatusFound)
			},
			wantKind: KindFetch, wantErr: ErrRedirect,
		},
		{name: "not found", handler: http.NotFound, wantKind: KindFetch, wantErr: ErrHTTPStatus},
		{
			name:     "204 no content",
			handler:  func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) },
			wantKind: KindFetch, wantErr: ErrHTTPStatus,
		},
		{name: "wrong content type", handler: servePolicy("text/html", rfcPolicy), wantKind: KindInvalid, wantErr: ErrContentType},
		{name: "text/plainx", handler: servePolicy("text/plainx", rfcPolicy), wantKind: KindInvalid, wantErr: ErrContentType},
		{
			name: "no content type",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header()["Content-Type"] = nil // no sniffing
				_, _ = w.Write([]byte(rfcPolicy))
			},
			wantKind: KindInvalid, wantErr: ErrContentType,
		},
		{name: "oversize body with length", handler: servePolicy("text/plain", maxPolicy+"\n"), wantKind: KindInvalid, wantErr: ErrBodyTooLarge},
		{
			name: "oversize chunked body",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/plain")
				for range 20 {
					_, _ = w.Write([]byte(strings.Repeat("x", 4096)))
					w.(http.Flusher).Flush()
				}
			},
			wantKind: KindInvalid, wantErr: ErrBodyTooLarge,
		},
		{
			name:     "smaller MaxBody",
			handler:  servePolicy("text/plain", rfcPolicy),
			setup:    func(f *Fetcher) { f.MaxBody = 64 },
			wantKind: KindInvalid, wantErr: ErrBodyTooLarge,
		},
		{name: "invalid policy", handler: servePolicy("text/plain", "version: STSv1\nmode: enforce\nmax_age: 1\n"), wantKind: KindInvalid, wantErr: ErrInvalidPolicy},
		{
			name: "slow body hits the timeout",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/plain")
				w.Header().Set("Content-Length", strconv.Itoa(len(rfcPolicy)))
				_, _ = w.Write([]byte(rfcPolicy[:10]))
				w.(http.Flusher).Flush()
				stallThenAbort(r)
			},
			setup:    func(f *Fetcher) { f.Timeout = 300 * time.Millisecond },
			wantKind: KindFetch, wantErr: context.DeadlineExceeded,
		},
		{
			name:     "slow headers hit the timeout",
			handler:  func(w http.ResponseWriter, r *http.Request) { stallThenAbort(r) },
			setup:    func(f *Fetcher) { f.Timeout = 300 * time.Millisecond },
			wantKind: KindFetch, wantErr: context.DeadlineExceeded,
		},
		{name: "certificate for the wrong name", handler: servePolicy("text/plain", rfcPolicy), cert: ptr(ca.issue(t, "www.example.test")), wantKind: KindWebPKI},
		{name: "certificate for the policy domain only", handler: servePolicy("text/plain", rfcPolicy), cert: ptr(ca.issue(t, "example.test")), wantKind: KindWebPKI},
		{name: "untrusted CA", handler: servePolicy("text/plain", rfcPolicy), cert: ptr(newTestCA(t).issue(t, "mta-sts.example.test")), wantKind: KindWebPKI},
		{
			name:     "expired certificate",
			handler:  servePolicy("text/plain", rfcPolicy),
			setup:    func(f *Fetcher) { f.Now = func() time.Time { return time.Now().Add(2 * time.Hour) } },
			wantKind: KindWebPKI,
		},
		{
			name:    "lookup fails",
			handler: servePolicy("text/plain", rfcPolicy),
			setup: func(f *Fetcher) {
				f.LookupAddrs = func(context.Context, string) ([]netip.Addr, error) { return nil, errors.New("servfail") }
			},
			wantKind: KindFetch,
		},
		{
			name:     "no addresses",
			handler:  servePolicy("text/plain", rfcPolicy),
			setup:    func(f *Fetcher) { f.LookupAddrs = loopbackLookup() },
			wantKind: KindFetch, wantErr: ErrNoAddress,
		},
		{
			name:     "no lookup configured",
			handler:  servePolicy("text/plain", rfcPolicy),
			setup:    func(f *Fetcher) { f.LookupAddrs = nil },
			wantKind: KindFetch, wantErr: ErrNoLookup,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cert := goodCert
			if tc.cert != nil {
				cert = *tc.cert
			}
			port := startPolicyServer(t, cert, tc.handler)
			f := &Fetcher{LookupAddrs: loopbackLookup(localhost), Roots: ca.pool, Port: port, Timeout: 5 * time.Second}
			if tc.setup != nil {
				tc.setup(f)
			}
			got, err := f.Fetch(context.Background(), testDomain)
			if tc.want != nil {
				if err != nil {
					t.Fatalf("Fetch: %v", err)
				}
				if !reflect.DeepEqual(got, tc.want) {
					t.Fatalf("Fetch = %+v, want %+v", got, tc.want)
				}
				return
			}
			var fe *FetchError
			if !errors.As(err, &fe) {
				t.Fatalf("Fetch = %+v, %v; want a *FetchError", got, err)
			}
			if fe.Kind != tc.wantKind || fe.Domain != testDomain {
				t.Errorf("error kind %v domain %q, want %v %q (%v)", fe.Kind, fe.Domain, tc.wantKind, testDomain, err)
			}
			if tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Errorf("error %v is not %v", err, tc.wantErr)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }

// stallThenAbort holds a request until the client gives up (or 10s pass)
// and then drops the connection without completing the response. A
// handler that returned instead would send its response (a 200 with an
// empty body) as the client's TLS close_notify arrives, and net/http
// hands a client a response that races its own cancellation: the fetch
// would then fail on that response, not on the timeout under test.
func stallThenAbort(r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-time.After(10 * time.Second):
	}
	panic(http.ErrAbortHandler)
}

func TestFetchInvalidDomain(t *testing.T) {
	f := &Fetcher{LookupAddrs: func(context.Context, string) ([]netip.Addr, error) {
		t.Error("lookup called for an invalid domain")
		return nil, nil
	}}
	for _, d := range []string{"", "evil.test/#", "a b.test", "user@evil.test", "evil.test:8443"} {
		t.Run(d, func(t *testing.T) {
			_, err := f.Fetch(context.Background(), d)
			var fe *FetchError
			if !errors.Is(err, ErrInvalidDomain) || !errors.As(err, &fe) || fe.Kind != KindFetch {
				t.Fatalf("Fetch(%q) error = %v, want ErrInvalidDomain of kind fetch", d, err)
			}
		})
	}
}

func TestFetchSingleflight(t *testing.T) {
	ca := newTestCA(t)
	var hits atomic.Int32
	started := make(chan struct{})
	release := make(chan struct{})
	port := startPolicyServer(t, ca.issue(t, "mta-sts.example.test"), func(w http.ResponseWriter, r *http.Request) {
		if hits.Add(1) == 1 {
			close(started)
		}
		<-release
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte(rfcPolicy))
	})
	f := &Fetcher{LookupAddrs: loopbackLookup(localhost), Roots: ca.pool, Port: port, Timeout: 5 * time.Second}

	const callers = 8
	results := make([]*Policy, callers)
	errs := make([]error, callers)
	waiting := make([]*waitingContext, callers)
	var wg sync.WaitGroup
	fetch := func(i int, domain string) {
		defer wg.Done()
		results[i], errs[i] = f.Fetch(waiting[i], domain)
	}
	for i := range callers {
		waiting[i] = newWaitingContext(context.Background())
	}
	wg.Add(1)
	go fetch(0, testDomain)
	<-started // the first fetch is in flight and held by the server
	for i := 1; i < callers; i++ {
		wg.Add(1)
		domain := testDomain
		if i%2 == 0 {
			domain = "Example.TEST." // same domain, other spelling
		}
		go fetch(i, domain)
	}
	for i := 1; i < callers; i++ {
		<-waiting[i].waiting // caller i has joined the flight
	}
	close(release)
	wg.Wait()

	if n := hits.Load(); n != 1 {
		t.Fatalf("server saw %d requests for %d concurrent fetches, want 1", n, callers)
	}
	for i := range callers {
		if errs[i] != nil || !reflect.DeepEqual(results[i], rfcParsed) {
			t.Fatalf("caller %d: %+v, %v", i, results[i], errs[i])
		}
	}
	results[0].MX[0] = "changed.example"
	if results[1].MX[0] != "mail.example.com" {
		t.Fatal("callers share one Policy value")
	}

	// Once the flight is over, a new fetch goes to the server again.
	if _, err := f.Fetch(context.Background(), testDomain); err != nil {
		t.Fatal(err)
	}
	if n := hits.Load(); n != 2 {
		t.Fatalf("server saw %d requests after a later fetch, want 2", n)
	}
}

// waitingContext is a caller's context that tells when Fetch waits on
// it: Fetch asks for Done only once its call has joined the shared
// request, to wait for that request or for the caller to give up.
type waitingContext struct {
	context.Context
	once    sync.Once
	waiting chan struct{} // closed at the first call of Done
}

func newWaitingContext(parent context.Context) *waitingContext {
	return &waitingContext{Context: parent, waiting: make(chan struct{})}
}

func (c *waitingContext) Done() <-chan struct{} {
	c.once.Do(func() { close(c.waiting) })
	return c.Context.Done()
}

// A caller that gives up does not cancel the fetch other callers wait for.
func TestFetchCallerCancel(t *testing.T) {
	ca := newTestCA(t)
	started := make(chan struct{})
	var once sync.Once
	release := make(chan struct{})
	port := startPolicyServer(t, ca.issue(t, "mta-sts.example.test"), func(w http.ResponseWriter, r *http.Request) {
		// Once: net/http may send a request again on a new
		// connection; a second close would panic the handler.
		once.Do(func() { close(started) })
		<-release
		w.Header().Set("Content-Type", "text/plain")
		_, _ = w.Write([]byte(rfcPolicy))
	})
	f := &Fetcher{LookupAddrs: loopbackLookup(localhost), Roots: ca.pool, Port: port, Timeout: 5 * time.Second}

	ctx, cancel := context.WithCancel(context.Background())
	firstErr := make(chan error, 1)
	go func() {
		_, err := f.Fetch(ctx, testDomain)
		firstErr <- err
	}()
	<-started
	second := make(chan error, 1)
	go func() {
		_, err := f.Fetch(context.Background(), testDomain)
		second <- err
	}()
	cancel()
	err := <-firstErr
	var fe *FetchError
	if !errors.Is(err, context.Canceled) || !errors.As(err, &fe) || fe.Kind != KindFetch {
		t.Fatalf("cancelled caller got %v, want context.Canceled of kind fetch", err)
	}
	close(release)
	if err := <-second; err != nil {
		t.Fatalf("the other caller failed after the first gave up: %v", err)
	}
}

func TestErrorKindString(t *testing.T) {
	tests := []struct {
		kind ErrorKind
		want string
	}{
		{kind: KindFetch, want: "sts-policy-fetch-error"},
		{kind: KindInvalid, want: "sts-policy-invalid"},
		{kind: KindWebPKI, want: "sts-webpki-invalid"},
		{kind: 0, want: "unknown(0)"},
	}
	for _, tc := range tests {
		if got := tc.kind.String(); got != tc.want {
			t.Errorf("ErrorKind(%d).String() = %q, want %q", int(tc.kind), got, tc.want)
		}
	}
}

func TestPolicyURL(t *testing.T) {
	if got, want := PolicyURL("example.test."), "https://mta-sts.example.test/.well-known/mta-sts.txt"; got != want {
		t.Fatalf("PolicyURL = %q, want %q", got, want)
	}
}
