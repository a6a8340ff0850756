package e2e

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"sealgate/e2e/gwstat"
	"sealgate/upstream/upstreamtest"
)

var (
	soakSessions = flag.Int("soak.sessions", 100, "concurrent inbound sessions of TestSoak")
	soakDuration = flag.Duration("soak.duration", 5*time.Second, "how long TestSoak starts new sessions")
)

// soakKind is one kind of inbound session of the soak.
type soakKind struct {
	name   string
	domain string
	// bdat sends the body with BDAT in two chunks instead of DATA.
	bdat bool
	// abandon closes the connection after half the body.
	abandon bool
	// slow writes the body in pieces with pauses.
	slow bool
	// want250 says the client must get 250; otherwise it must not (an
	// abandoned session gets no reply at all).
	want250 bool
	size    int
}

var soakKinds = []soakKind{
	{name: "DATA", domain: "ok.test", want250: true, size: 2 << 10},
	{name: "BDAT", domain: "ok.test", bdat: true, want250: true, size: 2 << 10},
	{name: "abandoned DATA", domain: "ok.test", abandon: true, size: 16 << 10},
	{name: "abandoned BDAT", domain: "ok.test", bdat: true, abandon: true, size: 16 << 10},
	{name: "slow client", domain: "ok.test", slow: true, want250: true, size: 2 << 10},
	{name: "slow MX", domain: "slowmx.test", want250: true, size: 2 << 10},
	{name: "MX drops mid-body", domain: "drop.test", size: 16 << 10},
	{name: "MX hangs up before its final reply", domain: "hang.test", size: 2 << 10},
	{name: "MX answers 421 to RCPT", domain: "busy.test", size: 2 << 10},
}

