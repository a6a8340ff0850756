package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"sealgate/certs/certstest"
	"sealgate/enforcement"
	"sealgate/upstream"
	"sealgate/upstream/upstreamtest"
)

// The promise these tests hold the gateway to: the MX completes a message
// (answers 250 after the end-of-data dot) only if the client finished it
// (the DATA dot, or a BDAT LAST chunk that arrived whole) and then got the
// MX's reply; and the completed message is exactly what the client sent
// after one prepended Received header. A message the client abandons (RSET,
// QUIT, a new MAIL, a closed or half-closed socket, a chunk over the size
// limit, a chunk or body cut short) never reaches the MX's 250, not even
// in part.

// gateway is a Server on 127.0.0.1:0 that relays over STARTTLS to a
// recording fake MX.
type gateway struct {
	srv  *Server
	addr string
	mx   *upstreamtest.MX
}

// mxRouter routes every domain to one MX host under the encrypt floor.
type mxRouter struct{ host enforcement.Host }

func (r mxRouter) Resolve(_ context.Context, domain string) (*enforcement.Route, error) {
	return &enforcement.Route{Domain: domain, Hosts: []enforcement.Host{r.host}}, nil
}

func (r mxRouter) RelaxedRoute(ctx context.Context, domain string) (*enforcement.Route, error) {
	return r.Resolve(ctx, domain)
}

var _ Router = mxRouter{}

// newGateway starts an MX with cert and a gateway in front of it whose
// SIZE limit is maxBytes (the default if 0). Both close with t.
func newGateway(t testing.TB, cert *tls.Certificate, maxBytes int64, change ...func(*Options)) *gateway {
	t.Helper()
	mx := upstreamtest.NewMX(t, upstreamtest.MXOptions{Hostname: "mx.example.test", Certificate: cert})
	ap := netip.MustParseAddrPort(mx.Addr())
	host := enforcement.Host{
		Name: "mx.example.test", Addrs: []netip.Addr{ap.Addr()}, Port: int(ap.Port()),
		Req: enforcement.Requirement{Source: enforcement.SourceFloor, Level: enforcement.LevelEncrypt},
	}
	discard := slog.New(slog.NewTextHandler(io.Discard, nil))
	opts := Options{
		Hostname:        "gw.example.test",
		AllowedNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		MaxMessageBytes: maxBytes,
		CommandTimeout:  sessionWait,
		DataTimeout:     sessionWait,
		UpstreamTimeout: sessionWait,
		Router:          mxRouter{host: host},
		Opener: Deliverer(&upstream.Deliverer{
			Hostname:       "gw.example.test",
			Verifier:       &enforcement.Verifier{},
			CommandTimeout: sessionWait,
			DataTimeout:    sessionWait,
			Log:            discard,
		}),
		Log: discard,
	}
	for _, c := range change {
		c(&opts)
	}
	srv := New(opts)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return &gateway{srv: srv, addr: l.Addr().String(), mx: mx}
}

// settle waits, once the clients have left, for the gateway's sessions to
// end and the MX to be idle, then stops the MX so that its record is
// complete, and fails the test if a session goroutine is left.
func (g *gateway) settle(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), sessionWait)
	defer cancel()
	if err := g.srv.Shutdown(ctx); err != nil {
		t.Fatalf("gateway sessions still open after their clients left: %v", err)
	}
	g.mx.WaitIdle(sessionWait)
	g.mx.Close()
	waitSessionsEnd(t)
}

// promiseKept compares what the MX accepted with the messages the client
// finished and saw accepted, in order: the same number, and each MX
// message is the client's body after one Received header.
func promiseKept(mx *upstreamtest.MX, sent [][]byte) error {
	var accepted [][]byte
	for _, m := range mx.Messages() {
		if m.Accepted {
			accepted = append(accepted, m.Data)
		}
	}
	if len(accepted) != len(sent) {
		return fmt.Errorf("the MX accepted %d messages, the client finished %d and saw them accepted\nMX accepted: %s\nclient sent: %s",
			len(accepted), len(sent), quoteAll(accepted), quoteAll(sent))
	}
	for i, got := range accepted {
		if err := sameMessage(got, sent[i]); err != nil {
			return fmt.Errorf("message %d: %w\nMX got:      %.300q\nclient sent: %.300q", i, err, got, sent[i])
		}
	}
	return nil
}

