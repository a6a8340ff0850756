package tlsrpt

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"strings"
	"time"
)

// Message is the report as the mail message of RFC 8460 §5.3: a
// multipart/report; report-type="tlsrpt" with a human-readable part and
// the gzip'd JSON as an application/tlsrpt+gzip attachment. The
// Message-ID is the report-id; Subject, TLS-Report-Domain and
// TLS-Report-Submitter name the policy domain and the submitter.
func Message(sub Submitter, r *Report, from, to string, date time.Time) ([]byte, error) {
	gz, err := r.Gzip()
	if err != nil {
		return nil, err
	}
	domain := ""
	if len(r.Policies) > 0 {
		domain = r.Policies[0].Policy.Domain
	}
	boundary := "tlsrpt-" + strings.NewReplacer("@", "-", ".", "-").Replace(r.ReportID)
	var b bytes.Buffer
	h := func(name, value string) { fmt.Fprintf(&b, "%s: %s\r\n", name, value) }
	h("From", "<"+from+">")
	h("To", "<"+to+">")
	h("Date", date.UTC().Format(time.RFC1123Z))
	h("Subject", fmt.Sprintf("Report Domain: %s Submitter: %s Report-ID: <%s>", domain, sub.Host, r.ReportID))
	h("Message-ID", "<"+r.ReportID+">")
	h("TLS-Report-Domain", domain)
	h("TLS-Report-Submitter", sub.Host)
	h("MIME-Version", "1.0")
	h("Content-Type", `multipart/report; report-type="tlsrpt"; boundary="`+boundary+`"`)
	b.WriteString("\r\n")
	b.WriteString("This is a multipart message in MIME format.\r\n\r\n")
	fmt.Fprintf(&b, "--%s\r\n", boundary)
	h("Content-Type", "text/plain; charset=us-ascii")
	h("Content-Transfer-Encoding", "7bit")
	b.WriteString("\r\n")
	fmt.Fprintf(&b, "This is an aggregate TLS report from %s for %s, %s (RFC 8460).\r\n\r\n",
		sub.Host, domain, r.DateRange.Start.Format(DayFormat))
	fmt.Fprintf(&b, "--%s\r\n", boundary)
	h("Content-Type", `application/tlsrpt+gzip; name="`+r.FileName(sub)+`"`)
	h("Content-Transfer-Encoding", "base64")
	h("Content-Disposition", `attachment; filename="`+r.FileName(sub)+`"`)
	b.WriteString("\r\n")
	enc := base64.StdEncoding.EncodeToString(gz)
	for len(enc) > 76 {
		b.WriteString(enc[:76] + "\r\n")
		enc = enc[76:]
	}
	b.WriteString(enc + "\r\n")
	fmt.Fprintf(&b, "--%s--\r\n", boundary)
	return b.Bytes(), nil
}
