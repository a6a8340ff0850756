package tlsrpt

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Report is the JSON report of RFC 8460 §4.4.
type Report struct {
	OrganizationName string        `json:"organization-name"`
	DateRange        DateRange     `json:"date-range"`
	ContactInfo      string        `json:"contact-info"`
	ReportID         string        `json:"report-id"`
	Policies         []PolicyEntry `json:"policies"`
}

// DateRange is the UTC day a report covers.
type DateRange struct {
	Start time.Time `json:"start-datetime"`
	End   time.Time `json:"end-datetime"`
}

// PolicyEntry is one applied policy with its sessions.
type PolicyEntry struct {
	Policy         Policy          `json:"policy"`
	Summary        Summary         `json:"summary"`
	FailureDetails []FailureDetail `json:"failure-details,omitempty"`
}

// Policy describes an applied policy.
type Policy struct {
	Type   string   `json:"policy-type"`
	String []string `json:"policy-string,omitempty"`
	Domain string   `json:"policy-domain"`
	MXHost []string `json:"mx-host,omitempty"`
}

// Summary counts sessions.
type Summary struct {
	Successful int64 `json:"total-successful-session-count"`
	Failure    int64 `json:"total-failure-session-count"`
}

// FailureDetail is one kind of failure with its count.
type FailureDetail struct {
	ResultType          string `json:"result-type"`
	SendingMTAIP        string `json:"sending-mta-ip,omitempty"`
	ReceivingMXHostname string `json:"receiving-mx-hostname,omitempty"`
	ReceivingMXHelo     string `json:"receiving-mx-helo,omitempty"`
	ReceivingIP         string `json:"receiving-ip,omitempty"`
	FailedSessionCount  int64  `json:"failed-session-count"`
	AdditionalInfo      string `json:"additional-information,omitempty"`
	FailureReasonCode   string `json:"failure-reason-code,omitempty"`
}

// Submitter says who reports.
type Submitter struct {
	// Org is the organization-name.
	Org string
	// Contact is the contact-info.
	Contact string
	// Host is the submitting host name, in the report-id and the
	// attachment's file name.
	Host string
}

// Build aggregates the counters of one day and policy domain (as the
// Recorder stored them) into the report. Policies and failure details
// are sorted, so that the same counters always give the same report. It
// returns nil when the counters hold no session.
func Build(sub Submitter, day time.Time, domain string, counters map[string]int64) (*Report, error) {
	start := dayStart(day)
	rep := &Report{
		OrganizationName: sub.Org,
		DateRange:        DateRange{Start: start, End: start.Add(24*time.Hour - time.Second)},
		ContactInfo:      sub.Contact,
		ReportID:         ReportID(sub, start, domain),
	}
	byPolicy := map[string]*PolicyEntry{}
	for field, n := range counters {
		if n <= 0 {
			continue
		}
		var k key
		if err := json.Unmarshal([]byte(field), &k); err != nil {
			return nil, fmt.Errorf("tlsrpt: aggregate %q of %s: %w", field, domain, err)
		}
		pol := Policy{Type: k.Type, String: k.Policy, Domain: domain, MXHost: k.MX}
		pk := policyKey(pol)
		e := byPolicy[pk]
		if e == nil {
			e = &PolicyEntry{Policy: pol}
			byPolicy[pk] = e
		}
		if !k.Failures {
			e.Summary.Successful += n
			continue
		}
		e.Summary.Failure += n
		e.FailureDetails = append(e.FailureDetails, FailureDetail{
			ResultType: k.Result, SendingMTAIP: k.Sending, ReceivingMXHostname: k.MXHost,
			ReceivingIP: k.Receive, FailedSessionCount: n, FailureReasonCode: k.Reason,
		})
	}
	if len(byPolicy) == 0 {
		return nil, nil
	}
	for _, e := range byPolicy {
		slices.SortFunc(e.FailureDetails, func(a, b FailureDetail) int {
			return cmp.Or(cmp.Compare(a.ResultType, b.ResultType), cmp.Compare(a.ReceivingMXHostname, b.ReceivingMXHostname),
				cmp.Compare(a.ReceivingIP, b.ReceivingIP), cmp.Compare(a.SendingMTAIP, b.SendingMTAIP),
				cmp.Compare(a.FailureReasonCode, b.FailureReasonCode))
		})
		rep.Policies = append(rep.Policies, *e)
	}
	slices.SortFunc(rep.Policies, func(a, b PolicyEntry) int { return cmp.Compare(policyKey(a.Policy), policyKey(b.Policy)) })
	return rep, nil
}

func policyKey(p Policy) string {
	return p.Type + "\x00" + strings.Join(p.String, "\x01") + "\x00" + strings.Join(p.MXHost, "\x01")
}

func dayStart(day time.Time) time.Time {
	y, m, d := day.UTC().Date()
	return time.Date(y, m, d, 0, 0, 0, 0, time.UTC)
}

// ReportID is the report-id of the report of domain for day: the same
// for every replica and every run, so that a report can be recognised
// (it is also the Message-ID of a mailed report, without brackets).
func ReportID(sub Submitter, day time.Time, domain string) string {
	return dayStart(day).Format(DayFormat) + "." + domain + "@" + sub.Host
}

// JSON is the report as sent.
func (r *Report) JSON() ([]byte, error) {
	return json.Marshal(r)
}

// Gzip is the report as sent, compressed (RFC 8460 §5.1).
func (r *Report) Gzip() ([]byte, error) {
	js, err := r.JSON()
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write(js)
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// FileName is the attachment's file name (RFC 8460 §5.1):
// sender!policy-domain!begin-timestamp!end-timestamp.json.gz.
func (r *Report) FileName(sub Submitter) string {
	d := ""
	if len(r.Policies) > 0 {
		d = r.Policies[0].Policy.Domain
	}
	return fmt.Sprintf("%s!%s!%d!%d.json.gz", sub.Host, d, r.DateRange.Start.Unix(), r.DateRange.End.Unix())
}
