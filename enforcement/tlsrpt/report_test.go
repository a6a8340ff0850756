package tlsrpt

import (
	"context"
	"encoding/json"
	"net/netip"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"sealgate/enforcement"
	"sealgate/enforcement/store"
)

// rfcExample is the example report of RFC 8460 §4.4, without the
// additional-information URL (sealgate has none to offer) and with the
// IPv6 addresses in their canonical form.
const rfcExample = `{
  "organization-name": "Company-X",
  "date-range": {
    "start-datetime": "2016-04-01T00:00:00Z",
    "end-datetime": "2016-04-01T23:59:59Z"
  },
  "contact-info": "sts-reporting@company-x.example",
  "report-id": "2016-04-01.company-y.example@mail.company-x.example",
  "policies": [{
    "policy": {
      "policy-type": "sts",
      "policy-string": ["version: STSv1","mode: testing",
            "mx: *.mail.company-y.example","max_age: 86400"],
      "policy-domain": "company-y.example",
      "mx-host": ["*.mail.company-y.example"]
    },
    "summary": {
      "total-successful-session-count": 5326,
      "total-failure-session-count": 303
    },
    "failure-details": [{
      "result-type": "certificate-expired",
      "sending-mta-ip": "2001:db8:abcd:12::1",
      "receiving-mx-hostname": "mx1.mail.company-y.example",
      "failed-session-count": 100
    }, {
      "result-type": "starttls-not-supported",
      "sending-mta-ip": "2001:db8:abcd:13::1",
      "receiving-mx-hostname": "mx2.mail.company-y.example",
      "receiving-ip": "203.0.113.56",
      "failed-session-count": 200
    }, {
      "result-type": "validation-failure",
      "sending-mta-ip": "198.51.100.62",
      "receiving-ip": "203.0.113.58",
      "receiving-mx-hostname": "mx-backup.mail.company-y.example",
      "failed-session-count": 3,
      "failure-reason-code": "X509_V_ERR_PROOF_OF_POSSESSION"
    }]
  }]
}`

var exampleSubmitter = Submitter{Org: "Company-X", Contact: "sts-reporting@company-x.example", Host: "mail.company-x.example"}

func openBolt(t *testing.T, path string) *store.Bolt {
	t.Helper()
	s, err := store.OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// record feeds attempts through a Recorder into st and waits until they
// are stored.
func record(t *testing.T, st store.Store, attempts []enforcement.Attempt) {
	t.Helper()
	rec := &Recorder{Store: st, Buffer: len(attempts) + 1, Interval: time.Hour}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { rec.Run(ctx); close(done) }()
	for _, a := range attempts {
		rec.RecordAttempt(a)
	}
	if err := rec.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	cancel()
	<-done
	if rec.Dropped() != 0 {
		t.Fatalf("%d attempts dropped", rec.Dropped())
	}
}

func repeat(n int, a enforcement.Attempt) []enforcement.Attempt {
	out := make([]enforcement.Attempt, n)
	for i := range out {
		out[i] = a
	}
	return out
}

func exampleAttempts(at time.Time) []enforcement.Attempt {
	base := enforcement.Attempt{
		Time: at, Domain: "Company-Y.example.", PolicyType: enforcement.PolicyTypeSTS,
		Policy:  []string{"version: STSv1", "mode: testing", "mx: *.mail.company-y.example", "max_age: 86400"},
		MXHosts: []string{"*.mail.company-y.example"},
	}
	ok := base
	ok.MXHost, ok.ReceivingIP, ok.SendingIP = "mx1.mail.company-y.example", netip.MustParseAddr("203.0.113.1"), netip.MustParseAddr("192.0.2.1")
	expired := base
	expired.Result, expired.SendingIP, expired.MXHost = enforcement.ResultExpired, netip.MustParseAddr("2001:db8:abcd:0012::1"), "mx1.mail.company-y.example"
	noTLS := base
	noTLS.Result, noTLS.SendingIP, noTLS.MXHost, noTLS.ReceivingIP = enforcement.ResultSTARTTLSNotSupported,
		netip.MustParseAddr("2001:db8:abcd:0013::1"), "mx2.mail.company-y.example", netip.MustParseAddr("203.0.113.56")
	invalid := base
	invalid.Result, invalid.SendingIP, invalid.ReceivingIP, invalid.MXHost, invalid.Reason = enforcement.ResultValidationFailure,
		netip.MustParseAddr("198.51.100.62"), netip.MustParseAddr("203.0.113.58"), "mx-backup.mail.company-y.example", "X509_V_ERR_PROOF_OF_POSSESSION"
	var all []enforcement.Attempt
	all = append(all, repeat(5326, ok)...)
	all = append(all, repeat(100, expired)...)
	all = append(all, repeat(200, noTLS)...)
	all = append(all, repeat(3, invalid)...)
	return all
}

// TestRFCExampleReport: the example of RFC 8460 §4.4, field by field
// (names, nesting, types), from recorded attempts.
func TestRFCExampleReport(t *testing.T) {
	st := openBolt(t, filepath.Join(t.TempDir(), "s.db"))
	defer st.Close()
	day := time.Date(2016, 4, 1, 0, 0, 0, 0, time.UTC)
	record(t, st, exampleAttempts(day.Add(13*time.Hour)))
	// An attempt of the next day is not in the report.
	record(t, st, exampleAttempts(day.Add(24 * time.Hour))[:1])
	r := &Reporter{Store: st, Submitter: exampleSubmitter}
	reps, err := r.Reports(context.Background(), day, nil)
	if err != nil || len(reps) != 1 {
		t.Fatalf("Reports = %v, %v; want one", reps, err)
	}
	got, err := reps[0].JSON()
	if err != nil {
		t.Fatal(err)
	}
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(rfcExample), &w); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("report:\n%s\nwant:\n%s", got, rfcExample)
	}
}

