package e2e

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"io"
	"mime"
	"mime/multipart"
	"net/mail"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/miekg/dns"

	"sealgate/certs/certstest"
	"sealgate/enforcement/dane"
	"sealgate/enforcement/store/storetest"
	"sealgate/upstream/upstreamtest"
)

// showAll returns today's reports of domains (every domain when none),
// one per line as "tlsrpt show" prints them, by policy domain.
func (g *gateway) showAll(t *testing.T, domains ...string) (map[string]rptReport, map[string]string) {
	t.Helper()
	out, errs, code := g.tlsrptCmd(t, nil, append([]string{"show", "--day", today()}, domains...)...)
	if code != 0 {
		t.Fatalf("tlsrpt show: exit %d: %s", code, errs)
	}
	reps, raw := map[string]rptReport{}, map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var r rptReport
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("tlsrpt show printed %q: %v", line, err)
		}
		if len(r.Policies) == 0 {
			t.Fatalf("report without policies: %s", line)
		}
		d := r.Policies[0].Policy.Domain
		reps[d], raw[d] = r, line
	}
	return reps, raw
}

// TestTLSRPTMoreResultTypes: the result types of certificate expiry, DANE
// and MTA-STS policy problems, each from a real scenario of the fakes,
// with the policy type, the policy strings, the MX host and the counts.
func TestTLSRPTMoreResultTypes(t *testing.T) {
	other := certstest.NewCA(t, "not trusted")
	self := certstest.SelfSigned(t, "mx1.example.test")
	stranger := certstest.SelfSigned(t, "mx1.example.test")
	stsLines := []string{"version: STSv1", "mode: enforce", "mx: mx1.example.test", "max_age: 86400"}
	tests := []struct {
		name string
		// setup builds the world and returns the policy strings the
		// report must carry.
		setup func(w *world) []string
		// policyFile holds the lines of a local policy, if any.
		policyFile []string
		wantType   string
		wantMXPats []string // the policy's mx-host
		wantResult string
		wantRcpt   string // the enhanced code the legacy server sees; "" for a delivery
		// connected: the failure happened on a connection, whose
		// addresses the report names.
		connected bool
	}{
		{name: "expired certificate under MTA-STS enforce", setup: func(w *world) []string {
			c := w.ca.Issue(certstest.Names("mx1.example.test"), certstest.Expired())
			w.mx("example.test", "mx1.example.test", 10, upstreamtest.MXOptions{Certificate: &c})
			w.sts("example.test", "1", enforce("mx1.example.test"))
			return stsLines
		}, wantType: "sts", wantMXPats: []string{"mx1.example.test"}, wantResult: "certificate-expired", wantRcpt: "4.7.5", connected: true},
		{name: "TLSA mismatch", setup: func(w *world) []string {
			w.mx("example.test", "mx1.example.test", 10, upstreamtest.MXOptions{Certificate: &stranger})
			rec := dane.Expect(self.Leaf, 3, 1, 1)
			w.dns.Add(tlsaLine("mx1.example.test", rec))
			w.dns.SetSecureZone("example.test.", true)
			return []string{rec.String()}
		}, wantType: "tlsa", wantMXPats: []string{"mx1.example.test"}, wantResult: "tlsa-invalid", wantRcpt: "4.7.5", connected: true},
		{name: "TLSA lookup SERVFAIL (bogus DNSSEC)", setup: func(w *world) []string {
			w.mx("example.test", "mx1.example.test", 10, upstreamtest.MXOptions{Certificate: &self})
			w.dns.Add(tlsaLine("mx1.example.test", dane.Expect(self.Leaf, 3, 1, 1)))
			w.dns.SetSecureZone("example.test.", true)
			w.dns.SetRcode("_25._tcp.mx1.example.test.", dns.TypeTLSA, dns.RcodeServerFailure)
			return nil
		}, wantType: "tlsa", wantMXPats: []string{"mx1.example.test"}, wantResult: "dnssec-invalid", wantRcpt: "4.4.3"},
		{name: "invalid MTA-STS policy", setup: func(w *world) []string {
			w.mx("example.test", "mx1.example.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx1.example.test")})
			w.sts("example.test", "1", "version: STSv1\r\nmode: bogus\r\nmx: mx1.example.test\r\nmax_age: 86400\r\n")
			return nil
		}, wantType: "sts", wantResult: "sts-policy-invalid", connected: true},
		{name: "policy host fails WebPKI", setup: func(w *world) []string {
			w.mx("example.test", "mx1.example.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx1.example.test")})
			w.stsWithCert("example.test", "1", enforce("mx1.example.test"), other.Leaf("mta-sts.example.test"))
			return nil
		}, wantType: "sts", wantResult: "sts-webpki-invalid", connected: true},
		{name: "local dane-only without TLSA records", setup: func(w *world) []string {
			w.mx("example.test", "mx1.example.test", 10, upstreamtest.MXOptions{Certificate: &self})
			w.dns.SetSecureZone("example.test.", true)
			return nil
		}, policyFile: []string{"example.test dane-only"}, wantType: "no-policy-found", wantResult: "dane-required", wantRcpt: "4.7.5"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			wantPolicy := tc.setup(w)
			var env map[string]string
			if tc.policyFile != nil {
				env = map[string]string{"SEALGATE_POLICY_FILE": writePolicy(t, tc.policyFile...)}
			}
			g := w.start(env)
			res := g.send("a@legacy.sealgate.test", []string{"b@example.test"}, message("x"))
			if tc.wantRcpt == "" {
				if res.Rcpt[0] != nil || res.Data != nil {
					t.Fatalf("not delivered: %+v", res)
				}
			} else {
				wantReply(t, "RCPT", res.Rcpt[0], 451, tc.wantRcpt, "example.test")
			}
			r, raw := g.showToday(t, "example.test")
			t.Logf("tlsrpt show: %s", raw)
			if len(r.Policies) != 1 {
				t.Fatalf("report %s: want one policy", raw)
			}
			p := r.Policies[0]
			if p.Policy.Type != tc.wantType || p.Policy.Domain != "example.test" ||
				!slices.Equal(p.Policy.String, wantPolicy) || !slices.Equal(p.Policy.MXHost, tc.wantMXPats) {
				t.Fatalf("policy %+v; want type %s for example.test, policy strings %q, mx-host %q",
					p.Policy, tc.wantType, wantPolicy, tc.wantMXPats)
			}
			if p.Summary.Success != 0 || p.Summary.Failure != 1 || len(p.Details) != 1 {
				t.Fatalf("summary %+v, details %+v; want one failure and no success", p.Summary, p.Details)
			}
			d := p.Details[0]
			if d.Result != tc.wantResult || d.Count != 1 || d.MX != "mx1.example.test" || d.Reason == "" {
				t.Fatalf("failure %+v; want %s once at mx1.example.test with a reason", d, tc.wantResult)
			}
			if tc.connected != (d.IP != "" && d.Sending != "") {
				t.Fatalf("failure %+v: receiving-ip and sending-mta-ip must be given exactly when a connection was made (%v)", d, tc.connected)
			}
		})
	}
}

