package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"sealgate/certs"
	"sealgate/enforcement"
	"sealgate/enforcement/store"
	"sealgate/enforcement/tlsrpt"
	"sealgate/upstream"
)

const tlsrptUsage = `usage:
  sealgate tlsrpt show [--day YYYY-MM-DD] [DOMAIN...]   print the TLS reports (RFC 8460 JSON), one per policy domain
  sealgate tlsrpt send [--day YYYY-MM-DD] [DOMAIN...]   send them now to each domain's rua
The day is a UTC day, yesterday by default; today gives the day so far.
The commands talk to the running gateway at SEALGATE_ADMIN_LISTEN; when none
runs, they open the state store (SEALGATE_STATE_DIR or SEALGATE_REDIS_URL).
`

// tlsrptService is TLS reporting in a running gateway: the recorder fed
// by the engine and the deliverer, the reporter, the daily scheduler.
type tlsrptService struct {
	rec       *tlsrpt.Recorder
	reporter  *tlsrpt.Reporter
	send      bool
	sessions  *prometheus.CounterVec
	reports   *prometheus.CounterVec
	scheduler *tlsrpt.Scheduler
}

// newReporter wires a reporter to our resolver (TXT records and the
// collectors' addresses) and to our own delivery path for mailto.
func newReporter(cfg *Config, dns enforcement.DNS, st store.Store, engine *enforcement.Engine, deliver *upstream.Deliverer, log *slog.Logger) *tlsrpt.Reporter {
	addrs := func(ctx context.Context, host string) ([]netip.Addr, error) {
		r, err := dns.LookupAddrs(ctx, host)
		return r.Addrs, err
	}
	return &tlsrpt.Reporter{
		Store:     st,
		Submitter: tlsrpt.Submitter{Org: cfg.TLSRPTOrg, Contact: cfg.TLSRPTContact, Host: cfg.Hostname},
		From:      cfg.TLSRPTFrom,
		LookupTXT: func(ctx context.Context, name string) ([]string, error) {
			r, err := dns.LookupTXT(ctx, name)
			if errors.Is(err, enforcement.ErrNotFound) {
				return nil, nil
			}
			return r.Records, err
		},
		HTTP: tlsrpt.NewHTTPClient(addrs, nil, time.Minute),
		Mail: reportMailer(engine, deliver),
		Log:  log,
	}
}

// reportMailer delivers a report message through sealgate's own path:
// every MX of the rua's domain, STARTTLS and a completed handshake
// mandatory, no authentication demanded (RFC 8460 §5.3 asks that
// reports get through TLS failures; sealgate still never sends them in
// cleartext), and the session is not itself recorded.
func reportMailer(engine *enforcement.Engine, deliver *upstream.Deliverer) tlsrpt.MailFunc {
	return func(ctx context.Context, from, to string, msg []byte) error {
		_, domain, ok := strings.Cut(to, "@")
		if !ok {
			return fmt.Errorf("tlsrpt: bad address %q", to)
		}
		route, err := engine.RelaxedRoute(ctx, domain)
		if err != nil {
			return err
		}
		route.NoReport = true
		for i := range route.Hosts {
			route.Hosts[i].Req.Mode = "encrypt (TLS report)"
		}
		c, err := deliver.Open(ctx, route)
		if err != nil {
			return err
		}
		defer c.Close()
		if err := c.Mail(from, nil); err != nil {
			return err
		}
		if err := c.Rcpt(to, nil); err != nil {
			return err
		}
		reply, err := c.Data(nil, bytes.NewReader(msg))
		if err != nil {
			return err
		}
		if reply.Code != 250 {
			return reply
		}
		return nil
	}
}

// newTLSRPT records every attempt of engine and deliver, and registers
// the reporting metrics.
func newTLSRPT(cfg *Config, dns enforcement.DNS, st store.Store, engine *enforcement.Engine, deliver *upstream.Deliverer, m *metrics, log *slog.Logger) *tlsrptService {
	s := &tlsrptService{send: cfg.TLSRPTSend}
	s.sessions = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sealgate_tlsrpt_sessions_total",
		Help: "Upstream sessions and attempts recorded for TLS reports, by result type (success or the RFC 8460 result type).",
	}, []string{"result"})
	s.reports = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "sealgate_tlsrpt_reports_total",
		Help: "TLS reports delivered to a rua, by outcome: sent or failed.",
	}, []string{"outcome"})
	s.rec = &tlsrpt.Recorder{Store: st, Log: log, Counted: func(result string) {
		if result == "" {
			result = "success"
		}
		s.sessions.WithLabelValues(result).Inc()
	}}
	m.reg.MustRegister(s.sessions, s.reports, prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "sealgate_tlsrpt_dropped_total",
		Help: "Attempts not recorded for TLS reports because the recording buffer was full.",
	}, func() float64 { return float64(s.rec.Dropped()) }))
	engine.Attempts, deliver.Attempts = s.rec, s.rec
	s.reporter = newReporter(cfg, dns, st, engine, deliver, log)
	host, _ := os.Hostname()
	s.scheduler = &tlsrpt.Scheduler{Reporter: s.reporter, Owner: fmt.Sprintf("%s/%d/%d", host, os.Getpid(), time.Now().UnixNano())}
	return s
}

