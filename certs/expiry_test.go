package certs

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"log/slog"
	"strings"
	"testing"
	"time"

	"sealgate/certs/certstest"
)

func TestExpiryWarning(t *testing.T) {
	now := time.Date(2031, 3, 1, 12, 0, 0, 0, time.UTC)
	const day = 24 * time.Hour
	tests := []struct {
		name     string
		left     time.Duration
		wantLog  bool
		wantText string // in the log line when wantLog
	}{
		{name: "5 days", left: 5 * day, wantLog: true, wantText: `level=WARN msg="certs: certificate expires soon" name=inbound subject="CN=mx.sealgate.test" not_after=2031-03-06T12:00:00.000Z days_left=5`},
		{name: "at the threshold", left: 21 * day, wantLog: true, wantText: "days_left=21"},
		{name: "a day past the threshold", left: 22 * day},
		{name: "90 days", left: 90 * day},
		{name: "expired an hour ago", left: -time.Hour, wantLog: true, wantText: `level=ERROR msg="certs: certificate expired"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{
				ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
					if a.Key == slog.TimeKey {
						return slog.Attr{}
					}
					return a
				},
			}))
			leaf := &x509.Certificate{Subject: pkix.Name{CommonName: "mx.sealgate.test"}, NotAfter: now.Add(tc.left)}
			got := ExpiryWarning(log, "inbound", leaf, now, DefaultExpiryThreshold)
			if got != tc.wantLog {
				t.Fatalf("ExpiryWarning = %v, want %v; log:\n%s", got, tc.wantLog, buf.String())
			}
			if !tc.wantLog {
				if buf.Len() != 0 {
					t.Errorf("logged without reporting it:\n%s", buf.String())
				}
				return
			}
			if !strings.Contains(buf.String(), tc.wantText) {
				t.Errorf("log does not contain %q:\n%s", tc.wantText, buf.String())
			}
		})
	}
}

func TestWatcherExpiry(t *testing.T) {
	// The clock is a year ahead: with the real one neither certificate is
	// near its end, so a warning proves the injected clock is used.
	clock := time.Now().Add(365 * 24 * time.Hour).Truncate(time.Second)
	tests := []struct {
		name     string
		left     time.Duration
		wantWarn bool
	}{
		{name: "expires in 5 days", left: 5 * 24 * time.Hour, wantWarn: true},
		{name: "expires in 90 days", left: 90 * 24 * time.Hour},
	}
	ca := certstest.NewCA(t, "root")
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			leaf := ca.Issue(certstest.Names("mx.sealgate.test"),
				certstest.NotBefore(time.Now().Add(-time.Hour)), certstest.NotAfter(clock.Add(tc.left)))
			certFile, keyFile := certstest.WriteKeyPair(t, t.TempDir(), leaf)
			w, logs := newTestWatcher(t)
			w.Now = func() time.Time { return clock }
			if err := w.WatchKeyPair("inbound", &KeyPair{}, certFile, keyFile); err != nil {
				t.Fatal(err)
			}
			count := func() int { return strings.Count(logs.String(), "certificate expires soon") }
			if got := count() == 1; got != tc.wantWarn {
				t.Fatalf("warning at load: %v, want %v; log:\n%s", got, tc.wantWarn, logs.String())
			}
			if tc.wantWarn && !strings.Contains(logs.String(), "name=inbound") {
				t.Errorf("the warning does not name the key pair:\n%s", logs.String())
			}
			w.CheckExpiry()
			if got, want := count(), map[bool]int{true: 2, false: 0}[tc.wantWarn]; got != want {
				t.Errorf("warnings after CheckExpiry = %d, want %d", got, want)
			}
			exp := w.Expiries()
			if len(exp) != 1 || !exp["inbound"].Equal(clock.Add(tc.left)) {
				t.Errorf("Expiries = %v, want inbound: %v", exp, clock.Add(tc.left))
			}
		})
	}
}

func TestRunRepeatsExpiryCheck(t *testing.T) {
	ca := certstest.NewCA(t, "root")
	leaf := ca.Issue(certstest.Names("mx.sealgate.test"), certstest.NotAfter(time.Now().Add(5*24*time.Hour)))
	certFile, keyFile := certstest.WriteKeyPair(t, t.TempDir(), leaf)
	w, logs := newTestWatcher(t)
	w.ExpiryInterval = 10 * time.Millisecond
	if err := w.WatchKeyPair("inbound", &KeyPair{}, certFile, keyFile); err != nil {
		t.Fatal(err)
	}
	run(t, w)
	waitFor(t, "repeated expiry warnings", func() bool {
		return strings.Count(logs.String(), "certificate expires soon") >= 3
	})
}