// TestTLSRPTCountersSurviveRestart: sessions recorded before a SIGTERM
// (never shown, so never flushed on demand) are on disk when the gateway
// starts again on the same state directory, and add up with new ones.
func TestTLSRPTCountersSurviveRestart(t *testing.T) {
	w := newWorld(t)
	good := w.mx("example.test", "mx1.example.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx1.example.test")})
	plain := w.mx("plain.test", "mx1.plain.test", 10, upstreamtest.MXOptions{})
	// One session per message, so that sessions can be counted.
	env := map[string]string{"SEALGATE_STATE_DIR": t.TempDir(), "SEALGATE_UPSTREAM_MAX_REUSE": "1"}
	record := func(g *gateway, delivered, refused int) {
		t.Helper()
		for range delivered {
			if res := g.send("a@legacy.sealgate.test", []string{"b@example.test"}, message("x")); res.Rcpt[0] != nil || res.Data != nil {
				t.Fatalf("not delivered: %+v", res)
			}
		}
		for range refused {
			res := g.send("a@legacy.sealgate.test", []string{"b@plain.test"}, message("x"))
			wantReply(t, "RCPT", res.Rcpt[0], 451, "4.7.4", "STARTTLS")
		}
	}
	first := w.start(env)
	record(first, 2, 1)
	first.stop()
	second := w.start(env)
	record(second, 1, 2)
	reps, raw := second.showAll(t)
	if len(reps) != 2 {
		t.Fatalf("reports %v; want example.test and plain.test", raw)
	}
	ok := reps["example.test"].Policies
	if len(ok) != 1 || ok[0].Summary.Success != 3 || ok[0].Summary.Failure != 0 || good.Connections() != 3 {
		t.Errorf("example.test: %s; want 3 successes (the MX saw %d sessions)", raw["example.test"], good.Connections())
	}
	bad := reps["plain.test"].Policies
	if len(bad) != 1 || bad[0].Summary.Failure != 3 || len(bad[0].Details) != 1 ||
		bad[0].Details[0].Result != "starttls-not-supported" || bad[0].Details[0].Count != 3 || plain.Connections() != 3 {
		t.Errorf("plain.test: %s; want 3 starttls-not-supported (the MX saw %d sessions)", raw["plain.test"], plain.Connections())
	}
}