// start runs the recorder and, with TLSRPT_SEND, the daily sender; the
// returned function stops them and writes what is left.
func (s *tlsrptService) start(ctx context.Context) func() {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { s.rec.Run(ctx); close(done) }()
	if s.send {
		go s.scheduler.Run(ctx)
	}
	return func() { cancel(); <-done }
}

func (s *tlsrptService) count(out []tlsrpt.Outcome) {
	for _, o := range out {
		switch o.Status {
		case tlsrpt.StatusSent, tlsrpt.StatusFailed:
			s.reports.WithLabelValues(o.Status).Inc()
		}
	}
}

// handler serves the TLS-RPT admin API before next:
// GET /tlsrpt/reports?day=&domain= and POST /tlsrpt/send?day=&domain=.
func (s *tlsrptService) handler(next http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", next)
	mux.HandleFunc("GET /tlsrpt/reports", func(w http.ResponseWriter, r *http.Request) {
		day, err := parseDay(r.URL.Query().Get("day"), time.Now())
		if err == nil {
			err = s.rec.Flush(r.Context())
		}
		var reps []*tlsrpt.Report
		if err == nil {
			reps, err = s.reporter.Reports(r.Context(), day, r.URL.Query()["domain"])
		}
		reply(w, reps, err)
	})
	mux.HandleFunc("POST /tlsrpt/send", func(w http.ResponseWriter, r *http.Request) {
		day, err := parseDay(r.URL.Query().Get("day"), time.Now())
		if err == nil && !s.send {
			err = errSendOff
		}
		if err == nil {
			err = s.rec.Flush(r.Context())
		}
		var out []tlsrpt.Outcome
		if err == nil {
			out, err = sendLocked(r.Context(), s.reporter, s.scheduler.Owner, day, r.URL.Query()["domain"])
			s.count(out)
		}
		reply(w, out, err)
	})
	return mux
}

// errSendOff refuses "tlsrpt send" under SEALGATE_TLSRPT_SEND=false.
var errSendOff = fmt.Errorf("%w: SEALGATE_TLSRPT_SEND=false: reports are recorded and shown, never sent", store.ErrInvalid)

// errLocked means another process is sending reports now.
var errLocked = errors.New("another sealgate is sending TLS reports now; try again later")

// sendLocked sends under the store lock that the daily sender takes.
func sendLocked(ctx context.Context, r *tlsrpt.Reporter, owner string, day time.Time, domains []string) ([]tlsrpt.Outcome, error) {
	held, err := r.Store.TryLock(ctx, tlsrpt.LockName, owner, time.Hour)
	if err != nil {
		return nil, err
	}
	if !held {
		return nil, errLocked
	}
	defer r.Store.Unlock(context.WithoutCancel(ctx), tlsrpt.LockName, owner)
	return r.Send(ctx, day, domains)
}

// parseDay reads --day: a UTC day not after today; yesterday if empty.
func parseDay(s string, now time.Time) (time.Time, error) {
	today := now.UTC().Truncate(24 * time.Hour)
	if s == "" {
		return today.Add(-24 * time.Hour), nil
	}
	d, err := time.Parse(tlsrpt.DayFormat, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: day %q: want YYYY-MM-DD", store.ErrInvalid, s)
	}
	if d.After(today) {
		return time.Time{}, fmt.Errorf("%w: day %s has not begun (UTC)", store.ErrInvalid, s)
	}
	return d, nil
}