// TestSoak keeps soak.sessions inbound sessions running at once for
// soak.duration, with faults mixed in: clients that abandon DATA or BDAT
// midway, slow clients, BDAT, an MX that is slow, one that drops the
// connection mid-body, one that hangs up before its final reply, one that
// answers 421. It prints the gateway's goroutines and RSS at the start and
// end, and checks that every message completed at an MX is one whose
// client got 250, exactly once, and that the goroutines return to the
// baseline. `make soak` runs it with 1000 sessions for 60 s.
func TestSoak(t *testing.T) {
	w := newWorld(t)
	mxs := map[string]*upstreamtest.MX{}
	for domain, opts := range map[string]upstreamtest.MXOptions{
		"ok.test":     {},
		"slowmx.test": {Delay: map[upstreamtest.Stage]time.Duration{upstreamtest.StageRcpt: 50 * time.Millisecond, upstreamtest.StageData: 50 * time.Millisecond}},
		"drop.test":   {DropInData: 4 << 10},
		"hang.test":   {Hangup: map[upstreamtest.Stage]bool{upstreamtest.StageData: true}},
		"busy.test":   {RcptReply: &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 2}, Message: "busy"}, CloseOn421: true},
	} {
		opts.Certificate = w.cert("mx1." + domain)
		mxs[domain] = w.mx(domain, "mx1."+domain, 10, opts)
	}
	g := w.start(map[string]string{
		"SEALGATE_MAX_CONNECTIONS": strconv.Itoa(*soakSessions + 100),
	})
	admin := g.adminAddr()
	// One delivery first, so that what starts lazily counts in the
	// baseline.
	if res := g.send("a@legacy.sealgate.test", []string{"b@ok.test"}, message("warm-up")); res.Rcpt[0] != nil || res.Data != nil {
		t.Fatalf("warm-up: %+v", res)
	}
	baseGoroutines := goroutines(t, admin)
	baseRSS := procStatus(t, g.cmd.Process.Pid, "VmRSS")
	t.Logf("start: %d goroutines, RSS %d KiB; %d sessions for %v", baseGoroutines, baseRSS>>10, *soakSessions, *soakDuration)

	var (
		mu       sync.Mutex
		outcomes = map[string]string{} // token -> what the client saw
		wrong    = map[string]int{}    // kind: unexpected outcome -> count
		example  = map[string]string{}
		count    = map[string]int{}
		// sessions deferred with 451 4.4.3 because a query to the
		// fake DNS server timed out
		dnsTimeouts int
	)
	deadline := time.Now().Add(*soakDuration)
	var wg sync.WaitGroup
	for worker := 0; worker < *soakSessions; worker++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Start over a second, not all in the same instant.
			time.Sleep(time.Duration(worker) * time.Second / time.Duration(*soakSessions))
			// One source address per worker: the soak is about the
			// gateway's resources, not its per-address limits.
			src := &net.TCPAddr{IP: net.IPv4(127, 2, byte(worker/250), byte(worker%250+1))}
			for i := 0; time.Now().Before(deadline); i++ {
				kind := soakKinds[(worker+i)%len(soakKinds)]
				token := fmt.Sprintf("soak-%d-%d", worker, i)
				got := soakSession(g.addr, src, kind, token)
				mu.Lock()
				outcomes[token] = got
				count[kind.name]++
				if dnsOverload.MatchString(got) {
					// The fake DNS server's UDP socket overflowed: a
					// limit of the test bench, answered correctly.
					dnsTimeouts++
				} else if ok := (got == "250") == kind.want250 && (!kind.abandon || got == "abandoned"); !ok {
					key := kind.name + ": " + got
					wrong[key]++
					example[key] = token
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	for _, k := range soakKinds {
		t.Logf("%-36s %6d sessions", k.name, count[k.name])
	}
	if dnsTimeouts > 0 {
		t.Logf("%d sessions deferred with 451 4.4.3: a query to the fake DNS server timed out (its UDP receive buffer overflows under this load)", dnsTimeouts)
	}
	for key, n := range wrong {
		t.Errorf("%d sessions ended unexpectedly, e.g. %s: %s", n, example[key], key)
	}

	// Every message completed at an MX belongs to a client that got 250,
	// and every such client's message was completed exactly once.
	completed := map[string]int{}
	unfinished := 0
	for domain, mx := range mxs {
		mx.WaitIdle(30 * time.Second)
		for _, m := range mx.Messages() {
			if !m.Accepted || bytes.Contains(m.Data, []byte("\r\nSubject: warm-up\r\n")) {
				continue
			}
			token := soakToken(m.Data)
			completed[token]++
			if outcomes[token] != "250" {
				if unfinished++; unfinished <= 10 {
					t.Errorf("%s completed %s, whose client saw %q", domain, token, outcomes[token])
				}
			}
		}
	}
	if unfinished > 0 {
		t.Errorf("%d messages completed at an MX that their client did not get 250 for", unfinished)
	}
	delivered := 0
	for token, got := range outcomes {
		if got != "250" {
			continue
		}
		delivered++
		if n := completed[token]; n != 1 {
			t.Errorf("%s: the client got 250, the MX completed it %d times", token, n)
		}
	}

	// The gateway returns to its baseline once the sessions are over.
	var end int
	deadlineIdle := time.Now().Add(30 * time.Second)
	for end = goroutines(t, admin); end > baseGoroutines && time.Now().Before(deadlineIdle); end = goroutines(t, admin) {
		time.Sleep(100 * time.Millisecond)
	}
	endRSS := procStatus(t, g.cmd.Process.Pid, "VmRSS")
	peakRSS := procStatus(t, g.cmd.Process.Pid, "VmHWM")
	t.Logf("end: %d goroutines, RSS %d KiB (peak %d KiB); %d sessions, %d messages delivered",
		end, endRSS>>10, peakRSS>>10, len(outcomes), delivered)
	if end > baseGoroutines {
		t.Errorf("the gateway kept %d goroutines after the soak, %d before", end, baseGoroutines)
	}
}

// soakSession runs one inbound session of kind and returns what the
// client saw: "250", the reply that refused it ("451 ..."), "abandoned",
// or "error: ..." for a broken connection.
func soakSession(addr string, src *net.TCPAddr, kind soakKind, token string) string {
	d := net.Dialer{LocalAddr: src, Timeout: 30 * time.Second}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		return "error: " + err.Error()
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Minute))
	c := &rawSMTP{conn: conn, br: bufio.NewReader(conn)}
	if r, err := c.reply(); err != nil || !strings.HasPrefix(r, "220") {
		return fmt.Sprintf("error: greeting %q %v", r, err)
	}
	for _, cmd := range []string{"EHLO legacy.sealgate.test", "MAIL FROM:<a@legacy.sealgate.test>"} {
		if r, err := c.cmd(cmd); err != nil || !strings.HasPrefix(r, "250") {
			return fmt.Sprintf("error: %s: %q %v", cmd, r, err)
		}
	}
	if r, err := c.cmd("RCPT TO:<" + token + "@" + kind.domain + ">"); err != nil {
		return "error: RCPT: " + err.Error()
	} else if !strings.HasPrefix(r, "250") {
		return r
	}
	body := soakMessage(token, kind.size)
	cut := len(body)
	if kind.abandon {
		cut = len(body) / 2
	}
	var r string
	if kind.bdat {
		r, err = c.bdat(body, cut)
	} else {
		r, err = c.data(body, cut, kind.slow)
	}
	switch {
	case kind.abandon && err == nil && r == "":
		return "abandoned"
	case err != nil:
		return "error: DATA: " + err.Error()
	case strings.HasPrefix(r, "250"):
		c.cmd("QUIT")
		return "250"
	}
	return r
}