// TestBuildPolicies: each policy type is its own entry, successes carry
// no connection details, and no-policy-found has no policy strings.
func TestBuildPolicies(t *testing.T) {
	st := openBolt(t, filepath.Join(t.TempDir(), "s.db"))
	defer st.Close()
	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	tlsa := enforcement.Attempt{Time: at, Domain: "example.test", PolicyType: enforcement.PolicyTypeTLSA,
		Policy: []string{"3 1 1 aabb"}, MXHosts: []string{"mx.example.test"}, MXHost: "mx.example.test"}
	tlsaFail := tlsa
	tlsaFail.Result, tlsaFail.Reason = enforcement.ResultTLSAInvalid, "TLSA: no match"
	none := enforcement.Attempt{Time: at, Domain: "example.test", PolicyType: enforcement.PolicyTypeNone, MXHost: "mx2.example.test",
		SendingIP: netip.MustParseAddr("127.0.0.1"), ReceivingIP: netip.MustParseAddr("127.0.0.2")}
	noneFail := none
	noneFail.Result = enforcement.ResultSTARTTLSNotSupported
	record(t, st, []enforcement.Attempt{tlsa, tlsa, tlsaFail, none, noneFail})
	r := &Reporter{Store: st, Submitter: exampleSubmitter}
	reps, err := r.Reports(context.Background(), at, []string{"EXAMPLE.test"})
	if err != nil || len(reps) != 1 {
		t.Fatalf("Reports = %v, %v", reps, err)
	}
	want := []PolicyEntry{
		{Policy: Policy{Type: "no-policy-found", Domain: "example.test"}, Summary: Summary{Successful: 1, Failure: 1},
			FailureDetails: []FailureDetail{{ResultType: "starttls-not-supported", SendingMTAIP: "127.0.0.1", ReceivingIP: "127.0.0.2",
				ReceivingMXHostname: "mx2.example.test", FailedSessionCount: 1}}},
		{Policy: Policy{Type: "tlsa", String: []string{"3 1 1 aabb"}, Domain: "example.test", MXHost: []string{"mx.example.test"}},
			Summary: Summary{Successful: 2, Failure: 1},
			FailureDetails: []FailureDetail{{ResultType: "tlsa-invalid", ReceivingMXHostname: "mx.example.test",
				FailedSessionCount: 1, FailureReasonCode: "TLSA: no match"}}},
	}
	if !reflect.DeepEqual(reps[0].Policies, want) {
		t.Fatalf("policies = %+v\nwant %+v", reps[0].Policies, want)
	}
}

// TestCountersSurviveRestart: aggregates written before the store closed
// are in the report after it reopens, and later ones add to them.
func TestCountersSurviveRestart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.db")
	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	a := enforcement.Attempt{Time: at, Domain: "example.test", PolicyType: enforcement.PolicyTypeNone}
	st := openBolt(t, path)
	record(t, st, repeat(3, a))
	st.Close()
	st = openBolt(t, path)
	defer st.Close()
	record(t, st, repeat(2, a))
	reps, err := (&Reporter{Store: st}).Reports(context.Background(), at, nil)
	if err != nil || len(reps) != 1 || reps[0].Policies[0].Summary.Successful != 5 {
		t.Fatalf("Reports = %+v, %v; want 5 successes", reps, err)
	}
}

// TestRecorderNeverBlocks: with no Run and a full buffer, RecordAttempt
// returns at once and counts what it dropped.
func TestRecorderNeverBlocks(t *testing.T) {
	var counted []string
	rec := &Recorder{Buffer: 2, Counted: func(r string) { counted = append(counted, r) }}
	done := make(chan struct{})
	go func() {
		for range 5 {
			rec.RecordAttempt(enforcement.Attempt{Domain: "example.test", Result: enforcement.ResultExpired})
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("RecordAttempt blocked")
	}
	if rec.Dropped() != 3 || len(counted) != 2 {
		t.Fatalf("dropped %d, counted %v; want 3 dropped, 2 counted", rec.Dropped(), counted)
	}
}
