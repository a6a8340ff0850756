package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"sealgate/enforcement/store"
	"sealgate/proxy/outcome"
)

var statusNow = time.Date(2026, 3, 1, 10, 30, 0, 0, time.UTC)

// testStatusPage is a status page over an empty recorder.
func testStatusPage(ops stsOps) *statusPage {
	return &statusPage{rec: outcome.New(0, func() time.Time { return statusNow }), sts: ops, replica: "gw.sealgate.test",
		since: statusNow.Add(-time.Hour), now: func() time.Time { return statusNow },
		log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// statusServer serves the admin endpoint with a bolt store holding the
// cached policies, and returns its status page to record into.
func statusServer(t *testing.T, cached map[string]string) (*httptest.Server, *statusPage, *store.Bolt) {
	t.Helper()
	bolt, err := store.OpenBolt(filepath.Join(t.TempDir(), "sealgate.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bolt.Close() })
	for domain, mode := range cached {
		if err := bolt.PutPolicy(context.Background(), &store.CachedPolicy{Domain: domain, ID: "1",
			Policy:    "version: STSv1\nmode: " + mode + "\nmx: mx." + domain + "\nmax_age: 86400\n",
			FetchedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}); err != nil {
			t.Fatal(err)
		}
	}
	ops := stsOps{st: bolt}
	page := testStatusPage(ops)
	srv := httptest.NewServer(adminHandler(ops, promhttp.Handler(), page, page.log))
	t.Cleanup(srv.Close)
	return srv, page, bolt
}

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, string(b)
}

func getStatusJSON(t *testing.T, base string) statusView {
	t.Helper()
	resp, body := get(t, base+"/status.json")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("status.json: %d %s: %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	var v statusView
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestStatusPageData: per domain, deliveries by source and TLS version,
// deferrals by reason with the last reply, the cached MTA-STS mode and
// DANE; the domains in trouble first; the same data in HTML and JSON.
func TestStatusPageData(t *testing.T) {
	srv, page, _ := statusServer(t, map[string]string{"sts.test": "enforce", "testing.test": "testing"})
	rec := page.rec
	rec.Delivered("sts.test", "MTA-STS", "TLS 1.3")
	rec.Delivered("sts.test", "MTA-STS", "TLS 1.3")
	rec.Delivered("dane.test", "DANE", "TLS 1.3")
	rec.Delivered("testing.test", "floor", "TLS 1.2")
	rec.Deferred("testing.test", "tls", "451 4.7.5 testing.test: floor encrypt: mx.testing.test: handshake failed")
	rec.Deferred("plain.test", "starttls", "451 4.7.4 plain.test: floor encrypt: mx.plain.test: STARTTLS not offered")
	rec.Deferred("plain.test", "starttls", "451 4.7.4 plain.test: floor encrypt: mx.plain.test: STARTTLS not offered")

	v := getStatusJSON(t, srv.URL)
	tests := []struct {
		domain        string
		delivered     int
		deferred      int
		deliveredBy   string
		deferredBy    string
		mode          string
		dane          bool
		lastDeferral  bool
		wantPosition  int
		wantHourTotal int
	}{
		{domain: "plain.test", deferred: 2, deferredBy: "starttls×2 451 4.7.4 plain.test: floor encrypt: mx.plain.test: STARTTLS not offered", lastDeferral: true, wantPosition: 0},
		{domain: "testing.test", delivered: 1, deferred: 1, deliveredBy: "floor TLS 1.2×1", deferredBy: "tls×1 451 4.7.5 testing.test: floor encrypt: mx.testing.test: handshake failed", mode: "testing", lastDeferral: true, wantPosition: 1},
		{domain: "sts.test", delivered: 2, deliveredBy: "MTA-STS TLS 1.3×2", mode: "enforce", wantPosition: 2},
		{domain: "dane.test", delivered: 1, deliveredBy: "DANE TLS 1.3×1", dane: true, wantPosition: 3},
	}
	if len(v.Domains) != len(tests) {
		t.Fatalf("%d domains, want %d: %+v", len(v.Domains), len(tests), v.Domains)
	}
	for _, tc := range tests {
		t.Run(tc.domain, func(t *testing.T) {
			d := v.Domains[tc.wantPosition]
			if d.Name != tc.domain {
				t.Fatalf("position %d is %s, want %s", tc.wantPosition, d.Name, tc.domain)
			}
			var by, def []string
			for _, x := range d.DeliveredBy {
				by = append(by, x.Source+" "+x.TLSVersion+"×"+strconv.Itoa(x.Count))
			}
			for _, x := range d.DeferredBy {
				def = append(def, x.Reason+"×"+strconv.Itoa(x.Count)+" "+x.LastReply)
			}
			if d.Delivered != tc.delivered || d.Deferred != tc.deferred || strings.Join(by, ",") != tc.deliveredBy || strings.Join(def, ",") != tc.deferredBy {
				t.Errorf("got %d %q, %d %q; want %d %q, %d %q", d.Delivered, by, d.Deferred, def, tc.delivered, tc.deliveredBy, tc.deferred, tc.deferredBy)
			}
			if d.MTASTSMode != tc.mode || d.DANE != tc.dane {
				t.Errorf("MTA-STS %q DANE %v, want %q %v", d.MTASTSMode, d.DANE, tc.mode, tc.dane)
			}
			if d.LastDeferral.IsZero() == tc.lastDeferral {
				t.Errorf("last deferral %v", d.LastDeferral)
			}
			if n := len(d.Hours); n != 24 || d.Hours[23].Delivered != tc.delivered || d.Hours[23].Deferred != tc.deferred {
				t.Errorf("hours %+v, want 24 with the counts in the last", d.Hours)
			}
		})
	}
	if v.Delivered != 4 || v.Deferred != 3 || len(v.Hours) != 24 || v.Hours[23].Delivered != 4 || v.Hours[23].Deferred != 3 {
		t.Errorf("totals %d %d, hours %+v", v.Delivered, v.Deferred, v.Hours)
	}
	if v.Replica != "gw.sealgate.test" || !strings.Contains(v.Scope, "this replica only") || !v.GeneratedAt.Equal(statusNow) {
		t.Errorf("replica %q scope %q generated %v", v.Replica, v.Scope, v.GeneratedAt)
	}

	// The HTML page shows the same.
	resp, html := get(t, srv.URL+"/")
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	text := visibleText(html)
	for _, want := range []string{
		"Replica gw.sealgate.test", "this replica only: counts are kept in memory since it started",
		"Delivered: 4", "Deferred: 3", "Domains: 4",
		"plain.test 2 2 × starttls (STARTTLS not offered or refused), last 2026-03-01 10:30 UTC: 451 4.7.4 plain.test: floor encrypt: mx.plain.test: STARTTLS not offered 0 none no",
		"testing.test 1 1 × tls (TLS handshake or authentication failed)",
		"1 × floor, TLS 1.2 testing no",
		"sts.test 0 2 2 × MTA-STS, TLS 1.3 enforce no",
		"dane.test 0 1 1 × DANE, TLS 1.3 none yes",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("page text lacks %q:\n%s", want, text)
		}
	}
	if strings.Index(text, "plain.test") > strings.Index(text, "dane.test") {
		t.Error("a domain in trouble is not first")
	}
}

// visibleText is the text of an HTML page with tags and titles removed
// and white space folded, roughly what a reader sees.
func visibleText(html string) string {
	html = regexp.MustCompile(`(?s)<title>.*?</title>|<style>.*?</style>`).ReplaceAllString(html, " ")
	html = regexp.MustCompile(`<[^>]*>`).ReplaceAllString(html, " ")
	for _, r := range [][2]string{{"&lt;", "<"}, {"&gt;", ">"}, {"&#34;", `"`}, {"&#39;", "'"}, {"&amp;", "&"}} {
		html = strings.ReplaceAll(html, r[0], r[1])
	}
	return strings.Join(strings.Fields(html), " ")
}

// TestStatusPageEscapes: every string on the page and in the JSON is
// escaped: a domain and a reply text holding markup and quotes show as
// text, never as markup.
func TestStatusPageEscapes(t *testing.T) {
	srv, page, _ := statusServer(t, nil)
	const domain = `<script>alert("d")</script>.test`
	const reply = `451 4.3.0 <script>alert('r')</script> "quoted" & <img src=x onerror=alert(1)>`
	page.rec.Deferred(domain, "mx", reply)
	page.rec.Delivered(domain, `<b>"src"</b>`, `<i>TLS</i>`)

	_, html := get(t, srv.URL+"/")
	for _, bad := range []string{"<script", "<img", "<b>", "<i>", `"quoted"`, "onerror=alert(1)>"} {
		if strings.Contains(html, bad) {
			t.Errorf("page holds %q unescaped", bad)
		}
	}
	for _, want := range []string{"&lt;script&gt;alert(&#34;d&#34;)&lt;/script&gt;.test", "&lt;script&gt;alert(&#39;r&#39;)&lt;/script&gt; &#34;quoted&#34; &amp; &lt;img src=x onerror=alert(1)&gt;"} {
		if !strings.Contains(html, want) {
			t.Errorf("page lacks the escaped %q", want)
		}
	}

	resp, body := get(t, srv.URL+"/status.json")
	if strings.Contains(body, "<") || strings.Contains(body, ">") || strings.Contains(body, "&") {
		t.Errorf("JSON holds < > or & unescaped: %s", body)
	}
	if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Errorf("status.json without nosniff")
	}
	v := getStatusJSON(t, srv.URL)
	if len(v.Domains) != 1 || v.Domains[0].Name != domain || v.Domains[0].DeferredBy[0].LastReply != reply || v.Domains[0].DeliveredBy[0].Source != `<b>"src"</b>` {
		t.Errorf("JSON does not give back the strings: %+v", v.Domains)
	}
}

// TestStatusPageSelfContained: the page runs no script and loads nothing:
// no script element, no external reference, and a Content-Security-Policy
// that would block both.
func TestStatusPageSelfContained(t *testing.T) {
	srv, page, _ := statusServer(t, nil)
	page.rec.Delivered("a.test", "floor", "TLS 1.3")
	page.rec.Deferred("b.test", "dns", "451 4.4.3 b.test: DNS: SERVFAIL")
	resp, html := get(t, srv.URL+"/")
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "script-src") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
	if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
		t.Error("no nosniff")
	}
	if strings.Contains(strings.ToLower(html), "<script") {
		t.Error("the page has a script element")
	}
	refs := regexp.MustCompile(`(?i)\b(?:src|href|action|xlink:href)\s*=\s*"([^"]*)"|url\(`).FindAllStringSubmatch(html, -1)
	for _, r := range refs {
		if r[1] != "status.json" {
			t.Errorf("external reference %q", r[0])
		}
	}
	if !strings.Contains(html, "<svg") {
		t.Error("no chart")
	}
}

// TestStatusPageRoutes: / is the page, nothing else is; the page stays up
// when the MTA-STS cache cannot be read.
func TestStatusPageRoutes(t *testing.T) {
	srv, page, bolt := statusServer(t, nil)
	page.rec.Delivered("a.test", "floor", "TLS 1.3")
	tests := []struct {
		name   string
		path   string
		status int
		want   string
	}{
		{name: "page", path: "/", status: http.StatusOK, want: "a.test"},
		{name: "json", path: "/status.json", status: http.StatusOK, want: `"domain":"a.test","delivered":1,"deferred":0,"delivered_by":[{"source":"floor","tls_version":"TLS 1.3","count":1}],"deferred_by":[]`},
		{name: "unknown path", path: "/nothing", status: http.StatusNotFound},
		{name: "index.html", path: "/index.html", status: http.StatusNotFound},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := get(t, srv.URL+tc.path)
			if resp.StatusCode != tc.status || !strings.Contains(body, tc.want) {
				t.Fatalf("%d %q, want %d with %q", resp.StatusCode, body, tc.status, tc.want)
			}
		})
	}
	bolt.Close()
	resp, html := get(t, srv.URL+"/")
	if resp.StatusCode != http.StatusOK || !strings.Contains(html, "MTA-STS cache unavailable") || !strings.Contains(html, "a.test") {
		t.Fatalf("with the store closed: %d\n%s", resp.StatusCode, html)
	}
	if v := getStatusJSON(t, srv.URL); !strings.Contains(v.MTASTSError, "MTA-STS cache unavailable") {
		t.Errorf("JSON mta_sts_error %q", v.MTASTSError)
	}
}

