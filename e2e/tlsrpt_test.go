package e2e

import (
	"bytes"
	"compress/gzip"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"sealgate/certs/certstest"
	"sealgate/upstream/upstreamtest"
)

// tlsrptCmd runs "sealgate tlsrpt ARGS" against the gateway's admin API.
func (g *gateway) tlsrptCmd(t *testing.T, env map[string]string, args ...string) (string, string, int) {
	t.Helper()
	r := runTLSRPTCmd(g.adminAddr(), env, args...)
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.out, r.errs, r.code
}

// tlsrptRun is one run of "sealgate tlsrpt": its output, error output and
// exit status, and err when it could not run at all.
type tlsrptRun struct {
	out, errs string
	code      int
	err       error
}

// runTLSRPTCmd runs "sealgate tlsrpt ARGS" against the admin API at admin;
// it is safe to call from any goroutine.
func runTLSRPTCmd(admin string, env map[string]string, args ...string) tlsrptRun {
	cmd := exec.Command(binPath, append([]string{"tlsrpt"}, args...)...)
	e := map[string]string{"SEALGATE_ADMIN_LISTEN": admin, "SEALGATE_HOSTNAME": "gw.sealgate.test"}
	for k, v := range env {
		e[k] = v
	}
	cmd.Env = envList(e)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := tlsrptRun{out: out.String(), errs: errb.String()}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else {
		r.err = err
	}
	return r
}

type rptReport struct {
	Org       string `json:"organization-name"`
	ReportID  string `json:"report-id"`
	DateRange struct {
		Start string `json:"start-datetime"`
		End   string `json:"end-datetime"`
	} `json:"date-range"`
	Policies []struct {
		Policy struct {
			Type   string   `json:"policy-type"`
			String []string `json:"policy-string"`
			Domain string   `json:"policy-domain"`
			MXHost []string `json:"mx-host"`
		} `json:"policy"`
		Summary struct {
			Success int `json:"total-successful-session-count"`
			Failure int `json:"total-failure-session-count"`
		} `json:"summary"`
		Details []struct {
			Result  string `json:"result-type"`
			MX      string `json:"receiving-mx-hostname"`
			IP      string `json:"receiving-ip"`
			Sending string `json:"sending-mta-ip"`
			Count   int    `json:"failed-session-count"`
			Reason  string `json:"failure-reason-code"`
		} `json:"failure-details"`
	} `json:"policies"`
}

func today() string { return time.Now().UTC().Format("2006-01-02") }

// showToday returns today's report of domain as the gateway prints it.
func (g *gateway) showToday(t *testing.T, domain string) (rptReport, string) {
	t.Helper()
	out, errs, code := g.tlsrptCmd(t, nil, "show", "--day", today(), domain)
	if code != 0 {
		t.Fatalf("tlsrpt show: exit %d: %s", code, errs)
	}
	var r rptReport
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &r); err != nil {
		t.Fatalf("tlsrpt show printed %q: %v", out, err)
	}
	return r, strings.TrimSpace(out)
}

// TestTLSRPTResultTypes: each result type comes from a real scenario of
// the fakes, is recorded once per session with the policy type, the MX
// host and the addresses, and a delivered message counts as a success.
func TestTLSRPTResultTypes(t *testing.T) {
	other := certstest.NewCA(t, "not trusted")
	tests := []struct {
		name       string
		setup      func(w *world)
		env        map[string]string
		wantType   string
		wantResult string // "" for a success
	}{
		{name: "success", setup: func(w *world) {
			w.mx("example.test", "mx1.example.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx1.example.test")})
		}, wantType: "no-policy-found"},
		{name: "no STARTTLS", setup: func(w *world) {
			w.mx("example.test", "mx1.example.test", 10, upstreamtest.MXOptions{})
		}, wantType: "no-policy-found", wantResult: "starttls-not-supported"},
		{name: "wrong name", setup: func(w *world) {
			w.mx("example.test", "mx1.example.test", 10, upstreamtest.MXOptions{Certificate: w.cert("other.example.test")})
		}, env: map[string]string{"SEALGATE_MIN_TLS": "verify"}, wantType: "no-policy-found", wantResult: "certificate-host-mismatch"},
		{name: "untrusted", setup: func(w *world) {
			c := other.Leaf("mx1.example.test")
			w.mx("example.test", "mx1.example.test", 10, upstreamtest.MXOptions{Certificate: &c})
		}, env: map[string]string{"SEALGATE_MIN_TLS": "verify"}, wantType: "no-policy-found", wantResult: "certificate-not-trusted"},
		{name: "MTA-STS enforce, untrusted", setup: func(w *world) {
			c := other.Leaf("mx1.example.test")
			w.mx("example.test", "mx1.example.test", 10, upstreamtest.MXOptions{Certificate: &c})
			w.sts("example.test", "1", enforce("mx1.example.test"))
		}, wantType: "sts", wantResult: "certificate-not-trusted"},
		{name: "policy fetch error", setup: func(w *world) {
			w.mx("example.test", "mx1.example.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx1.example.test")})
			w.stsID("example.test", "1") // no mta-sts host at all
		}, wantType: "sts", wantResult: "sts-policy-fetch-error"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			tc.setup(w)
			g := w.start(tc.env)
			g.send("a@legacy.sealgate.test", []string{"b@example.test"}, message("x"))
			r, _ := g.showToday(t, "example.test")
			if len(r.Policies) != 1 {
				t.Fatalf("report %+v: want one policy", r)
			}
			p := r.Policies[0]
			if p.Policy.Type != tc.wantType || p.Policy.Domain != "example.test" {
				t.Fatalf("policy %+v; want type %s for example.test", p.Policy, tc.wantType)
			}
			if tc.wantResult == "" {
				if p.Summary.Success != 1 || p.Summary.Failure != 0 {
					t.Fatalf("summary %+v; want one success", p.Summary)
				}
				return
			}
			if p.Summary.Failure != 1 || len(p.Details) != 1 {
				t.Fatalf("summary %+v, details %+v; want one failure", p.Summary, p.Details)
			}
			d := p.Details[0]
			if d.Result != tc.wantResult || d.Count != 1 {
				t.Fatalf("failure %+v; want %s once", d, tc.wantResult)
			}
			if tc.wantResult != "sts-policy-fetch-error" && (d.MX != "mx1.example.test" || d.IP == "" || d.Sending == "") {
				t.Fatalf("failure %+v lacks the MX host or addresses", d)
			}
		})
	}
}

