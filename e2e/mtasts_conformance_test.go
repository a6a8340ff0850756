package e2e

import (
	"strings"
	"testing"

	"github.com/miekg/dns"

	"sealgate/upstream/upstreamtest"
)

// stsTXT replaces the _mta-sts TXT record of domain with one given in zone
// file syntax, e.g. `"v=STSv1;\009id=1;"`.
func (w *world) stsTXT(domain, rdata string) {
	w.dns.Remove("_mta-sts."+domain+".", dns.TypeTXT)
	w.dns.Add("_mta-sts." + domain + ". 300 IN TXT " + rdata)
}

// TestMTASTSConformance: policies and TXT records that RFC 8461 §3.1 and
// §3.2 make valid are applied, and a TXT record that they make invalid is
// ignored, through the DNS wire format and the HTTPS fetch.
func TestMTASTSConformance(t *testing.T) {
	w := newWorld(t)
	// Every policy below is enforce and names no MX host of its domain,
	// so a policy in force shows as a refusal and no connection.
	tab := w.mx("tab.test", "mx.tab.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx.tab.test")})
	w.sts("tab.test", "1", enforce("mail.tab.test"))
	w.stsTXT("tab.test", `"v=STSv1;\009id=1;"`)

	split := w.mx("split.test", "mx.split.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx.split.test")})
	w.sts("split.test", "1", enforce("mail.split.test"))
	w.stsTXT("split.test", `"v=STSv1;" "\009id=7" ";"`)

	rep := w.mx("rep.test", "mx.rep.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx.rep.test")})
	w.sts("rep.test", "1", "version: STSv1\nversion: STSv1\nmode: enforce\nmode: testing\nmode: none\n"+
		"max_age: 86400\nmax_age: 0\nmx: mail.rep.test\n")

	nonascii := w.mx("nonascii.test", "mx.nonascii.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx.nonascii.test")})
	w.sts("nonascii.test", "1", enforce("mail.nonascii.test"))
	w.stsTXT("nonascii.test", `"v=STSv1; id=1; x=caf\195\169"`)

	g := w.start(nil)
	refused := []struct {
		name   string
		domain string
		mx     *upstreamtest.MX
	}{
		{name: "tab after the semicolon of the TXT record", domain: "tab.test", mx: tab},
		{name: "TXT record in several strings with a tab", domain: "split.test", mx: split},
		{name: "repeated policy fields: the first counts", domain: "rep.test", mx: rep},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			res := g.send("a@legacy.sealgate.test", []string{"b@" + tc.domain}, message("x"))
			wantReply(t, "RCPT", res.Rcpt[0], 451, "4.7.5", tc.domain+": MTA-STS enforce", "no MX host matches")
			if tc.mx.Connections() != 0 {
				t.Fatal("an MX outside the policy got a connection: the policy was not applied")
			}
		})
	}
	t.Run("non-ASCII TXT record means no policy", func(t *testing.T) {
		res := g.send("a@legacy.sealgate.test", []string{"b@nonascii.test"}, message("x"))
		if res.Rcpt[0] != nil || res.Data != nil {
			t.Fatalf("an invalid TXT record announced a policy: %+v", res)
		}
		if len(nonascii.Messages()) != 1 {
			t.Fatal("no message at the MX")
		}
		logs := g.logs.String()
		if !strings.Contains(logs, "MTA-STS TXT record discarded") || !strings.Contains(logs, "domain=nonascii.test") {
			t.Errorf("the discarded record is not logged:\n%s", logs)
		}
	})
}
