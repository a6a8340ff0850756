package tlsrpt

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/mail"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"sealgate/enforcement"
)

func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// collector is a fake HTTPS report collector that answers the statuses
// in turn and keeps what it got.
type collector struct {
	mu       sync.Mutex
	statuses []int
	bodies   [][]byte
	types    []string
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	c.mu.Lock()
	defer c.mu.Unlock()
	c.bodies = append(c.bodies, body)
	c.types = append(c.types, r.Header.Get("Content-Type"))
	status := http.StatusOK
	if len(c.statuses) > 0 {
		status, c.statuses = c.statuses[0], c.statuses[1:]
	}
	w.WriteHeader(status)
}

// TestSendHTTPSRetry: the report is POSTed gzip'd to the https rua with
// the TLS-RPT media type; after the collector's 500 the scheduler retries,
// and once delivered it is never sent again.
func TestSendHTTPSRetry(t *testing.T) {
	col := &collector{statuses: []int{http.StatusInternalServerError}}
	srv := httptest.NewTLSServer(col)
	defer srv.Close()
	port := srv.Listener.Addr().(interface{ AddrPort() netip.AddrPort }).AddrPort().Port()
	roots := srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs

	st := openBolt(t, filepath.Join(t.TempDir(), "s.db"))
	defer st.Close()
	day := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	record(t, st, []enforcement.Attempt{{Time: day.Add(time.Hour), Domain: "example.test", PolicyType: enforcement.PolicyTypeNone}})
	now := day.Add(25 * time.Hour)
	var lookedUp []string
	r := &Reporter{
		Store: st, Submitter: exampleSubmitter,
		LookupTXT: func(ctx context.Context, name string) ([]string, error) {
			lookedUp = append(lookedUp, name)
			return []string{"v=TLSRPTv1; rua=https://example.com:" + itoa(port) + "/tlsrpt"}, nil
		},
		// httptest's certificate is for example.com.
		HTTP: NewHTTPClient(func(ctx context.Context, host string) ([]netip.Addr, error) {
			return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
		}, roots, 10*time.Second),
		Now: func() time.Time { return now },
	}
	var waits []time.Duration
	s := &Scheduler{Reporter: r, Owner: "a", Backoff: time.Minute, After: func(d time.Duration) <-chan time.Time {
		waits = append(waits, d)
		now = now.Add(d)
		c := make(chan time.Time, 1)
		c <- now
		return c
	}}
	s.SendDay(context.Background(), day, now.Add(time.Hour))
	s.SendDay(context.Background(), day, now.Add(time.Hour))
	if len(col.bodies) != 2 || len(waits) != 1 || waits[0] != time.Minute {
		t.Fatalf("collector got %d POSTs, scheduler waited %v; want 2 POSTs (500, then 200) and one wait of 1m", len(col.bodies), waits)
	}
	if lookedUp[0] != "_smtp._tls.example.test" {
		t.Fatalf("TXT looked up at %q", lookedUp[0])
	}
	want, _ := mustReports(t, r, day)[0].JSON()
	for i, b := range col.bodies {
		if col.types[i] != "application/tlsrpt+gzip" {
			t.Errorf("Content-Type %q", col.types[i])
		}
		if got := gunzip(t, b); !bytes.Equal(got, want) {
			t.Errorf("POST %d body %s; want %s", i, got, want)
		}
	}
	out, err := r.Send(context.Background(), day, nil)
	if err != nil || len(out) != 1 || out[0].Status != StatusAlreadySent {
		t.Fatalf("Send after delivery = %+v, %v; want already sent", out, err)
	}
}

// TestSendRefusesCleartextAndUnverified: an http rua is not a report
// destination, and a collector whose certificate is not trusted gets
// nothing.
func TestSendRefusesUntrustedCollector(t *testing.T) {
	col := &collector{}
	srv := httptest.NewTLSServer(col)
	defer srv.Close()
	port := srv.Listener.Addr().(interface{ AddrPort() netip.AddrPort }).AddrPort().Port()
	st := openBolt(t, filepath.Join(t.TempDir(), "s.db"))
	defer st.Close()
	day := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	record(t, st, []enforcement.Attempt{{Time: day, Domain: "example.test"}})
	r := &Reporter{
		Store: st, Submitter: exampleSubmitter,
		LookupTXT: func(ctx context.Context, name string) ([]string, error) {
			return []string{"v=TLSRPTv1; rua=http://example.com:" + itoa(port) + "/,https://example.com:" + itoa(port) + "/"}, nil
		},
		HTTP: NewHTTPClient(func(ctx context.Context, host string) ([]netip.Addr, error) {
			return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
		}, nil, 10*time.Second),
	}
	out, err := r.Send(context.Background(), day, nil)
	if err != nil || len(out) != 1 || out[0].Status != StatusFailed || len(col.bodies) != 0 {
		t.Fatalf("Send = %+v, %v, collector got %d; want one failed https rua and nothing received", out, err, len(col.bodies))
	}
}

