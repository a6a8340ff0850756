package upstream

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"sealgate/certs/certstest"
	"sealgate/enforcement"
	"sealgate/upstream/upstreamtest"
)

var update = flag.Bool("update", false, "rewrite the golden transcripts in testdata")

// TestTranscripts records what sealgate sends to an MX, command by command,
// and compares it with testdata/*.golden (refresh with -update). Nothing
// but EHLO and STARTTLS may stand before the TLS handshake.
func TestTranscripts(t *testing.T) {
	ca := certstest.NewCA(t, "root")
	cert := ca.Leaf("mx.example.test")
	tests := []struct {
		name string
		opts upstreamtest.MXOptions
		mail *smtp.MailOptions
		from string // default a@example.test
		to   string // default b@example.test
	}{
		{name: "delivery", opts: upstreamtest.MXOptions{Certificate: &cert}},
		{name: "delivery-dsn", opts: upstreamtest.MXOptions{Certificate: &cert, Extensions: upstreamtest.Extensions{DSN: true, SMTPUTF8: true}},
			mail: &smtp.MailOptions{UTF8: true, Return: smtp.DSNReturnFull, EnvelopeID: "ID1"}},
		{name: "no-starttls", opts: upstreamtest.MXOptions{}},
		{name: "quoted-local-part", opts: upstreamtest.MXOptions{Certificate: &cert},
			from: "j doe@example.test", to: `x@y"\@example.test`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.Hostname = "mx.example.test"
			mx := upstreamtest.NewMX(t, tc.opts)
			c, err := deliverer(ca).Open(context.Background(), route("example.test", hostAt(t, "mx.example.test", mx.Addr(), enforcement.Requirement{})))
			if tc.from == "" {
				tc.from, tc.to = "a@example.test", "b@example.test"
			}
			if err == nil {
				if err := c.Mail(tc.from, tc.mail); err != nil {
					t.Fatal(err)
				}
				if err := c.Rcpt(tc.to, nil); err != nil {
					t.Fatal(err)
				}
				if _, err := c.Data([]byte("Received: x\r\n"), strings.NewReader("\r\nbody\r\n")); err != nil {
					t.Fatal(err)
				}
				c.Close()
			}
			mx.WaitIdle(5 * time.Second)
			var b strings.Builder
			for _, conn := range mx.Conns() {
				for _, cmd := range conn.Commands {
					b.WriteString("C: " + cmd + "\n")
				}
			}
			golden := filepath.Join("testdata", tc.name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if b.String() != string(want) {
				t.Errorf("transcript changed:\n--- got\n%s--- want\n%s", b.String(), want)
			}
		})
	}
}