// TestTLSRPTSharedRedis: two gateways on one Redis record sessions of the
// same policy domain; "tlsrpt show" on either prints the same report with
// the sum, and "tlsrpt send" run on both at once delivers it once.
func TestTLSRPTSharedRedis(t *testing.T) {
	w := newWorld(t)
	url := storetest.StartRedis(t)
	mx := w.mx("example.test", "mx1.example.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx1.example.test")})
	plain := w.mx("plain.test", "mx1.plain.test", 10, upstreamtest.MXOptions{})
	col := w.collector("tlsrpt.example.test")
	w.dns.Add(`_smtp._tls.example.test. 300 IN TXT "v=TLSRPTv1; rua=https://tlsrpt.example.test/report"`)
	env := map[string]string{"SEALGATE_REDIS_URL": url, "SEALGATE_UPSTREAM_MAX_REUSE": "1"}
	a, b := w.start(env), w.start(env)
	for _, s := range []struct {
		g    *gateway
		rcpt string
	}{{a, "b@example.test"}, {a, "b@example.test"}, {b, "b@example.test"}, {b, "b@plain.test"}, {a, "b@plain.test"}} {
		res := s.g.send("a@legacy.sealgate.test", []string{s.rcpt}, message("x"))
		if s.rcpt == "b@plain.test" {
			wantReply(t, "RCPT", res.Rcpt[0], 451, "4.7.4", "STARTTLS")
		} else if res.Rcpt[0] != nil || res.Data != nil {
			t.Fatalf("not delivered: %+v", res)
		}
	}
	// Each show writes what its own gateway recorded: after one on b and
	// one on a, both have written everything.
	b.showToday(t, "example.test")
	ra, shownA := a.showToday(t, "example.test")
	_, shownB := b.showToday(t, "example.test")
	if shownA != shownB {
		t.Fatalf("the gateways disagree:\n%s\n%s", shownA, shownB)
	}
	if len(ra.Policies) != 1 || ra.Policies[0].Summary.Success != 3 || mx.Connections() != 3 {
		t.Fatalf("report %s; want 3 successes from both gateways (the MX saw %d sessions)", shownA, mx.Connections())
	}
	reps, raw := b.showAll(t, "plain.test")
	if p := reps["plain.test"].Policies; len(p) != 1 || p[0].Summary.Failure != 2 || plain.Connections() != 2 {
		t.Fatalf("plain.test: %v; want 2 failures from both gateways", raw)
	}

	// Both send at once: the store's lock lets one send; the other finds
	// it locked or already sent.
	runs := make([]tlsrptRun, 2)
	var wg sync.WaitGroup
	for i, g := range []*gateway{a, b} {
		admin := g.adminAddr()
		wg.Add(1)
		go func() {
			defer wg.Done()
			runs[i] = runTLSRPTCmd(admin, nil, "send", "--day", today(), "example.test")
		}()
	}
	wg.Wait()
	const rua = "example.test\thttps://tlsrpt.example.test/report\t"
	sent := 0
	for i, r := range runs {
		switch {
		case r.err != nil:
			t.Fatalf("send on gateway %d: %v", i, r.err)
		case r.code == 0 && r.out == rua+"sent\n":
			sent++
		case r.code == 0 && r.out == rua+"already sent\n":
		case r.code == 1 && strings.Contains(r.errs, "another sealgate is sending TLS reports now"):
		default:
			t.Fatalf("send on gateway %d: exit %d, %q %q", i, r.code, r.out, r.errs)
		}
	}
	if sent != 1 {
		t.Fatalf("%d gateways sent the report; want exactly one: %+v", sent, runs)
	}
	for i, g := range []*gateway{a, b} {
		if out, errs, code := g.tlsrptCmd(t, nil, "send", "--day", today(), "example.test"); code != 0 || out != rua+"already sent\n" {
			t.Fatalf("second send on gateway %d: exit %d, %q %q; want already sent", i, code, out, errs)
		}
	}
	bodies, _ := col.got()
	if len(bodies) != 1 {
		t.Fatalf("the collector got %d reports; want exactly one", len(bodies))
	}
	if js := gunzipE2E(t, bodies[0]); js != shownA {
		t.Errorf("the collector got %s\nwant what show printed: %s", js, shownA)
	}
}