func itoa(p uint16) string { return strconv.Itoa(int(p)) }

func mustReports(t *testing.T, r *Reporter, day time.Time) []*Report {
	t.Helper()
	reps, err := r.Reports(context.Background(), day, nil)
	if err != nil || len(reps) == 0 {
		t.Fatalf("Reports = %v, %v", reps, err)
	}
	return reps
}

// TestMailtoMessage: a mailto rua gets the multipart/report of RFC 8460
// §5.3 through the MailFunc, with its headers and subject, and the
// attachment gunzips to the report's JSON.
func TestMailtoMessage(t *testing.T) {
	st := openBolt(t, filepath.Join(t.TempDir(), "s.db"))
	defer st.Close()
	day := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	record(t, st, []enforcement.Attempt{{Time: day, Domain: "example.test", Result: enforcement.ResultSTARTTLSNotSupported, MXHost: "mx.example.test"}})
	type sent struct {
		from, to string
		msg      []byte
	}
	var got []sent
	r := &Reporter{
		Store: st, Submitter: exampleSubmitter, From: "noreply-tlsrpt@mail.company-x.example",
		LookupTXT: func(ctx context.Context, name string) ([]string, error) {
			return []string{"v=TLSRPTv1; rua=mailto:tls%2Breports@example.test"}, nil
		},
		Mail: func(ctx context.Context, from, to string, msg []byte) error {
			got = append(got, sent{from, to, msg})
			return nil
		},
		Now: func() time.Time { return day.Add(25 * time.Hour) },
	}
	if out, err := r.Send(context.Background(), day, nil); err != nil || len(out) != 1 || out[0].Status != StatusSent {
		t.Fatalf("Send = %+v, %v", out, err)
	}
	if len(got) != 1 || got[0].to != "tls+reports@example.test" || got[0].from != r.From {
		t.Fatalf("mailed %+v", got)
	}
	m, err := mail.ReadMessage(bytes.NewReader(got[0].msg))
	if err != nil {
		t.Fatal(err)
	}
	rep := mustReports(t, r, day)[0]
	headers := map[string]string{
		"Subject":              "Report Domain: example.test Submitter: mail.company-x.example Report-ID: <" + rep.ReportID + ">",
		"Tls-Report-Domain":    "example.test",
		"Tls-Report-Submitter": "mail.company-x.example",
		"Message-Id":           "<" + rep.ReportID + ">",
		"Mime-Version":         "1.0",
	}
	for k, v := range headers {
		if m.Header.Get(k) != v {
			t.Errorf("%s: %q; want %q", k, m.Header.Get(k), v)
		}
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "tlsrpt" {
		t.Fatalf("Content-Type %q", m.Header.Get("Content-Type"))
	}
	mr := multipart.NewReader(m.Body, params["boundary"])
	if p, err := mr.NextPart(); err != nil || !strings.HasPrefix(p.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("first part %v, %v; want text/plain", p, err)
	}
	p, err := mr.NextPart()
	if err != nil || !strings.HasPrefix(p.Header.Get("Content-Type"), "application/tlsrpt+gzip") {
		t.Fatalf("second part %v, %v; want application/tlsrpt+gzip", p, err)
	}
	if fn := p.FileName(); fn != "mail.company-x.example!example.test!1772323200!1772409599.json.gz" {
		t.Errorf("file name %q", fn)
	}
	raw, _ := io.ReadAll(base64.NewDecoder(base64.StdEncoding, p))
	want, _ := rep.JSON()
	if js := gunzip(t, raw); !bytes.Equal(js, want) {
		t.Fatalf("attachment %s; want %s", js, want)
	}
}
