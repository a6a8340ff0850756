package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"sealgate/enforcement"
	"sealgate/enforcement/dnsname"
	"sealgate/enforcement/mtasts"
	"sealgate/enforcement/store"
)

// policyView is the JSON form of a cached MTA-STS policy.
type policyView struct {
	Domain    string    `json:"domain"`
	ID        string    `json:"id"`
	Mode      string    `json:"mode,omitempty"`
	MaxAge    string    `json:"max_age,omitempty"`
	MX        []string  `json:"mx,omitempty"`
	FetchedAt time.Time `json:"fetched_at"`
	ExpiresAt time.Time `json:"expires_at"`
	Expired   bool      `json:"expired"`
	Policy    string    `json:"policy"`
}

func viewOf(c *store.CachedPolicy, now time.Time) policyView {
	v := policyView{Domain: c.Domain, ID: c.ID, FetchedAt: c.FetchedAt, ExpiresAt: c.ExpiresAt, Policy: c.Policy,
		Expired: !c.ExpiresAt.IsZero() && !now.Before(c.ExpiresAt)}
	if p, err := mtasts.ParsePolicy([]byte(c.Policy)); err == nil {
		v.Mode, v.MaxAge, v.MX = p.Mode.String(), p.MaxAge.String(), p.MX
	}
	return v
}

// stsOps are the operator's MTA-STS cache operations, run either inside
// the server (admin API) or directly on the store when no server runs.
type stsOps struct {
	st  store.Store
	mgr *mtasts.Manager
}

func (o stsOps) list(ctx context.Context) ([]policyView, error) {
	all, err := o.st.ListPolicies(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]policyView, 0, len(all))
	for _, c := range all {
		out = append(out, viewOf(c, time.Now()))
	}
	return out, nil
}

func (o stsOps) show(ctx context.Context, domain string) (policyView, error) {
	c, err := o.st.GetPolicy(ctx, domain)
	if err != nil {
		return policyView{}, err
	}
	return viewOf(c, time.Now()), nil
}

func (o stsOps) refresh(ctx context.Context, domain string) (policyView, error) {
	if _, err := o.mgr.Refresh(ctx, domain); err != nil {
		if fromPolicySource(err) {
			err = &sourceError{err}
		}
		return policyView{}, err
	}
	return o.show(ctx, domain)
}

// errPolicySource marks a failure at the domain's side: its TXT record
// (missing, malformed, DNS failing) or its policy host.
var errPolicySource = errors.New("MTA-STS policy source failed")

// sourceError is a failure at the domain's side; its text is the cause's.
type sourceError struct{ err error }

func (e *sourceError) Error() string   { return e.err.Error() }
func (e *sourceError) Unwrap() []error { return []error{errPolicySource, e.err} }

// fromPolicySource reports whether an error of Manager.Refresh arose at
// the domain's side rather than in our store.
func fromPolicySource(err error) bool {
	var fe *mtasts.FetchError
	return errors.As(err, &fe) ||
		errors.Is(err, mtasts.ErrNoRecord) ||
		errors.Is(err, mtasts.ErrMultipleRecords) ||
		errors.Is(err, mtasts.ErrInvalidRecord) ||
		errors.Is(err, enforcement.ErrDNSTemporary) ||
		errors.Is(err, enforcement.ErrNotFound)
}

// httpStatuses maps the errors of the admin API to HTTP statuses, both
// ways: the server answers with the status, the client (adminError) turns
// it back into the error for errors.Is. Any other error is 500.
var httpStatuses = []struct {
	status int
	err    error
}{
	{http.StatusNotFound, store.ErrNotFound},
	{http.StatusBadRequest, store.ErrInvalid},
	{http.StatusBadGateway, errPolicySource},
}

// statusOf returns the HTTP status that answers err.
func statusOf(err error) int {
	for _, s := range httpStatuses {
		if errors.Is(err, s.err) {
			return s.status
		}
	}
	return http.StatusInternalServerError
}

// adminCall is the client side of the admin API: it sends one request and
// returns the body of a 200 answer (at most limit bytes), or the answer as
// an *adminError.
func adminCall(ctx context.Context, method, url string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct{ Error string }
		json.Unmarshal(body, &e)
		return nil, &adminError{Status: resp.StatusCode, Msg: e.Error}
	}
	return body, nil
}

// adminError is an error answer of the admin API as the client sees it.
type adminError struct {
	Status int
	Msg    string
}

func (e *adminError) Error() string {
	if e.Msg == "" {
		return "admin API: " + strconv.Itoa(e.Status) + " " + http.StatusText(e.Status)
	}
	return e.Msg
}

// Is makes the answer match the error that the server mapped to its
// status.
func (e *adminError) Is(target error) bool {
	for _, s := range httpStatuses {
		if s.status == e.Status && s.err == target {
			return true
		}
	}
	return false
}