// sameMessage checks that data is body after exactly one Received header
// field, as DATA carries it: a body that does not end with CRLF gets one
// (RFC 5321 §4.1.1.4).
func sameMessage(data, body []byte) error {
	want := body
	switch {
	case len(body) == 0, bytes.HasSuffix(body, []byte("\r\n")):
	case bytes.HasSuffix(body, []byte("\r")):
		want = append(bytes.Clone(body), '\n')
	default:
		want = append(bytes.Clone(body), "\r\n"...)
	}
	if !bytes.HasSuffix(data, want) {
		return errors.New("the body differs from what the client sent")
	}
	hdr := string(data[:len(data)-len(want)])
	if !strings.HasPrefix(hdr, "Received: from ") || !strings.Contains(hdr, "by gw.example.test (sealgate)") {
		return fmt.Errorf("no Received header of ours before the body: %.200q", hdr)
	}
	if !strings.HasSuffix(hdr, "\r\n") || strings.Count(hdr, "\r\n") != strings.Count(hdr, "\r\n\t")+1 {
		return fmt.Errorf("more than one header field before the body: %q", hdr)
	}
	return nil
}

func quoteAll(msgs [][]byte) string {
	var b strings.Builder
	for _, m := range msgs {
		fmt.Fprintf(&b, "\n  %.200q", m)
	}
	return b.String()
}

// propMaxBytes is the SIZE limit of the property fuzzer's gateway; a
// chunk may be half as large again, so that some go over it.
const (
	propMaxBytes = 2048
	propMaxChunk = propMaxBytes * 3 / 2
	propMaxOps   = 32
)

// opKind is one step of a legacy client.
type opKind uint8

const (
	opMail     opKind = iota // MAIL FROM and RCPT TO
	opData                   // DATA, the body, the dot
	opBdat                   // BDAT n [LAST] and the whole chunk
	opRset                   // RSET
	opNoop                   // NOOP
	opQuit                   // QUIT, then a new connection for what follows
	opHangUp                 // close (or half-close) the socket between commands
	opCutChunk               // BDAT n [LAST], part of the chunk, then hang up
	opCutData                // DATA, part of the body, then hang up
	numOpKinds
)

var opNames = [...]string{"MAIL", "DATA", "BDAT", "RSET", "NOOP", "QUIT", "hang up", "cut chunk", "cut DATA"}

// op is one decoded step. The flags ride in the kind byte above the kind.
type op struct {
	kind opKind
	last bool   // BDAT: with LAST
	half bool   // hang up with a half-close: read the replies to the end
	data []byte // the chunk, or the DATA body before dot-stuffing
	cut  int    // how much of data goes out before a hang-up
}

func (o op) String() string {
	s := opNames[o.kind]
	if o.last && (o.kind == opBdat || o.kind == opCutChunk) {
		s += " LAST"
	}
	if o.half && (o.kind == opHangUp || o.kind == opCutChunk || o.kind == opCutData) {
		s += " (half-close)"
	}
	switch o.kind {
	case opBdat, opData:
		s += fmt.Sprintf(" %d bytes", len(o.data))
	case opCutChunk, opCutData:
		s += fmt.Sprintf(" %d of %d bytes", o.cut, len(o.data))
	}
	return s
}

// opReader hands out the fuzz input byte by byte, zeros once it runs
// out.
type opReader struct{ b []byte }

