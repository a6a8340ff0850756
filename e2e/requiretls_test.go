package e2e

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"testing"

	"sealgate/upstream/upstreamtest"
)

func TestREQUIRETLS(t *testing.T) {
	w := newWorld(t)
	ext := upstreamtest.Extensions{REQUIRETLS: true}
	sts := w.mx("sts.test", "mx.sts.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx.sts.test"), Extensions: ext})
	w.sts("sts.test", "1", enforce("mx.sts.test"))
	noext := w.mx("noext.test", "mx.noext.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx.noext.test")})
	w.sts("noext.test", "1", enforce("mx.noext.test"))
	floor := w.mx("floor.test", "mx.floor.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx.floor.test"), Extensions: ext})
	g := w.start(nil)

	send := func(t *testing.T, rcpt string) (rcptErr, dataErr error) {
		return sendRequireTLS(t, g, rcpt)
	}
	t.Run("MTA-STS enforce and an MX with REQUIRETLS", func(t *testing.T) {
		if r, d := send(t, "b@sts.test"); r != nil || d != nil {
			t.Fatalf("refused: %v %v", r, d)
		}
		m := sts.Messages()
		if len(m) != 1 || !m[0].MailOptions.RequireTLS {
			t.Fatalf("REQUIRETLS not carried upstream: %+v", m)
		}
	})
	t.Run("MX without REQUIRETLS", func(t *testing.T) {
		r, _ := send(t, "b@noext.test")
		wantReply(t, "RCPT", r, 550, "5.7.30", "noext.test", "REQUIRETLS")
		if noext.SawMailFrom() {
			t.Fatal("MX without REQUIRETLS saw MAIL FROM")
		}
	})
	t.Run("only the floor", func(t *testing.T) {
		r, _ := send(t, "b@floor.test")
		wantReply(t, "RCPT", r, 550, "5.7.30", "floor.test", "REQUIRETLS", "floor")
		if floor.Connections() != 0 {
			t.Fatal("an unauthenticated route got a connection")
		}
	})
	t.Run("not advertised and refused in cleartext", func(t *testing.T) {
		c, err := net.Dial("tcp", g.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		br := bufio.NewReader(c)
		readReply := func() string {
			var all string
			for {
				l, _ := br.ReadString('\n')
				all += l
				if len(l) < 4 || l[3] != '-' {
					return all
				}
			}
		}
		readReply()
		fmt.Fprint(c, "EHLO legacy.sealgate.test\r\n")
		if ehlo := readReply(); strings.Contains(ehlo, "REQUIRETLS") {
			t.Errorf("REQUIRETLS advertised in cleartext:\n%s", ehlo)
		}
		fmt.Fprint(c, "MAIL FROM:<a@legacy.sealgate.test> REQUIRETLS\r\n")
		if r := readReply(); !strings.HasPrefix(r, "530 5.7.10") {
			t.Errorf("REQUIRETLS in cleartext: %q, want 530 5.7.10", r)
		}
	})
}