// collector is a fake HTTPS TLS-RPT collector at https://<name>/report
// on <ip>:443 with a certificate of the world's WebPKI.
type rptCollector struct {
	mu       sync.Mutex
	statuses []int
	bodies   [][]byte
	types    []string
}

func (w *world) collector(name string, statuses ...int) *rptCollector {
	w.t.Helper()
	ip := w.host(name)
	l, err := tls.Listen("tcp", ip+":443", &tls.Config{Certificates: []tls.Certificate{w.ca.Leaf(name)}})
	if err != nil {
		w.t.Fatalf("binding %s:443 (needs root): %v", ip, err)
	}
	c := &rptCollector{statuses: statuses}
	srv := &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		c.mu.Lock()
		defer c.mu.Unlock()
		c.bodies = append(c.bodies, body)
		c.types = append(c.types, r.Header.Get("Content-Type"))
		status := http.StatusOK
		if len(c.statuses) > 0 {
			status, c.statuses = c.statuses[0], c.statuses[1:]
		}
		rw.WriteHeader(status)
	})}
	go srv.Serve(l)
	w.t.Cleanup(func() { srv.Close() })
	return c
}

func (c *rptCollector) got() ([][]byte, []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.bodies...), append([]string(nil), c.types...)
}

func gunzipE2E(t *testing.T, b []byte) string {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return string(out)
}

// TestTLSRPTHTTPSCollectorRetry: "tlsrpt send" POSTs the gzip'd report to
// the https rua of the domain's record; after the collector's 500 the
// next send delivers it, and a third finds it already sent.
func TestTLSRPTHTTPSCollectorRetry(t *testing.T) {
	w := newWorld(t)
	w.mx("example.test", "mx1.example.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx1.example.test")})
	col := w.collector("tlsrpt.example.test", http.StatusInternalServerError)
	w.dns.Add(`_smtp._tls.example.test. 300 IN TXT "v=TLSRPTv1; rua=https://tlsrpt.example.test/report"`)
	g := w.start(map[string]string{"SEALGATE_TLSRPT_ORG": "Sealgate Test"})
	g.send("a@legacy.sealgate.test", []string{"b@example.test"}, message("x"))
	r, shown := g.showToday(t, "example.test")
	if r.Org != "Sealgate Test" {
		t.Errorf("organization-name %q", r.Org)
	}
	steps := []struct {
		wantCode   int
		wantStatus string
	}{
		{wantCode: 1, wantStatus: "failed"},
		{wantCode: 0, wantStatus: "sent"},
		{wantCode: 0, wantStatus: "already sent"},
	}
	for i, st := range steps {
		out, errs, code := g.tlsrptCmd(t, nil, "send", "--day", today(), "example.test")
		if code != st.wantCode || !strings.Contains(out, "https://tlsrpt.example.test/report\t"+st.wantStatus) {
			t.Fatalf("send %d: exit %d, %q %q; want exit %d and %q", i, code, out, errs, st.wantCode, st.wantStatus)
		}
	}
	bodies, types := col.got()
	if len(bodies) != 2 {
		t.Fatalf("collector got %d POSTs; want 2 (500, then 200)", len(bodies))
	}
	for i, b := range bodies {
		if types[i] != "application/tlsrpt+gzip" {
			t.Errorf("Content-Type %q", types[i])
		}
		if js := gunzipE2E(t, b); js != shown {
			t.Errorf("POST %d: %s\nwant what show printed: %s", i, js, shown)
		}
	}
	if !strings.Contains(g.logs.String(), "TLS report delivered") {
		t.Errorf("no log line of the delivery")
	}
}