func (r *opReader) next() byte {
	if len(r.b) == 0 {
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// decodeOps turns fuzz input into client steps. A step is a kind byte
// (kind = b % numOpKinds; above it bit 0 raw chunk bytes, bit 1 LAST,
// bit 2 half-close); a step with data adds two bytes of size, a motif
// length byte and the motif, and a step that cuts one byte for where.
// Data is the motif repeated (raw) or lines made from it (text, CRLF
// line ends, some starting with a dot), so that small inputs make chunks
// of every size.
func decodeOps(input []byte) []op {
	r := &opReader{b: input}
	var ops []op
	for len(r.b) > 0 && len(ops) < propMaxOps {
		k := r.next()
		flags := k / byte(numOpKinds)
		o := op{kind: opKind(k % byte(numOpKinds)), last: flags&2 != 0, half: flags&4 != 0}
		switch o.kind {
		case opData, opBdat, opCutChunk, opCutData:
			size := (int(r.next())<<8 | int(r.next())) % (propMaxChunk + 1)
			motif := make([]byte, 1+int(r.next()%16))
			for i := range motif {
				motif[i] = r.next()
			}
			raw := flags&1 != 0 && (o.kind == opBdat || o.kind == opCutChunk)
			if raw {
				o.data = bytes.Repeat(motif, size/len(motif)+1)[:size]
			} else {
				o.data = textOf(motif, size, o.kind == opData || o.kind == opCutData)
			}
			if o.kind == opCutChunk || o.kind == opCutData {
				if len(o.data) == 0 {
					o.data = []byte("x")
				}
				o.cut = len(o.data) * int(r.next()) / 256
			}
		}
		ops = append(ops, o)
	}
	return ops
}

// textOf makes about size bytes of CRLF lines from motif (CR and LF in
// it become dots). With whole it ends at a line end, as a DATA body
// must; otherwise it is cut at exactly size bytes, as a chunk may be.
func textOf(motif []byte, size int, whole bool) []byte {
	clean := bytes.Map(func(r rune) rune {
		if r == '\r' || r == '\n' {
			return '.'
		}
		return r
	}, motif)
	var b []byte
	for i := 0; len(b) < size; i++ {
		if i%3 == 1 {
			b = append(b, '.') // a line the dot-stuffing must carry
		}
		b = append(b, clean[i%len(clean):]...)
		b = append(b, clean[:i%len(clean)]...)
		b = append(b, "\r\n"...)
	}
	if whole {
		if i := bytes.LastIndex(b[:min(size, len(b))], []byte("\r\n")); i >= 0 {
			return b[:i+2]
		}
		return nil
	}
	return b[:size]
}

// legacyClient plays the ops against the gateway, one connection at a
// time, reading the reply to every command. It keeps the bodies of the
// messages it finished and saw accepted, and a transcript.
type legacyClient struct {
	t    testing.TB
	addr string
	c    net.Conn
	br   *bufio.Reader
	body []byte   // chunks of the BDAT message in progress, accepted so far
	sent [][]byte // finished messages answered 2xx
	last string   // the last reply
	log  []string
	// tls, when set, makes the client say STARTTLS after its first EHLO.
	tls *tls.Config
}

func (lc *legacyClient) logf(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	if len(line) > 120 {
		line = line[:120] + "..."
	}
	lc.log = append(lc.log, line)
}

func (lc *legacyClient) fatalf(format string, args ...any) {
	lc.t.Helper()
	lc.t.Fatalf("%s\ntranscript:\n%s", fmt.Sprintf(format, args...), strings.Join(lc.log, "\n"))
}

// connect opens a connection if none is open and says EHLO.
func (lc *legacyClient) connect() {
	if lc.c != nil {
		return
	}
	c, err := net.DialTimeout("tcp", lc.addr, sessionWait)
	if err != nil {
		lc.fatalf("connect: %v", err)
	}
	lc.c, lc.br, lc.body = c, bufio.NewReader(c), nil
	lc.logf("-- connected")
	if r := lc.reply(); !strings.HasPrefix(r, "220 ") {
		lc.fatalf("greeting %q", r)
	}
	if r := lc.cmd("EHLO legacy.example.test"); !strings.HasPrefix(r, "250") {
		lc.fatalf("EHLO answered %q", r)
	}
	if lc.tls == nil {
		return
	}
	if r := lc.cmd("STARTTLS"); !strings.HasPrefix(r, "220") {
		lc.fatalf("STARTTLS answered %q", r)
	}
	tc := tls.Client(c, lc.tls)
	if err := tc.Handshake(); err != nil {
		lc.fatalf("TLS handshake: %v", err)
	}
	lc.c, lc.br = tc, bufio.NewReader(tc)
	lc.logf("-- TLS")
	if r := lc.cmd("EHLO legacy.example.test"); !strings.HasPrefix(r, "250") {
		lc.fatalf("EHLO after STARTTLS answered %q", r)
	}
}

// send writes b; a failed write ends the connection.
func (lc *legacyClient) send(b []byte) bool {
	if lc.c == nil {
		return false
	}
	lc.c.SetDeadline(time.Now().Add(sessionWait))
	if _, err := lc.c.Write(b); err != nil {
		if isTimeout(err) {
			lc.fatalf("the gateway stopped reading: %v", err)
		}
		lc.logf("-- write failed: %v", err)
		lc.drop()
		return false
	}
	return true
}

// reply reads one reply, multi-line replies joined; "" when the gateway
// closed the connection. A reply that does not come is a failure.
func (lc *legacyClient) reply() string {
	if lc.c == nil {
		return ""
	}
	lc.c.SetDeadline(time.Now().Add(sessionWait))
	var all string
	for {
		l, err := lc.br.ReadString('\n')
		if err != nil {
			if isTimeout(err) {
				lc.fatalf("no reply within %v", sessionWait)
			}
			lc.logf("-- connection ended: %v", err)
			lc.drop()
			return ""
		}
		lc.logf("S: %s", strings.TrimRight(l, "\r\n"))
		if !replyLine.MatchString(l) {
			lc.fatalf("malformed reply line %q", l)
		}
		all += l
		if l[3] != '-' {
			lc.last = strings.TrimRight(all, "\r\n")
			return lc.last
		}
	}
}

func (lc *legacyClient) cmd(line string) string {
	lc.logf("C: %s", line)
	if !lc.send([]byte(line + "\r\n")) {
		return ""
	}
	return lc.reply()
}

func (lc *legacyClient) drop() {
	if lc.c != nil {
		lc.c.Close()
	}
	lc.c, lc.br, lc.body = nil, nil, nil
}

// hangUp closes the socket, or half-closes it and reads what the gateway
// still says until it closes too. With lastCut, the client was cut inside
// a LAST chunk: no reply may accept the message.
func (lc *legacyClient) hangUp(half, lastCut bool) {
	if lc.c == nil {
		return
	}
	if !half {
		lc.logf("-- close")
		lc.drop()
		return
	}
	// On TLS, CloseWrite sends close_notify and leaves TCP open.
	lc.logf("-- half-close")
	if err := lc.c.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
		lc.fatalf("half-close: %v", err)
	}
	for lc.c != nil {
		if r := lc.reply(); lastCut && strings.HasPrefix(r, "2") {
			lc.fatalf("a LAST chunk cut short was answered %q", r)
		}
	}
}

func (lc *legacyClient) run(o op) {
	lc.logf("== %v", o)
	switch o.kind {
	case opMail:
		lc.connect()
		if r := lc.cmd("MAIL FROM:<a@legacy.example.test>"); strings.HasPrefix(r, "250") {
			lc.body = nil
		}
		lc.cmd("RCPT TO:<b@example.test>")
	case opData:
		lc.connect()
		if r := lc.cmd("DATA"); !strings.HasPrefix(r, "354") {
			return
		}
		lc.body = nil
		lc.logf("C: <%d bytes and the dot>", len(o.data))
		if !lc.send(append(dotStuff(o.data), ".\r\n"...)) {
			return
		}
		if r := lc.reply(); strings.HasPrefix(r, "2") {
			lc.sent = append(lc.sent, o.data)
		}
	case opBdat:
		lc.connect()
		line := fmt.Sprintf("BDAT %d", len(o.data))
		if o.last {
			line += " LAST"
		}
		lc.logf("C: %s <%d bytes>", line, len(o.data))
		if !lc.send(append([]byte(line+"\r\n"), o.data...)) {
			return
		}
		r := lc.reply()
		ok := strings.HasPrefix(r, "2")
		switch {
		case o.last && ok:
			lc.sent = append(lc.sent, append(lc.body, o.data...))
			lc.body = nil
		case o.last, !ok:
			// go-smtp ends the transfer at LAST and after any
			// failed chunk.
			lc.body = nil
		default:
			lc.body = append(lc.body, o.data...)
		}
	case opRset:
		lc.connect()
		lc.cmd("RSET")
		lc.body = nil
	case opNoop:
		lc.connect()
		lc.cmd("NOOP")
	case opQuit:
		lc.connect()
		lc.cmd("QUIT")
		lc.drop()
	case opHangUp:
		lc.hangUp(o.half, false)
	case opCutChunk:
		lc.connect()
		line := fmt.Sprintf("BDAT %d", len(o.data))
		if o.last {
			line += " LAST"
		}
		lc.logf("C: %s <%d bytes of it>", line, o.cut)
		if lc.send(append([]byte(line+"\r\n"), o.data[:o.cut]...)) {
			lc.hangUp(o.half, o.last)
		}
	case opCutData:
		lc.connect()
		if r := lc.cmd("DATA"); strings.HasPrefix(r, "354") {
			stuffed := dotStuff(o.data)
			cut := min(o.cut, len(stuffed))
			lc.logf("C: <%d bytes of the body>", cut)
			if !lc.send(stuffed[:cut]) {
				return
			}
		}
		lc.hangUp(o.half, false)
	}
}

// dotStuff doubles the dot that starts a line (RFC 5321 §4.5.2).
func dotStuff(body []byte) []byte {
	var out []byte
	for len(body) > 0 {
		i := bytes.Index(body, []byte("\r\n"))
		line := body
		if i >= 0 {
			line = body[:i+2]
		}
		if len(line) > 0 && line[0] == '.' {
			out = append(out, '.')
		}
		out = append(out, line...)
		body = body[len(line):]
	}
	return out
}

// FuzzNoTruncation drives a gateway and its MX with a legacy client
// decoded from the input (decodeOps): DATA, BDAT with and without LAST,
// chunks beyond the SIZE limit, RSET, QUIT, NOOP, new MAIL and hang-ups
// between commands, inside a chunk and inside a DATA body. Whatever the
// order, the MX completes exactly the messages the client finished and
// saw accepted, each as sent with one Received header before it, and no
// session goroutine outlives the gateway.
func FuzzNoTruncation(f *testing.F) {
	for _, s := range propSeeds() {
		f.Add(s)
	}
	ca := certstest.NewCA(f, "sealgate test root")
	cert := ca.Leaf("mx.example.test")
	f.Fuzz(func(t *testing.T, input []byte) {
		ops := decodeOps(input)
		g := newGateway(t, &cert, propMaxBytes)
		lc := &legacyClient{t: t, addr: g.addr}
		for _, o := range ops {
			lc.run(o)
		}
		lc.drop()
		g.settle(t)
		if t.Failed() {
			return
		}
		if err := promiseKept(g.mx, lc.sent); err != nil {
			lc.fatalf("%v", err)
		}
	})
}

// propSeeds are op lists that walk the edges: each way of abandoning a
// BDAT message, an oversize chunk, cuts inside DATA and chunks, and
// whole deliveries.
func propSeeds() [][]byte {
	k := func(kind opKind, flags byte) byte { return byte(kind) + flags*byte(numOpKinds) }
	data := func(size int, motif string) []byte {
		return append([]byte{byte(size >> 8), byte(size), byte(len(motif) - 1)}, motif...)
	}
	const last, raw, half = 2, 1, 4
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	mail := []byte{k(opMail, 0)}
	return [][]byte{
		// Whole deliveries: DATA, then BDAT in two chunks.
		cat(mail, []byte{k(opData, 0)}, data(300, "Subject: hi"), mail, []byte{k(opBdat, 0)}, data(100, "a"), []byte{k(opBdat, last)}, data(50, "b")),
		// A chunk without LAST, then each way of abandoning it.
		cat(mail, []byte{k(opBdat, 0)}, data(1500, "x"), []byte{k(opRset, 0)}),
		cat(mail, []byte{k(opBdat, 0)}, data(1500, "x"), []byte{k(opQuit, 0)}),
		cat(mail, []byte{k(opBdat, 0)}, data(1500, "x"), mail),
		cat(mail, []byte{k(opBdat, 0)}, data(1500, "x"), []byte{k(opHangUp, 0)}),
		cat(mail, []byte{k(opBdat, 0)}, data(1500, "x"), []byte{k(opHangUp, half)}),
		// A second chunk over the SIZE limit.
		cat(mail, []byte{k(opBdat, 0)}, data(1500, "x"), []byte{k(opBdat, last)}, data(1500, "y"), []byte{k(opNoop, 0)}),
		// A LAST chunk cut short, closed and half-closed.
		cat(mail, []byte{k(opCutChunk, last)}, data(1000, "z"), []byte{128}),
		cat(mail, []byte{k(opCutChunk, last|half)}, data(1000, "z"), []byte{128}),
		// A DATA body cut short, then a delivery on a new connection.
		cat(mail, []byte{k(opCutData, half)}, data(800, ".dot"), []byte{200}, mail, []byte{k(opData, 0)}, data(40, "again")),
		// Raw chunk bytes: a CRLF.CRLF inside, and a bare LF.
		cat(mail, []byte{k(opBdat, raw|last)}, data(64, "a\r\n.\r\n")),
		cat(mail, []byte{k(opBdat, raw|last)}, data(64, "a\nb")),
	}
}