func TestBarChart(t *testing.T) {
	hours := make([]outcome.Hour, 24)
	hours[0] = outcome.Hour{Delivered: 300, Deferred: 100}
	hours[1] = outcome.Hour{Delivered: 1}
	hours[2] = outcome.Hour{Deferred: 400}
	c := barChart(hours, 10, 100, 2, true)
	tests := []struct {
		name                  string
		bar                   int
		delivered, deferred   int
		deliveredY, deferred0 int
	}{
		{name: "stacked", bar: 0, delivered: 75, deferred: 25, deliveredY: 25, deferred0: 0},
		{name: "a small count stays visible", bar: 1, delivered: 1, deferred: 0, deliveredY: 99, deferred0: 99},
		{name: "deferred only", bar: 2, delivered: 0, deferred: 100, deliveredY: 100, deferred0: 0},
		{name: "empty", bar: 3, delivered: 0, deferred: 0, deliveredY: 100, deferred0: 100},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			b := c.Bars[tc.bar]
			if b.DeliveredH != tc.delivered || b.DeferredH != tc.deferred || b.DeliveredY != tc.deliveredY || b.DeferredY != tc.deferred0 {
				t.Errorf("bar %+v", b)
			}
			if b.X != tc.bar*12 || b.W != 10 {
				t.Errorf("bar at %d width %d", b.X, b.W)
			}
		})
	}
	if c.Max != 400 || c.Width != 24*12 || len(c.Ticks) != 4 {
		t.Errorf("chart max %d width %d ticks %d", c.Max, c.Width, len(c.Ticks))
	}
}