// runTLSRPT implements "sealgate tlsrpt".
func runTLSRPT(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || (args[0] != "show" && args[0] != "send") {
		fmt.Fprint(stderr, tlsrptUsage)
		return 2
	}
	verb := args[0]
	fs := flag.NewFlagSet("tlsrpt "+verb, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dayFlag := fs.String("day", "", "UTC day YYYY-MM-DD (default yesterday)")
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	if _, err := parseDay(*dayFlag, time.Now()); err != nil {
		fmt.Fprintf(stderr, "sealgate tlsrpt %s: %v\n", verb, err)
		return 2
	}
	var domains []string
	for _, d := range fs.Args() {
		domains = append(domains, store.NormalizeDomain(d))
	}
	cfg, err := parseConfig(environ())
	if err != nil {
		fmt.Fprintf(stderr, "sealgate: configuration error: %v\n", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	q := url.Values{"domain": domains}
	if *dayFlag != "" {
		q.Set("day", *dayFlag)
	}
	body, err := tlsrptViaAdmin(ctx, cfg.AdminListen, verb, q)
	if isNotRunning(err) {
		body, err = tlsrptLocally(ctx, cfg, verb, *dayFlag, domains)
	}
	if err != nil {
		fmt.Fprintf(stderr, "sealgate tlsrpt %s: %v\n", verb, err)
		return 1
	}
	return printTLSRPT(stdout, stderr, verb, body)
}

func tlsrptViaAdmin(ctx context.Context, addr, verb string, q url.Values) ([]byte, error) {
	method, path := http.MethodGet, "/tlsrpt/reports"
	if verb == "send" {
		method, path = http.MethodPost, "/tlsrpt/send"
	}
	return adminCall(ctx, method, "http://"+addr+path+"?"+q.Encode(), 256<<20)
}

// tlsrptLocally runs the command on the store when no gateway runs.
func tlsrptLocally(ctx context.Context, cfg *Config, verb, dayFlag string, domains []string) ([]byte, error) {
	day, err := parseDay(dayFlag, time.Now())
	if err != nil {
		return nil, err
	}
	st, _, err := openStore(cfg)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	dns, err := newResolver(cfg)
	if err != nil {
		return nil, err
	}
	engine, deliver, err := newRouting(cfg, dns, nil, certs.NewWatcher(quiet), nil, quiet)
	if err != nil {
		return nil, err
	}
	r := newReporter(cfg, dns, st, engine, deliver, quiet)
	var v any
	switch {
	case verb == "show":
		v, err = r.Reports(ctx, day, domains)
	case !cfg.TLSRPTSend:
		err = errSendOff
	default:
		host, _ := os.Hostname()
		v, err = sendLocked(ctx, r, fmt.Sprintf("%s/%d/cli", host, os.Getpid()), day, domains)
	}
	if err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

func printTLSRPT(stdout, stderr io.Writer, verb string, body []byte) int {
	if verb == "show" {
		var reps []json.RawMessage
		if err := json.Unmarshal(body, &reps); err != nil {
			fmt.Fprintf(stderr, "sealgate tlsrpt show: %v\n", err)
			return 1
		}
		for _, r := range reps {
			var b bytes.Buffer
			json.Compact(&b, r)
			fmt.Fprintln(stdout, b.String())
		}
		if len(reps) == 0 {
			fmt.Fprintln(stderr, "no sessions recorded for that day")
		}
		return 0
	}
	var out []tlsrpt.Outcome
	if err := json.Unmarshal(body, &out); err != nil {
		fmt.Fprintf(stderr, "sealgate tlsrpt send: %v\n", err)
		return 1
	}
	status := 0
	for _, o := range out {
		line := o.Domain + "\t" + o.Status
		if o.RUA != "" {
			line = o.Domain + "\t" + o.RUA + "\t" + o.Status
		}
		if o.Error != "" {
			line += ": " + o.Error
		}
		fmt.Fprintln(stdout, line)
		if o.Status == tlsrpt.StatusFailed {
			status = 1
		}
	}
	if len(out) == 0 {
		fmt.Fprintln(stderr, "no sessions recorded for that day")
	}
	return status
}

// tlsrptDefaults fills the TLS-RPT variables from the host name and
// checks the sender address.
func (c *Config) tlsrptDefaults(bad func(field, value, why string) error) error {
	if c.TLSRPTOrg == "" {
		c.TLSRPTOrg = c.Hostname
	}
	if c.TLSRPTContact == "" {
		c.TLSRPTContact = "postmaster@" + c.Hostname
	}
	if c.TLSRPTFrom == "" {
		c.TLSRPTFrom = "noreply-tlsrpt@" + c.Hostname
	}
	if !tlsrpt.ValidAddress(c.TLSRPTFrom) {
		return bad("TLSRPTFrom", c.TLSRPTFrom, "")
	}
	for _, f := range []struct{ field, v string }{{"TLSRPTOrg", c.TLSRPTOrg}, {"TLSRPTContact", c.TLSRPTContact}} {
		if strings.ContainsAny(f.v, "\r\n") {
			return bad(f.field, f.v, "no line breaks")
		}
	}
	return nil
}