// purge deletes the cached policy, through the Manager when there is one
// so that its memory forgets it too.
func (o stsOps) purge(ctx context.Context, domain string) error {
	if o.mgr != nil {
		return o.mgr.Purge(ctx, domain)
	}
	return o.st.DeletePolicy(ctx, domain)
}

// adminGuard keeps the admin endpoint from serving web pages of other
// sites and from taking orders from them:
//
//   - A request that changes state (any method but GET and HEAD: purging
//     or refreshing a cached MTA-STS policy, sending reports) is refused
//     (403) unless it comes from loopback, and unless it carries no Origin
//     header. The listener may be opened to probes and scrapers (a pod's
//     kubelet, Prometheus); whoever can reach it must not be able to purge
//     the policy that stops a downgrade. sealgate's own commands send no
//     Origin; a browser always does, so a page on any site that a browser
//     on the gateway's host opens cannot post to it.
//   - Everything but /metrics, /healthz and /readyz (the status page, its
//     JSON, the MTA-STS cache) is served only to a Host that is an IP
//     address, localhost, SEALGATE_HOSTNAME or one of SEALGATE_ADMIN_HOSTS
//     (421 otherwise): a site whose name an attacker points at the
//     gateway's address (DNS rebinding) cannot read recipient domains and
//     MX replies through a browser inside the network.
func adminGuard(hostname string, hosts []string) func(http.Handler) http.Handler {
	allowed := map[string]bool{"localhost": true, dnsname.Normalize(hostname): true}
	for _, h := range hosts {
		allowed[dnsname.Normalize(strings.TrimSpace(h))] = true
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/metrics", "/healthz", "/readyz":
			default:
				host := r.Host
				if h, _, err := net.SplitHostPort(host); err == nil {
					host = h
				}
				host = dnsname.Normalize(strings.Trim(host, "[]"))
				if _, err := netip.ParseAddr(host); err != nil && host != "" && !allowed[host] {
					http.Error(w, `{"Error":"unknown host name; add it to SEALGATE_ADMIN_HOSTS"}`, http.StatusMisdirectedRequest)
					return
				}
			}
			if r.Method != http.MethodGet && r.Method != http.MethodHead {
				ap, err := netip.ParseAddrPort(r.RemoteAddr)
				if err != nil || !ap.Addr().Unmap().IsLoopback() {
					http.Error(w, `{"Error":"changes are accepted from loopback only"}`, http.StatusForbidden)
					return
				}
				if r.Header.Get("Origin") != "" {
					http.Error(w, `{"Error":"changes are not accepted from web pages"}`, http.StatusForbidden)
					return
				}
			}
			next.ServeHTTP(w, r)
		})
	}
}

// adminHandler serves /metrics, /healthz, /readyz, the status page (/
// and /status.json) and the MTA-STS cache API.
func adminHandler(ops stsOps, metrics http.Handler, status *statusPage, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", status.serveHTML)
	mux.HandleFunc("GET /status.json", status.serveJSON)
	mux.Handle("GET /metrics", metrics)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := ops.st.Ping(r.Context()); err != nil {
			http.Error(w, "state store: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	mux.HandleFunc("GET /mtasts", func(w http.ResponseWriter, r *http.Request) {
		v, err := ops.list(r.Context())
		reply(w, v, err)
	})
	mux.HandleFunc("GET /mtasts/{domain}", func(w http.ResponseWriter, r *http.Request) {
		v, err := ops.show(r.Context(), r.PathValue("domain"))
		reply(w, v, err)
	})
	mux.HandleFunc("POST /mtasts/{domain}/refresh", func(w http.ResponseWriter, r *http.Request) {
		v, err := ops.refresh(r.Context(), r.PathValue("domain"))
		if err == nil {
			log.Info("MTA-STS policy refreshed by operator", "domain", v.Domain, "id", v.ID)
		}
		reply(w, v, err)
	})
	mux.HandleFunc("DELETE /mtasts/{domain}", func(w http.ResponseWriter, r *http.Request) {
		d := r.PathValue("domain")
		err := ops.purge(r.Context(), d)
		if err == nil {
			log.Warn("MTA-STS policy purged by operator", "domain", d)
		}
		reply(w, map[string]string{"purged": d}, err)
	})
	return mux
}

func reply(w http.ResponseWriter, v any, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		w.WriteHeader(statusOf(err))
		json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
		return
	}
	json.NewEncoder(w).Encode(v)
}

// serveAdmin runs the admin endpoint until ctx ends.
func serveAdmin(ctx context.Context, addr string, h http.Handler, log *slog.Logger) (net.Listener, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, &configError{errors.New("SEALGATE_ADMIN_LISTEN: " + err.Error())}
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(l)
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	log.Info("admin endpoint listening", "addr", l.Addr().String())
	return l, nil
}
