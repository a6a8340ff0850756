package tlsrpt

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"sealgate/enforcement/store"
)

// MailFunc delivers a report message to one address. sealgate wires it
// to its own delivery path with mandatory encryption (no cleartext) and
// without TLS-RPT recording.
type MailFunc func(ctx context.Context, from, to string, msg []byte) error

// TXTFunc returns the TXT records at name, each joined from its strings;
// no records (NXDOMAIN, NODATA) is an empty slice and no error.
type TXTFunc func(ctx context.Context, name string) ([]string, error)

// Reporter builds reports from the store and sends them. Its zero values
// are documented per field.
type Reporter struct {
	Store     store.Store
	Submitter Submitter
	// From is the sender of mailed reports.
	From string
	// LookupTXT finds _smtp._tls records (required to send).
	LookupTXT TXTFunc
	// HTTP posts to https rua URIs; it must verify the WebPKI and must
	// not follow redirects to http. Required to send to https.
	HTTP *http.Client
	// Mail sends to mailto rua URIs; required to send to mailto.
	Mail MailFunc
	// Now is the clock; time.Now if nil.
	Now func() time.Time
	// Log; slog.Default if nil.
	Log *slog.Logger
}

// Outcome is what happened to one report for one rua.
type Outcome struct {
	Domain string `json:"domain"`
	RUA    string `json:"rua,omitempty"`
	// Status is "sent", "already sent", "failed" or "no record" (the
	// domain has no single valid TLS-RPT record).
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

// Outcome statuses.
const (
	StatusSent        = "sent"
	StatusAlreadySent = "already sent"
	StatusFailed      = "failed"
	StatusNoRecord    = "no record"
)

func (r *Reporter) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Reporter) log() *slog.Logger {
	if r.Log != nil {
		return r.Log
	}
	return slog.Default()
}

// Domains lists the policy domains with aggregates for day.
func (r *Reporter) Domains(ctx context.Context, day time.Time) ([]string, error) {
	buckets, err := r.Store.CounterBuckets(ctx)
	if err != nil {
		return nil, err
	}
	prefix := bucketOf(day, "")
	var out []string
	for _, b := range buckets {
		if d, ok := strings.CutPrefix(b, prefix); ok && d != "" {
			out = append(out, d)
		}
	}
	return out, nil
}

// Reports builds the reports of day for domains, or for every domain with
// aggregates when domains is empty; domains without sessions have none.
func (r *Reporter) Reports(ctx context.Context, day time.Time, domains []string) ([]*Report, error) {
	if len(domains) == 0 {
		var err error
		if domains, err = r.Domains(ctx, day); err != nil {
			return nil, err
		}
	}
	var out []*Report
	for _, d := range domains {
		d = store.NormalizeDomain(d)
		m, err := r.Store.Counters(ctx, bucketOf(day, d))
		if err != nil {
			return nil, err
		}
		rep, err := Build(r.Submitter, day, d, m)
		if err != nil {
			return nil, err
		}
		if rep != nil {
			out = append(out, rep)
		}
	}
	return out, nil
}

// sentBucket holds a field "<domain> <rua>" per report sent for day; a
// report of a day not over yet is marked apart, so that the complete
// day is still sent.
func (r *Reporter) sentBucket(day time.Time) string {
	b := "tlsrpt-sent/" + dayStart(day).Format(DayFormat)
	if !r.now().Before(dayStart(day).Add(24 * time.Hour)) {
		return b
	}
	return b + "/partial"
}

