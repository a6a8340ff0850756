package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"golang.org/x/crypto/bcrypt"

	"sealgate/certs"
	"sealgate/certs/certstest"
	"sealgate/enforcement"
	"sealgate/upstream"
	"sealgate/upstream/upstreamtest"
)

// tcpServer runs a server on 127.0.0.1:0 with only 127.0.0.1 allowed, so
// that 127.0.0.2 and beyond act as outside clients.
type tcpServer struct {
	addr    string
	logs    *lineLog
	metrics *countRecorder
}

func newTCPServer(t *testing.T, opts Options) *tcpServer {
	t.Helper()
	opts = withTestDefaults(opts, "127.0.0.1/32")
	ts := &tcpServer{logs: &lineLog{}, metrics: &countRecorder{}}
	opts.Log = slog.New(slog.NewTextHandler(ts.logs, nil))
	opts.Metrics = ts.metrics
	s := New(opts)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts.addr = l.Addr().String()
	go s.Serve(l)
	t.Cleanup(func() { s.Close() })
	return ts
}

// withTestDefaults fills what the tests leave out of opts: our name, a
// router and an opener that fail, the allowed network.
func withTestDefaults(opts Options, allowed string) Options {
	if opts.Hostname == "" {
		opts.Hostname = "gw.example.test"
	}
	if opts.Router == nil {
		opts.Router = staticRouter{}
	}
	if opts.Opener == nil {
		opts.Opener = failOpener{}
	}
	if opts.AllowedNetworks == nil {
		opts.AllowedNetworks = []netip.Prefix{netip.MustParsePrefix(allowed)}
	}
	return opts
}

// client is one raw SMTP connection from a chosen loopback address.
type client struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func (ts *tcpServer) dial(t *testing.T, from string) *client {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c, br: bufio.NewReader(c)}
}

// reply reads one reply, waiting at most wait; "" when the connection
// ended first.
func (c *client) reply(wait time.Duration) string {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(wait))
	var sb strings.Builder
	for {
		l, err := c.br.ReadString('\n')
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				c.t.Fatalf("no reply within %v (so far %q)", wait, sb.String())
			}
			return strings.TrimRight(sb.String()+l, "\r\n")
		}
		sb.WriteString(l)
		if len(l) < 4 || l[3] != '-' {
			return strings.TrimRight(sb.String(), "\r\n")
		}
	}
}

func (c *client) send(line string) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, line+"\r\n"); err != nil {
		c.t.Fatal(err)
	}
}

func (c *client) cmd(line string) string {
	c.t.Helper()
	c.send(line)
	return c.reply(10 * time.Second)
}

// closed waits until the server has closed the connection.
func (c *client) closed(wait time.Duration) bool {
	c.c.SetReadDeadline(time.Now().Add(wait))
	_, err := io.Copy(io.Discard, c.br)
	return err == nil
}

// lineLog collects log lines.
type lineLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *lineLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, strings.Split(strings.TrimRight(string(p), "\n"), "\n")...)
	return len(p), nil
}

func (l *lineLog) matching(s string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range l.lines {
		if strings.Contains(line, s) {
			out = append(out, line)
		}
	}
	return out
}

// countRecorder counts refusals by reason.
type countRecorder struct {
	mu sync.Mutex
	n  map[string]int
}

func (r *countRecorder) ConnectionRefused(reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n == nil {
		r.n = map[string]int{}
	}
	r.n[reason]++
}

func (r *countRecorder) get(reason string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n[reason]
}

// eventually polls cond for up to five seconds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("%s: not within 5s", what)
}

func TestOutsideFloodLeavesRoomForAllowedNetworks(t *testing.T) {
	ts := newTCPServer(t, Options{MaxConnections: 100})
	accepted, refused := 0, 0
	for i := range 100 {
		c := ts.dial(t, fmt.Sprintf("127.0.0.%d", 2+i/10))
		switch r := c.reply(5 * time.Second); {
		case strings.HasPrefix(r, "220 "):
			accepted++
		case strings.HasPrefix(r, "421 4.3.2 "):
			refused++
		default:
			t.Fatalf("outside client %d got %q", i, r)
		}
	}
	if accepted != 80 || refused != 20 {
		t.Errorf("outside clients: %d accepted, %d refused; want 80 and 20 (a fifth reserved)", accepted, refused)
	}
	for i := range 20 {
		c := ts.dial(t, "127.0.0.1")
		if r := c.reply(5 * time.Second); !strings.HasPrefix(r, "220 ") {
			t.Fatalf("allowed client %d locked out by the flood: %q", i, r)
		}
	}
	c := ts.dial(t, "127.0.0.1")
	if r := c.reply(5 * time.Second); !strings.HasPrefix(r, "421 4.3.2 ") {
		t.Errorf("client beyond MaxConnections got %q, want 421 4.3.2", r)
	}
	if n := ts.metrics.get(ReasonReserved); n != 20 {
		t.Errorf("refusals counted for reserved slots: %d, want 20", n)
	}
}