// rawSMTP is a minimal client that can stop anywhere, which go-smtp's
// client cannot, and speaks BDAT.
type rawSMTP struct {
	conn net.Conn
	br   *bufio.Reader
}

// reply reads one reply and returns its last line.
func (c *rawSMTP) reply() (string, error) {
	for {
		l, err := c.br.ReadString('\n')
		if err != nil {
			return "", err
		}
		if len(l) < 4 || l[3] != '-' {
			return strings.TrimSpace(l), nil
		}
	}
}

func (c *rawSMTP) cmd(line string) (string, error) {
	if _, err := io.WriteString(c.conn, line+"\r\n"); err != nil {
		return "", err
	}
	return c.reply()
}

// data sends DATA and the first cut bytes of body (no dot-stuffing needed:
// soakMessage has no line starting with a dot); when cut is the whole
// body it ends it and returns the final reply, else it returns "". slow
// writes in eight pieces 20 ms apart.
func (c *rawSMTP) data(body []byte, cut int, slow bool) (string, error) {
	if r, err := c.cmd("DATA"); err != nil || !strings.HasPrefix(r, "354") {
		return r, err
	}
	part := body[:cut]
	if slow {
		step := len(part)/8 + 1
		for len(part) > step {
			if _, err := c.conn.Write(part[:step]); err != nil {
				return "", err
			}
			part = part[step:]
			time.Sleep(20 * time.Millisecond)
		}
	}
	if _, err := c.conn.Write(part); err != nil {
		return "", err
	}
	if cut < len(body) {
		return "", nil
	}
	if _, err := io.WriteString(c.conn, ".\r\n"); err != nil {
		return "", err
	}
	return c.reply()
}

// bdat sends body in two BDAT chunks; when cut is short of the body it
// announces the last chunk whole but sends only up to cut, and returns "".
func (c *rawSMTP) bdat(body []byte, cut int) (string, error) {
	half := len(body) / 2
	if _, err := fmt.Fprintf(c.conn, "BDAT %d\r\n%s", half, body[:half]); err != nil {
		return "", err
	}
	if r, err := c.reply(); err != nil || !strings.HasPrefix(r, "250") {
		return r, err
	}
	if _, err := fmt.Fprintf(c.conn, "BDAT %d LAST\r\n%s", len(body)-half, body[half:max(cut, half)]); err != nil {
		return "", err
	}
	if cut < len(body) {
		return "", nil
	}
	return c.reply()
}

// soakMessage is a message of about size bytes whose Subject is token.
func soakMessage(token string, size int) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "From: a@legacy.sealgate.test\r\nSubject: %s\r\n\r\n", token)
	for b.Len() < size {
		b.WriteString("The quick brown fox jumps over the lazy dog, again and again.\r\n")
	}
	return b.Bytes()
}

var dnsOverload = regexp.MustCompile(`^451 4\.4\.3 .*DNS lookup .*timeout`)

var soakSubject = regexp.MustCompile(`(?m)^Subject: (soak-\d+-\d+)\r$`)

func soakToken(data []byte) string {
	if m := soakSubject.FindSubmatch(data); m != nil {
		return string(m[1])
	}
	return ""
}

var adminListening = regexp.MustCompile(`admin endpoint listening"? addr=(\S+)|"msg":"admin endpoint listening","addr":"([^"]+)"`)

// adminAddr returns the address of the gateway's admin endpoint.
func (g *gateway) adminAddr() string {
	g.t.Helper()
	m := adminListening.FindStringSubmatch(g.logs.String())
	if m == nil {
		g.t.Fatalf("no admin endpoint in the log:\n%s", g.logs.String())
	}
	return m[1] + m[2]
}

// goroutines reads go_goroutines from the admin endpoint's /metrics.
func goroutines(t *testing.T, admin string) int {
	t.Helper()
	n, err := gwstat.Goroutines(admin)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// procStatus reads a size field ("VmRSS", "VmHWM") of /proc/PID/status,
// in bytes.
func procStatus(t *testing.T, pid int, field string) int64 {
	t.Helper()
	n, err := gwstat.StatusBytes(pid, field)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