// TestTLSRPTMailedReport: a mailto rua gets the RFC 8460 §5.3 message
// through our own delivery, over STARTTLS to an MX whose certificate
// authenticates nothing (reports need encryption, not authentication),
// even under a verify floor; an MX without STARTTLS never gets a report;
// and report traffic is not itself recorded.
func TestTLSRPTMailedReport(t *testing.T) {
	w := newWorld(t)
	w.mx("example.test", "mx1.example.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx1.example.test")})
	w.mx("second.test", "mx1.second.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx1.second.test")})
	self := certstest.SelfSigned(t, "someone-else.test")
	collector := w.mx("collector.test", "mx.collector.test", 10, upstreamtest.MXOptions{Certificate: &self})
	plain := w.mx("plain.test", "mx.plain.test", 10, upstreamtest.MXOptions{})
	w.dns.Add(`_smtp._tls.example.test. 300 IN TXT "v=TLSRPTv1; rua=mailto:reports@collector.test"`)
	w.dns.Add(`_smtp._tls.second.test. 300 IN TXT "v=TLSRPTv1; rua=mailto:reports@plain.test"`)
	g := w.start(map[string]string{"SEALGATE_MIN_TLS": "verify"})
	for _, rcpt := range []string{"b@example.test", "b@second.test"} {
		if res := g.send("a@legacy.sealgate.test", []string{rcpt}, message("x")); res.Rcpt[0] != nil || res.Data != nil {
			t.Fatalf("not delivered to %s: %+v", rcpt, res)
		}
	}
	_, shown := g.showToday(t, "example.test")

	out, errs, code := g.tlsrptCmd(t, nil, "send", "--day", today(), "example.test")
	if code != 0 || out != "example.test\tmailto:reports@collector.test\tsent\n" {
		t.Fatalf("send: exit %d, %q %q", code, out, errs)
	}
	msgs := acceptedMessages(collector)
	if len(msgs) != 1 {
		t.Fatalf("the collector's MX accepted %d messages; want 1", len(msgs))
	}
	m := msgs[0]
	if m.TLS == nil {
		t.Fatal("the report went in cleartext")
	}
	if m.From != "noreply-tlsrpt@gw.sealgate.test" || len(m.Rcpts) != 1 || m.Rcpts[0].To != "reports@collector.test" {
		t.Fatalf("envelope from %q to %+v", m.From, m.Rcpts)
	}
	checkReportMessage(t, m.Data, shown)

	out, errs, code = g.tlsrptCmd(t, nil, "send", "--day", today(), "second.test")
	if code != 1 || !strings.HasPrefix(out, "second.test\tmailto:reports@plain.test\tfailed: ") {
		t.Fatalf("send to an MX without STARTTLS: exit %d, %q %q; want failed", code, out, errs)
	}
	if plain.SawMailFrom() || plain.SawCleartextTransaction() || len(plain.Messages()) != 0 {
		t.Fatal("an MX without STARTTLS got the report in cleartext")
	}
	if plain.Connections() == 0 {
		t.Fatal("the MX without STARTTLS was never tried: the failure proves nothing")
	}

	reps, raw := g.showAll(t)
	if len(reps) != 2 || reps["example.test"].Policies == nil || reps["second.test"].Policies == nil {
		t.Fatalf("reports %v; want example.test and second.test only: report traffic must not be recorded", raw)
	}
	for _, d := range []string{"collector.test", "plain.test"} {
		if out, _, code := g.tlsrptCmd(t, nil, "show", "--day", today(), d); code != 0 || out != "" {
			t.Errorf("show %s: exit %d, %q; want no sessions", d, code, out)
		}
	}
}