func TestConnectionsPerAddress(t *testing.T) {
	tests := []struct {
		name  string
		first string // fills its address's quota
		same  string // counts as the same address
		other string // another address
	}{
		{name: "IPv4", first: "127.0.0.5", same: "127.0.0.5", other: "127.0.0.6"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ts := newTCPServer(t, Options{Limits: Limits{MaxConnectionsPerIP: 3}})
			var first []*client
			for range 3 {
				c := ts.dial(t, tc.first)
				if r := c.reply(5 * time.Second); !strings.HasPrefix(r, "220 ") {
					t.Fatalf("connection within the limit got %q", r)
				}
				first = append(first, c)
			}
			c := ts.dial(t, tc.same)
			if r := c.reply(5 * time.Second); !strings.HasPrefix(r, "421 4.7.0 ") {
				t.Fatalf("connection beyond the limit got %q, want 421 4.7.0", r)
			}
			if !c.closed(5 * time.Second) {
				t.Error("refused connection not closed")
			}
			if r := ts.dial(t, tc.other).reply(5 * time.Second); !strings.HasPrefix(r, "220 ") {
				t.Errorf("another address got %q", r)
			}
			// A slot comes back when a connection ends.
			first[0].cmd("QUIT")
			eventually(t, "slot given back", func() bool {
				c := ts.dial(t, tc.same)
				defer c.c.Close()
				return strings.HasPrefix(c.reply(5*time.Second), "220 ")
			})
			if n := ts.metrics.get(ReasonPerAddress); n < 1 {
				t.Errorf("per-address refusals counted: %d", n)
			}
		})
	}
}

func TestAddrKeyGroupsIPv6By64(t *testing.T) {
	tests := []struct {
		name string
		a, b string
		same bool
	}{
		{name: "IPv4 addresses apart", a: "192.0.2.1", b: "192.0.2.2", same: false},
		{name: "IPv6 in one /64", a: "2001:db8:1:2::1", b: "2001:db8:1:2:ffff::9", same: true},
		{name: "IPv6 in two /64", a: "2001:db8:1:2::1", b: "2001:db8:1:3::1", same: false},
		{name: "IPv4-mapped", a: "::ffff:192.0.2.1", b: "192.0.2.1", same: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ka, kb := addrKey(netip.MustParseAddr(tc.a)), addrKey(netip.MustParseAddr(tc.b))
			if (ka == kb) != tc.same {
				t.Errorf("addrKey(%s)=%s, addrKey(%s)=%s; same=%v, want %v", tc.a, ka, tc.b, kb, ka == kb, tc.same)
			}
		})
	}
}