// Send sends the reports of day for domains (all when empty) to every
// rua of each domain's TLS-RPT record that has not had it yet. The
// caller holds the send lock when replicas share the store. Each outcome
// is returned; failed ones may be retried with another Send.
func (r *Reporter) Send(ctx context.Context, day time.Time, domains []string) ([]Outcome, error) {
	reps, err := r.Reports(ctx, day, domains)
	if err != nil {
		return nil, err
	}
	sentB := r.sentBucket(day)
	sent, err := r.Store.Counters(ctx, sentB)
	if err != nil {
		return nil, err
	}
	if sent == nil {
		sent = map[string]int64{}
	}
	var out []Outcome
	for _, rep := range reps {
		domain := rep.Policies[0].Policy.Domain
		rec, err := r.record(ctx, domain)
		if err != nil {
			out = append(out, Outcome{Domain: domain, Status: StatusNoRecord, Error: err.Error()})
			continue
		}
		for _, u := range rec.RUA {
			o := Outcome{Domain: domain, RUA: u.String()}
			mark := domain + " " + o.RUA
			if sent[mark] > 0 {
				o.Status = StatusAlreadySent
				out = append(out, o)
				continue
			}
			if err := r.deliver(ctx, rep, u); err != nil {
				o.Status, o.Error = StatusFailed, err.Error()
				r.log().Warn("TLS report not delivered", "domain", domain, "rua", o.RUA, "error", err)
			} else {
				o.Status = StatusSent
				r.log().Info("TLS report delivered", "domain", domain, "rua", o.RUA, "report_id", rep.ReportID)
				sent[mark]++ // at most once a run too
				if err := r.Store.IncrCounter(ctx, sentB, mark, 1); err != nil {
					return append(out, o), err
				}
			}
			out = append(out, o)
		}
	}
	return out, nil
}

func (r *Reporter) record(ctx context.Context, domain string) (*Record, error) {
	if r.LookupTXT == nil {
		return nil, errors.New("tlsrpt: no TXT lookup")
	}
	txts, err := r.LookupTXT(ctx, RecordName(domain))
	if err != nil {
		return nil, err
	}
	rec, err := ParseRecord(txts)
	if err != nil {
		return nil, err
	}
	if len(rec.RUA) == 0 {
		return nil, fmt.Errorf("%w: no mailto or https rua", ErrInvalidRecord)
	}
	return rec, nil
}

// ErrRejected means the collector answered with a status other than 2xx.
var ErrRejected = errors.New("tlsrpt: collector refused the report")

func (r *Reporter) deliver(ctx context.Context, rep *Report, u *url.URL) error {
	switch u.Scheme {
	case "https":
		if r.HTTP == nil {
			return errors.New("tlsrpt: no HTTPS client")
		}
		gz, err := rep.Gzip()
		if err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(gz))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/tlsrpt+gzip")
		resp, err := r.HTTP.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		if resp.StatusCode/100 != 2 {
			return fmt.Errorf("%w: %s", ErrRejected, resp.Status)
		}
		return nil
	case "mailto":
		if r.Mail == nil {
			return errors.New("tlsrpt: no mail delivery")
		}
		to := MailtoAddress(u)
		msg, err := Message(r.Submitter, rep, r.From, to, r.now())
		if err != nil {
			return err
		}
		return r.Mail(ctx, r.From, to, msg)
	}
	return fmt.Errorf("tlsrpt: scheme %q not supported", u.Scheme)
}

// Prune deletes the aggregates and sent marks of days before cutoff.
func (r *Reporter) Prune(ctx context.Context, cutoff time.Time) error {
	buckets, err := r.Store.CounterBuckets(ctx)
	if err != nil {
		return err
	}
	limit := dayStart(cutoff).Format(DayFormat)
	for _, b := range buckets {
		rest, ok := strings.CutPrefix(b, bucketPrefix)
		if !ok {
			rest, ok = strings.CutPrefix(b, "tlsrpt-sent/")
		}
		if !ok || len(rest) < len(DayFormat) || rest[:len(DayFormat)] >= limit {
			continue
		}
		if _, err := r.Store.TakeCounters(ctx, b); err != nil {
			return err
		}
	}
	return nil
}

// pending reports whether an outcome can still change with a retry.
func pending(out []Outcome) bool {
	return slices.ContainsFunc(out, func(o Outcome) bool { return o.Status == StatusFailed })
}