// checkReportMessage checks a mailed report against RFC 8460 §5.3 and
// that its attachment is the JSON that show printed.
func checkReportMessage(t *testing.T, data []byte, shown string) {
	t.Helper()
	msg, err := mail.ReadMessage(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("report message: %v\n%s", err, data)
	}
	id := today() + ".example.test@gw.sealgate.test"
	for name, want := range map[string]string{
		"Subject":              "Report Domain: example.test Submitter: gw.sealgate.test Report-ID: <" + id + ">",
		"TLS-Report-Domain":    "example.test",
		"TLS-Report-Submitter": "gw.sealgate.test",
		"Message-ID":           "<" + id + ">",
		"MIME-Version":         "1.0",
		"From":                 "<noreply-tlsrpt@gw.sealgate.test>",
		"To":                   "<reports@collector.test>",
	} {
		if got := msg.Header.Get(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/report" || params["report-type"] != "tlsrpt" || params["boundary"] == "" {
		t.Fatalf("Content-Type %q (%v): want multipart/report; report-type=\"tlsrpt\"", msg.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	var types []string
	var attachment []byte
	for {
		part, err := mr.NextPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("MIME part: %v", err)
		}
		pt, pp, err := mime.ParseMediaType(part.Header.Get("Content-Type"))
		if err != nil {
			t.Fatalf("part Content-Type %q: %v", part.Header.Get("Content-Type"), err)
		}
		types = append(types, pt)
		body, err := io.ReadAll(part)
		if err != nil {
			t.Fatal(err)
		}
		if pt != "application/tlsrpt+gzip" {
			continue
		}
		want := "gw.sealgate.test!example.test!"
		_, dp, _ := mime.ParseMediaType(part.Header.Get("Content-Disposition"))
		if !strings.HasPrefix(pp["name"], want) || !strings.HasSuffix(dp["filename"], ".json.gz") ||
			part.Header.Get("Content-Transfer-Encoding") != "base64" {
			t.Errorf("attachment headers %v", part.Header)
		}
		attachment, err = base64.StdEncoding.DecodeString(strings.NewReplacer("\r", "", "\n", "").Replace(string(body)))
		if err != nil {
			t.Fatalf("attachment: %v", err)
		}
	}
	if !slices.Equal(types, []string{"text/plain", "application/tlsrpt+gzip"}) {
		t.Fatalf("parts %q; want a text/plain part and the application/tlsrpt+gzip report", types)
	}
	if js := gunzipE2E(t, attachment); js != shown {
		t.Errorf("attachment %s\nwant what show printed: %s", js, shown)
	}
}
