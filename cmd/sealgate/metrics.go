package main

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"sealgate/certs"
	"sealgate/enforcement"
	"sealgate/proxy"
)

// metrics are the Prometheus metrics of the gateway (all sealgate_*).
type metrics struct {
	reg      *prometheus.Registry
	verdicts *prometheus.CounterVec
	refused  *prometheus.CounterVec
	// intercepted counts by how, never by address (cardinality).
	intercepted *prometheus.CounterVec
}

func newMetrics(w *certs.Watcher) *metrics {
	m := &metrics{reg: prometheus.NewRegistry()}
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m.verdicts = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sealgate_tls_verdicts_total",
		Help: "Upstream TLS handshakes judged, by policy source, level and outcome (ok or the TLS-RPT result type).",
	}, []string{"source", "level", "result"})
	m.reg.MustRegister(m.verdicts)
	m.refused = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sealgate_connections_refused_total",
		Help: "Inbound connections refused or cut, by reason: capacity, reserved, per_address, idle, slow, auth_failures, loop.",
	}, []string{"reason"})
	m.reg.MustRegister(m.refused)
	m.intercepted = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sealgate_intercepted_connections_total",
		Help: "Inbound connections the kernel redirected to sealgate, by how: redirect (nftables redirect, SO_ORIGINAL_DST) or tproxy.",
	}, []string{"how"})
	m.reg.MustRegister(m.intercepted)
	m.reg.MustRegister(&expiryCollector{w: w, desc: prometheus.NewDesc(
		"sealgate_certificate_expiry_timestamp_seconds",
		"NotAfter of each certificate sealgate holds (inbound, client), as a Unix time.",
		[]string{"name"}, nil)})
	return m
}

// RecordVerdict counts a verdict (enforcement.Recorder).
func (m *metrics) RecordVerdict(v enforcement.Verdict) {
	result := "ok"
	if v.Result != "" {
		result = v.Result
	}
	m.verdicts.WithLabelValues(v.Req.Source.String(), v.Req.Level.String(), result).Inc()
}

// ConnectionRefused counts a refused or cut inbound connection
// (proxy.Recorder).
func (m *metrics) ConnectionRefused(reason string) {
	m.refused.WithLabelValues(reason).Inc()
}

// ConnectionIntercepted counts an intercepted inbound connection
// (proxy.InterceptRecorder).
func (m *metrics) ConnectionIntercepted(how string) {
	m.intercepted.WithLabelValues(how).Inc()
}

var (
	_ enforcement.Recorder    = (*metrics)(nil)
	_ proxy.Recorder          = (*metrics)(nil)
	_ proxy.InterceptRecorder = (*metrics)(nil)
)

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{})
}

// expiryCollector reports the certificates' expiry at scrape time.
type expiryCollector struct {
	w    *certs.Watcher
	desc *prometheus.Desc
}

func (c *expiryCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *expiryCollector) Collect(ch chan<- prometheus.Metric) {
	for name, t := range c.w.Expiries() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(t.Unix()), name)
	}
}
