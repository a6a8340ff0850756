package main

import (
	"bytes"
	"context"
	_ "embed"
	"fmt"
	"html/template"
	"log/slog"
	"net/http"
	"time"

	"sealgate/proxy"
	"sealgate/proxy/outcome"
)

var _ proxy.Outcomes = (*outcome.Recorder)(nil)

//go:embed status.html
var statusHTML string

var statusTemplate = template.Must(template.New("status").Funcs(template.FuncMap{
	"reasonText": reasonText,
	"utc":        func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04 UTC") },
}).Parse(statusHTML))

// statusCSP keeps the page to itself: no script, nothing fetched from
// anywhere, its own inline style only.
const statusCSP = "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// statusPage serves the status page (GET /) and its data (GET
// /status.json) from what this process recorded.
type statusPage struct {
	rec     *outcome.Recorder
	sts     stsOps
	replica string
	since   time.Time
	now     func() time.Time
	log     *slog.Logger
}

// statusView is the status page's data, the same in HTML and JSON.
type statusView struct {
	Replica       string    `json:"replica"`
	Scope         string    `json:"scope"`
	GeneratedAt   time.Time `json:"generated_at"`
	CountingSince time.Time `json:"counting_since"`
	WindowHours   int       `json:"window_hours"`
	Delivered     int       `json:"delivered"`
	Deferred      int       `json:"deferred"`
	// Hours are the counts of all domains per hour, oldest first.
	Hours   []outcome.Hour `json:"hours"`
	Domains []domainStatus `json:"domains"`
	// MTASTSError says why the cached MTA-STS modes are missing.
	MTASTSError string `json:"mta_sts_error,omitempty"`

	Chart chart `json:"-"`
}

// domainStatus is one recipient domain on the page.
type domainStatus struct {
	outcome.Domain
	// MTASTSMode is the mode of the cached MTA-STS policy, empty when
	// none is cached.
	MTASTSMode    string `json:"mta_sts_mode,omitempty"`
	MTASTSExpired bool   `json:"mta_sts_expired,omitempty"`
	// DANE is true when DANE authenticated a delivery in the window.
	DANE bool `json:"dane"`

	Spark chart `json:"-"`
}

const statusScope = "this replica only: counts are kept in memory since it started; other replicas sharing the state store keep their own"

func (p *statusPage) view(ctx context.Context) statusView {
	snap := p.rec.Snapshot()
	v := statusView{
		Replica: p.replica, Scope: statusScope, GeneratedAt: p.now().UTC(), CountingSince: p.since.UTC(),
		WindowHours: outcome.Hours, Hours: snap.Hours, Domains: []domainStatus{},
	}
	modes := map[string]policyView{}
	if pols, err := p.sts.list(ctx); err != nil {
		v.MTASTSError = "MTA-STS cache unavailable: " + err.Error()
		p.log.Warn("status page: MTA-STS cache unavailable", "error", err)
	} else {
		for _, pv := range pols {
			modes[pv.Domain] = pv
		}
	}
	for _, h := range snap.Hours {
		v.Delivered += h.Delivered
		v.Deferred += h.Deferred
	}
	v.Chart = barChart(snap.Hours, 24, 160, 2, true)
	for _, d := range snap.Domains {
		ds := domainStatus{Domain: d, Spark: barChart(d.Hours, 5, 22, 1, false)}
		if pv, ok := modes[d.Name]; ok {
			ds.MTASTSMode, ds.MTASTSExpired = pv.Mode, pv.Expired
			if ds.MTASTSMode == "" {
				ds.MTASTSMode = "unparsable"
			}
		}
		for _, by := range d.DeliveredBy {
			if by.Source == "DANE" {
				ds.DANE = true
			}
		}
		v.Domains = append(v.Domains, ds)
	}
	return v
}

func (p *statusPage) serveHTML(w http.ResponseWriter, r *http.Request) {
	var buf bytes.Buffer
	if err := statusTemplate.Execute(&buf, p.view(r.Context())); err != nil {
		p.log.Error("status page", "error", err)
		http.Error(w, "status page: "+err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", statusCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	h.Set("Referrer-Policy", "no-referrer")
	w.Write(buf.Bytes())
}

func (p *statusPage) serveJSON(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	reply(w, p.view(r.Context()), nil)
}

// reasonTexts explain the deferral reasons (enforcement.Kind's names and
// proxy's own).
var reasonTexts = map[string]string{
	"starttls":    "STARTTLS not offered or refused",
	"tls":         "TLS handshake or authentication failed",
	"dns":         "DNS lookup failed",
	"unreachable": "no MX reachable",
	"lost":        "connection to the MX lost",
	"local":       "state store unavailable",
	"relay-auth":  "relay refused our credentials",
	"requiretls":  "REQUIRETLS not possible",
	"mx":          "the MX replied 4xx",
	"internal":    "internal error",
}

func reasonText(reason string) string {
	if t, ok := reasonTexts[reason]; ok {
		return t
	}
	return reason
}

// chart is an inline SVG bar chart of hourly counts: delivered (bottom)
// and deferred (stacked on top).
type chart struct {
	Width, Height int
	Bars          []bar
	// Max is the count of the tallest bar; Ticks label some hours.
	Max   int
	Ticks []tick
}

type bar struct {
	X, W                   int
	DeliveredY, DeliveredH int
	DeferredY, DeferredH   int
	Title                  string
}

type tick struct {
	X     int
	Label string
}

// barChart lays out hours as bars of barWidth and gap, height tall;
// labels adds hour ticks every six hours.
func barChart(hours []outcome.Hour, barWidth, height, gap int, labels bool) chart {
	c := chart{Width: len(hours) * (barWidth + gap), Height: height}
	for _, h := range hours {
		c.Max = max(c.Max, h.Delivered+h.Deferred)
	}
	scale := func(n int) int {
		if c.Max == 0 || n == 0 {
			return 0
		}
		return max(1, n*height/c.Max)
	}
	for i, h := range hours {
		b := bar{X: i * (barWidth + gap), W: barWidth,
			Title: fmt.Sprintf("%s: %d delivered, %d deferred", h.Start.UTC().Format("15:04 UTC"), h.Delivered, h.Deferred)}
		b.DeliveredH = scale(h.Delivered)
		b.DeliveredY = height - b.DeliveredH
		b.DeferredH = scale(h.Deferred)
		b.DeferredY = b.DeliveredY - b.DeferredH
		c.Bars = append(c.Bars, b)
		if labels && i%6 == 0 {
			c.Ticks = append(c.Ticks, tick{X: b.X, Label: h.Start.UTC().Format("15:04")})
		}
	}
	return c
}