func TestNOOPLoopCutAfterIdleBound(t *testing.T) {
	const idle = time.Second
	ts := newTCPServer(t, Options{Limits: Limits{SessionIdleTimeout: idle}})
	start := time.Now()
	c := ts.dial(t, "127.0.0.1")
	c.reply(5 * time.Second)
	c.cmd("EHLO legacy.example.test")
	var last string
	for time.Since(start) < 10*time.Second {
		c.send("NOOP")
		r := c.reply(5 * time.Second)
		if !strings.HasPrefix(r, "250 ") {
			last = r
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	took := time.Since(start)
	if !strings.HasPrefix(last, "421 4.4.2 ") {
		t.Fatalf("NOOP loop not cut within 10s; last reply %q", last)
	}
	if took < idle || took > 5*time.Second {
		t.Errorf("cut after %v, want between %v and 5s", took, idle)
	}
	if !c.closed(5 * time.Second) {
		t.Error("connection not closed after 421")
	}
	if n := ts.metrics.get(ReasonIdle); n != 1 {
		t.Errorf("idle cuts counted: %d, want 1", n)
	}
}

func TestCommandTrickleCut(t *testing.T) {
	const timeout = time.Second
	ts := newTCPServer(t, Options{CommandTimeout: timeout, DataTimeout: timeout})
	c := ts.dial(t, "127.0.0.1")
	c.reply(5 * time.Second)
	start := time.Now()
	// One byte every 200ms: each read comes well within the timeout, the
	// line never ends.
	line := "MAIL FROM:<" + strings.Repeat("a", 100)
	for i := 0; i < len(line) && time.Since(start) < 10*time.Second; i++ {
		if _, err := c.c.Write([]byte{line[i]}); err != nil {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	took := time.Since(start)
	// go-smtp may first answer the part of the line read before the
	// deadline; the 421 must follow at once.
	var r string
	for r = c.reply(5 * time.Second); strings.HasPrefix(r, "50"); r = c.reply(5 * time.Second) {
	}
	if !strings.HasPrefix(r, "421 4.4.2 ") {
		t.Fatalf("trickled command got %q, want 421 4.4.2", r)
	}
	if took < timeout || took > 5*time.Second {
		t.Errorf("cut after about %v, want between %v and 5s", took, timeout)
	}
}

// mxWorld is a fake MX behind a real Deliverer, so that recipients are
// accepted and bodies flow.
type mxWorld struct {
	mx     *upstreamtest.MX
	router Router
	opener Opener
}

func newMXWorld(t *testing.T) *mxWorld {
	t.Helper()
	ca := certstest.NewCA(t, "root")
	cert := ca.Leaf("mx.example.test")
	mx := upstreamtest.NewMX(t, upstreamtest.MXOptions{Hostname: "mx.example.test", Certificate: &cert})
	ap := netip.MustParseAddrPort(mx.Addr())
	host := enforcement.Host{Name: "mx.example.test", Addrs: []netip.Addr{ap.Addr()}, Port: int(ap.Port()),
		Req: enforcement.Requirement{Source: enforcement.SourceFloor, Level: enforcement.LevelEncrypt}}
	d := &upstream.Deliverer{
		Hostname: "gw.example.test",
		Verifier: &enforcement.Verifier{},
		Log:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	return &mxWorld{mx: mx, router: hostRouter{host}, opener: Deliverer(d)}
}

// hostRouter routes every domain to one host.
type hostRouter struct{ h enforcement.Host }

func (r hostRouter) Resolve(_ context.Context, domain string) (*enforcement.Route, error) {
	return &enforcement.Route{Domain: domain, Hosts: []enforcement.Host{r.h}}, nil
}

func (r hostRouter) RelaxedRoute(ctx context.Context, domain string) (*enforcement.Route, error) {
	return r.Resolve(ctx, domain)
}

func TestBodyTrickleCutLongTransferPasses(t *testing.T) {
	const timeout = time.Second
	tests := []struct {
		name     string
		chunk    int
		pause    time.Duration
		duration time.Duration // sending for this long at most
		wantCut  bool
	}{
		{name: "a byte every 200ms", chunk: 1, pause: 200 * time.Millisecond, duration: 10 * time.Second, wantCut: true},
		{name: "16 KiB every 50ms for 3s", chunk: 16 << 10, pause: 50 * time.Millisecond, duration: 3 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newMXWorld(t)
			ts := newTCPServer(t, Options{CommandTimeout: timeout, DataTimeout: timeout, Router: w.router, Opener: w.opener,
				Limits: Limits{SessionIdleTimeout: timeout}})
			c := ts.dial(t, "127.0.0.1")
			c.reply(5 * time.Second)
			for _, cmd := range []string{"EHLO legacy.example.test", "MAIL FROM:<a@legacy.example.test>", "RCPT TO:<b@example.test>", "DATA"} {
				if r := c.cmd(cmd); r[0] != '2' && r[0] != '3' {
					t.Fatalf("%s: %q", cmd, r)
				}
			}
			start := time.Now()
			c.c.Write([]byte("Subject: slow\r\n\r\n"))
			body := bytes.Repeat([]byte(strings.Repeat("x", 78)+"\r\n"), 1+tc.chunk/80)
			for sent := 0; time.Since(start) < tc.duration; sent += tc.chunk {
				off := sent % (len(body) - tc.chunk)
				if _, err := c.c.Write(body[off : off+tc.chunk]); err != nil {
					break
				}
				time.Sleep(tc.pause)
			}
			took := time.Since(start)
			c.c.Write([]byte("\r\n.\r\n"))
			r := c.reply(10 * time.Second)
			if !tc.wantCut {
				if !strings.HasPrefix(r, "250 ") {
					t.Fatalf("transfer of %v at a good rate got %q", took, r)
				}
				if n := accepted(w.mx); n != 1 {
					t.Errorf("MX accepted %d messages, want 1", n)
				}
				return
			}
			if r[0] != '4' {
				t.Fatalf("trickled body got %q, want 4xx", r)
			}
			if took < timeout || took > 5*time.Second {
				t.Errorf("cut after about %v, want between %v and 5s", took, timeout)
			}
			if !c.closed(5 * time.Second) {
				t.Error("connection not closed")
			}
			if n := accepted(w.mx); n != 0 {
				t.Error("MX accepted the cut message")
			}
		})
	}
}

func accepted(mx *upstreamtest.MX) int {
	n := 0
	for _, m := range mx.Messages() {
		if m.Accepted {
			n++
		}
	}
	return n
}

// authClient opens a TLS session from addr and returns it after EHLO.
func authClient(t *testing.T, ts *tcpServer, from string) *client {
	t.Helper()
	c := ts.dial(t, from)
	c.reply(5 * time.Second)
	c.cmd("EHLO legacy.example.test")
	if r := c.cmd("STARTTLS"); !strings.HasPrefix(r, "220 ") {
		t.Fatalf("STARTTLS: %q", r)
	}
	tc := tls.Client(c.c, &tls.Config{InsecureSkipVerify: true})
	c.c, c.br = tc, bufio.NewReader(tc)
	if r := c.cmd("EHLO legacy.example.test"); !strings.Contains(r, "AUTH") {
		t.Fatalf("no AUTH under TLS: %q", r)
	}
	return c
}

func plain(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte("\x00" + user + "\x00" + pass))
}

func TestAuthGuessingDelayedThenLockedOut(t *testing.T) {
	const delay = 200 * time.Millisecond
	hash, _ := bcrypt.GenerateFromPassword([]byte("right"), bcrypt.MinCost)
	kp, err := certs.SelfSigned("gw.example.test")
	if err != nil {
		t.Fatal(err)
	}
	ts := newTCPServer(t, Options{TLSConfig: tlsConfig(kp), Users: Users{"alice": hash},
		Limits: Limits{AuthMaxFailures: 3, AuthFailureDelay: delay}})

	c := authClient(t, ts, "127.0.0.7")
	for i, want := range []time.Duration{delay, 2 * delay, 4 * delay} {
		start := time.Now()
		r := c.cmd("AUTH PLAIN " + plain("alice", "guess"))
		took := time.Since(start)
		if took < want || took > want+3*time.Second {
			t.Errorf("failure %d answered after %v, want %v", i+1, took, want)
		}
		if i < 2 && !strings.HasPrefix(r, "535 ") {
			t.Fatalf("failure %d: %q, want 535", i+1, r)
		}
		if i == 2 && !strings.HasPrefix(r, "421 4.7.0 ") {
			t.Fatalf("failure %d: %q, want 421 4.7.0", i+1, r)
		}
	}
	if !c.closed(5 * time.Second) {
		t.Fatal("connection not closed after too many failures")
	}

	// Reconnecting does not reset the count, even with the right password.
	c = authClient(t, ts, "127.0.0.7")
	start := time.Now()
	if r := c.cmd("AUTH PLAIN " + plain("alice", "right")); !strings.HasPrefix(r, "421 4.7.0 ") {
		t.Fatalf("AUTH after reconnecting: %q, want 421 4.7.0", r)
	}
	if took := time.Since(start); took > 3*time.Second {
		t.Errorf("locked-out AUTH took %v; a refusal should be cheap", took)
	}
	if !c.closed(5 * time.Second) {
		t.Fatal("locked-out connection not closed")
	}
	// Another address is not punished.
	c = authClient(t, ts, "127.0.0.8")
	if r := c.cmd("AUTH PLAIN " + plain("alice", "right")); !strings.HasPrefix(r, "235 ") {
		t.Fatalf("AUTH from another address: %q, want 235", r)
	}
	if n := ts.metrics.get(ReasonAuth); n != 2 {
		t.Errorf("auth lockouts counted: %d, want 2", n)
	}
}

func TestPenaltyBoxForgets(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := newPenaltyBox(Limits{AuthMaxFailures: 2, AuthLockout: time.Minute, TrackedAddresses: 2}, func() time.Time { return now })
	a, b, c := addrKey(netip.MustParseAddr("192.0.2.1")), addrKey(netip.MustParseAddr("192.0.2.2")), addrKey(netip.MustParseAddr("192.0.2.3"))
	steps := []struct {
		name    string
		advance time.Duration
		fail    netip.Prefix
		want    int // count after the failure
		locked  bool
	}{
		{name: "first failure", fail: a, want: 1},
		{name: "second failure locks", advance: 10 * time.Second, fail: a, want: 2, locked: true},
		{name: "still locked", advance: 50 * time.Second, locked: true},
		{name: "lockout over", advance: 11 * time.Second},
		{name: "count forgotten after a quiet lockout period", advance: time.Minute, fail: a, want: 1},
		{name: "other addresses", fail: b, want: 1},
		{name: "third address evicts the least recent", fail: c, want: 1},
		{name: "evicted address starts again", fail: a, want: 1},
	}
	for _, st := range steps {
		now = now.Add(st.advance)
		if st.fail.IsValid() {
			if got := p.fail(st.fail); got != st.want {
				t.Errorf("%s: count %d, want %d", st.name, got, st.want)
			}
		}
		if got := p.locked(a); got != st.locked {
			t.Errorf("%s: locked %v, want %v", st.name, got, st.locked)
		}
	}
}

// countingSASL records how many steps run at once.
type countingSASL struct {
	running, peak *atomic.Int32
}

func (s countingSASL) Next([]byte) ([]byte, bool, error) {
	n := s.running.Add(1)
	for {
		p := s.peak.Load()
		if n <= p || s.peak.CompareAndSwap(p, n) {
			break
		}
	}
	time.Sleep(20 * time.Millisecond)
	s.running.Add(-1)
	return nil, true, errAuthFailed
}

var _ sasl.Server = countingSASL{}

func TestPasswordChecksBoundedProcessWide(t *testing.T) {
	var running, peak atomic.Int32
	sem := make(chan struct{}, 2)
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			g := &guardedSASL{inner: countingSASL{&running, &peak}, sem: sem, failed: func(err error) error { return err }}
			if _, _, err := g.Next(nil); !errors.Is(err, errAuthFailed) {
				t.Errorf("error %v, want the mechanism's", err)
			}
		}()
	}
	wg.Wait()
	if p := peak.Load(); p != 2 {
		t.Errorf("%d checks ran at once, want 2", p)
	}
}

func TestRefusalLogRateLimited(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	logs := &lineLog{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	r := newRateLog(time.Minute, 16, func() time.Time { return now })
	for range 100 {
		r.warn(log, "per_address 192.0.2.1", "connection refused", "client", "192.0.2.1")
		now = now.Add(100 * time.Millisecond)
	}
	r.warn(log, "per_address 192.0.2.2", "connection refused", "client", "192.0.2.2")
	if got := logs.matching("connection refused"); len(got) != 2 {
		t.Fatalf("%d lines for 101 refusals of two addresses, want 2:\n%s", len(got), strings.Join(got, "\n"))
	}
	now = now.Add(time.Minute)
	r.warn(log, "per_address 192.0.2.1", "connection refused", "client", "192.0.2.1")
	got := logs.matching("connection refused")
	if len(got) != 3 || !strings.Contains(got[2], "suppressed=99") {
		t.Errorf("line after the interval does not count the held-back lines:\n%s", strings.Join(got, "\n"))
	}
	if s := logs.matching("refusals not logged"); len(s) != 1 || !strings.Contains(s[0], "count=99") {
		t.Errorf("summary lines: %q, want one with count=99", s)
	}
}

func TestRefusalFloodLogsFewLines(t *testing.T) {
	ts := newTCPServer(t, Options{Limits: Limits{MaxConnectionsPerIP: 1}})
	first := ts.dial(t, "127.0.0.9")
	first.reply(5 * time.Second)
	for range 50 {
		c := ts.dial(t, "127.0.0.9")
		if r := c.reply(5 * time.Second); !strings.HasPrefix(r, "421 ") {
			t.Fatalf("got %q, want 421", r)
		}
		c.c.Close()
	}
	if got := ts.logs.matching("connection refused"); len(got) != 1 {
		t.Errorf("%d log lines for 50 refusals of one address within a minute, want 1", len(got))
	}
	if n := ts.metrics.get(ReasonPerAddress); n != 50 {
		t.Errorf("refusals counted: %d, want 50", n)
	}
}

// TestStallInsideMessageDeferred: a client that stops sending in the
// middle of its message is deferred (4xx, then the connection ends),
// never bounced, whether it sent DATA or a BDAT chunk. go-smtp reads BDAT
// chunks itself and answered a chunk whose read timed out with 554.
func TestStallInsideMessageDeferred(t *testing.T) {
	const timeout = time.Second
	for _, tc := range []struct {
		name  string
		start []string // commands answered 2xx or 3xx
		part  string   // then these bytes, then silence
	}{
		{name: "DATA", start: []string{"DATA"}, part: "Subject: x\r\n\r\npartial"},
		{name: "BDAT LAST", part: "BDAT 100 LAST\r\nSubject: x\r\n\r\npartial"},
		{name: "BDAT after a whole chunk", start: []string{"BDAT 14\r\nSubject: x\r\n"}, part: "BDAT 100 LAST\r\npartial"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			w := newMXWorld(t)
			ts := newTCPServer(t, Options{CommandTimeout: timeout, DataTimeout: timeout, Router: w.router, Opener: w.opener,
				Limits: Limits{SessionIdleTimeout: timeout}})
			c := ts.dial(t, "127.0.0.1")
			c.reply(5 * time.Second)
			for _, cmd := range append([]string{"EHLO legacy.example.test", "MAIL FROM:<a@legacy.example.test>", "RCPT TO:<b@example.test>"}, tc.start...) {
				if r := c.cmd(cmd); r[0] != '2' && r[0] != '3' {
					t.Fatalf("%q: %q", cmd, r)
				}
			}
			c.c.Write([]byte(tc.part))
			r := c.reply(10 * time.Second)
			if r[0] != '4' {
				t.Fatalf("a client that stalled inside its message got %q, want 4xx", r)
			}
			if !c.closed(10 * time.Second) {
				t.Error("connection not closed")
			}
			if n := accepted(w.mx); n != 0 {
				t.Error("MX accepted the unfinished message")
			}
		})
	}
}

// TestSTARTTLSFailedHandshakeEndsSession: commands sent together with
// STARTTLS are never run, also when the handshake then fails (go-smtp
// would go on in plaintext with the commands it had buffered): the
// session ends after the failure's reply, and nothing reaches the MX.
func TestSTARTTLSFailedHandshakeEndsSession(t *testing.T) {
	kp, err := certs.SelfSigned("gw.example.test")
	if err != nil {
		t.Fatal(err)
	}
	w := newMXWorld(t)
	ts := newTCPServer(t, Options{TLSConfig: tlsConfig(kp), Router: w.router, Opener: w.opener})
	c := ts.dial(t, "127.0.0.1")
	c.reply(5 * time.Second)
	c.cmd("EHLO legacy.example.test")
	c.c.Write([]byte("STARTTLS\r\nMAIL FROM:<inj@evil.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\nSubject: injected\r\n\r\nx\r\n.\r\n"))
	if r := c.reply(5 * time.Second); !strings.HasPrefix(r, "220 ") {
		t.Fatalf("STARTTLS: %q", r)
	}
	c.c.Write([]byte("GARBAGE GARBAGE GARBAGE\r\n")) // no TLS ClientHello
	if r := c.reply(5 * time.Second); !strings.HasPrefix(r, "550 5.0.0") {
		t.Fatalf("after a failed handshake: %q, want go-smtp's 550", r)
	}
	if !c.closed(5 * time.Second) {
		t.Error("the session went on after the failed handshake")
	}
	w.mx.WaitIdle(5 * time.Second)
	if n := len(w.mx.Conns()); n != 0 {
		t.Errorf("the MX got %d connections: the injected commands ran", n)
	}
}

// TestMalformedAuthResponse501: a PLAIN response the mechanism cannot
// parse can never succeed: 501 (RFC 4954 §4), not go-smtp's 454, which
// would have a client retry it.
func TestMalformedAuthResponse501(t *testing.T) {
	hash, _ := bcrypt.GenerateFromPassword([]byte("right"), bcrypt.MinCost)
	kp, err := certs.SelfSigned("gw.example.test")
	if err != nil {
		t.Fatal(err)
	}
	ts := newTCPServer(t, Options{TLSConfig: tlsConfig(kp), Users: Users{"alice": hash},
		Limits: Limits{AuthMaxFailures: 10, AuthFailureDelay: time.Millisecond}})
	for _, resp := range []string{"no NUL at all", "a\x00alice\x00right\x00extra"} {
		c := authClient(t, ts, "127.0.0.1")
		r := c.cmd("AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte(resp)))
		if !strings.HasPrefix(r, "501 5.5.2") {
			t.Errorf("PLAIN response %q answered %q, want 501 5.5.2", resp, r)
		}
	}
}
