package proxy

import (
	"bufio"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"
)

var replyLine = regexp.MustCompile(`^[2-5][0-9][0-9][ -]`)

// FuzzSession feeds arbitrary command streams to an inbound session. Every
// line the server writes must be a well-formed reply, and the server must
// neither panic nor hang.
func FuzzSession(f *testing.F) {
	seeds := []string{
		"EHLO x.test\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\nhello\r\n.\r\n",
		"HELO x\r\nMAIL FROM:<> SIZE=10 BODY=8BITMIME\r\nRCPT TO:<b@example.test> NOTIFY=SUCCESS,FAILURE\r\n",
		"EHLO x\r\nAUTH PLAIN AGFsaWNlAHB3\r\nAUTH LOGIN\r\n*\r\n",
		"EHLO x\r\nMAIL FROM:<a@x> SMTPUTF8\r\nRCPT TO:<ü@exämple.test>\r\nBDAT 5 LAST\r\nhello",
		"EHLO x\r\nSTARTTLS\r\n\x16\x03\x01garbage",
		"RCPT TO:<x@y>\r\nDATA\r\nRSET\r\nNOOP\r\nVRFY a\r\nEXPN b\r\nHELP\r\n",
		"EHLO x\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<\"a b\"@[1.2.3.4]>\r\nRCPT TO:<@route:b@example.test>\r\n",
		strings.Repeat("A", 3000) + "\r\n",
	}
	for _, s := range seeds {
		f.Add(s)
	}
	_, dial := newTestServer(f, Options{})
	f.Fuzz(func(t *testing.T, input string) {
		c := dial("127.0.0.1")
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		go func() {
			io.WriteString(c, input)
			io.WriteString(c, "\r\nQUIT\r\n")
		}()
		sc := bufio.NewScanner(c)
		sc.Buffer(make([]byte, 64<<10), 64<<10)
		for sc.Scan() {
			line := sc.Text()
			if !replyLine.MatchString(line) {
				t.Fatalf("malformed reply line %q", line)
			}
			if strings.HasPrefix(line, "221 ") {
				return
			}
		}
	})
}
