package bench

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// seqHeader carries "RUN-SEQ" in every benchmark message: the run it
// belongs to and its index, which pairs the sink's acceptance time with the
// client's end of DATA.
const seqHeader = "X-Bench-Seq: "

// sink is the TLS SMTP server at the end of every path: it accepts every
// message after reading it whole and records when, by sequence number.
type sink struct {
	addr string
	srv  *smtp.Server

	mu       sync.Mutex
	run      int
	accepted []time.Time // by sequence number; zero until accepted
	count    int
	full     chan struct{} // closed when count reaches len(accepted)
	foreign  atomic.Int64  // messages of no current run (late retries)
	conns    atomic.Int64  // TCP connections accepted
}

// startSink listens on 127.0.0.1:0 with STARTTLS under cert; every
// connection re-arms TCP_QUICKACK after each read (see quickAckConn).
func startSink(t testing.TB, cert tls.Certificate) *sink {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &sink{addr: l.Addr().String(), full: make(chan struct{})}
	close(s.full) // no run yet
	s.srv = smtp.NewServer(s)
	s.srv.Domain = "mx.bench.test"
	s.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	s.srv.MaxMessageBytes = 64 << 20
	s.srv.MaxRecipients = 10
	s.srv.ReadTimeout = time.Minute
	s.srv.WriteTimeout = time.Minute
	go s.srv.Serve(quickAckListener{Listener: l, accepted: &s.conns})
	t.Cleanup(func() { s.srv.Close() })
	return s
}

// expect starts run number run of n messages.
func (s *sink) expect(run, n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.run, s.accepted, s.count, s.full = run, make([]time.Time, n), 0, make(chan struct{})
	if n == 0 {
		close(s.full)
	}
}

// wait returns when the sink holds every message of the run, with the
// acceptance times, or an error after timeout.
func (s *sink) wait(timeout time.Duration) (time.Time, []time.Time, error) {
	s.mu.Lock()
	full := s.full
	s.mu.Unlock()
	select {
	case <-full:
	case <-time.After(timeout):
		s.mu.Lock()
		defer s.mu.Unlock()
		return time.Time{}, nil, fmt.Errorf("sink holds %d of %d messages after %v", s.count, len(s.accepted), timeout)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var last time.Time
	for _, at := range s.accepted {
		if at.After(last) {
			last = at
		}
	}
	return last, s.accepted, nil
}

// accept records message seq of run at time at.
func (s *sink) accept(run, seq int, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if run != s.run || seq < 0 || seq >= len(s.accepted) || !s.accepted[seq].IsZero() {
		s.foreign.Add(1)
		return
	}
	s.accepted[seq] = at
	s.count++
	if s.count == len(s.accepted) {
		close(s.full)
	}
}

func (s *sink) NewSession(*smtp.Conn) (smtp.Session, error) { return &sinkSession{s: s}, nil }

type sinkSession struct{ s *sink }

func (*sinkSession) Reset()                               { _ = 0 }
func (*sinkSession) Logout() error                        { return nil }
func (*sinkSession) Mail(string, *smtp.MailOptions) error { return nil }
func (*sinkSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (ss *sinkSession) Data(r io.Reader) error {
	br := bufio.NewReaderSize(r, 16<<10)
	run, seq, err := readSeq(br)
	if _, cerr := io.Copy(io.Discard, br); cerr != nil {
		return cerr
	}
	at := time.Now()
	if err != nil {
		ss.s.foreign.Add(1)
		return nil
	}
	ss.s.accept(run, seq, at)
	return nil
}

var errNoSeq = errors.New("no " + seqHeader + "header")

// readSeq finds the sequence header in the header section of a message.
func readSeq(br *bufio.Reader) (run, seq int, err error) {
	for {
		line, err := br.ReadSlice('\n')
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return 0, 0, errNoSeq
		}
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			return 0, 0, errNoSeq
		}
		if v, ok := bytes.CutPrefix(line, []byte(seqHeader)); ok {
			return parseSeq(string(bytes.TrimRight(v, "\r\n")))
		}
	}
}

// parseSeq parses "RUN-SEQ".
func parseSeq(v string) (run, seq int, err error) {
	r, s, ok := bytes.Cut([]byte(v), []byte("-"))
	if !ok {
		return 0, 0, errNoSeq
	}
	if run, err = strconv.Atoi(string(r)); err != nil {
		return 0, 0, errNoSeq
	}
	if seq, err = strconv.Atoi(string(s)); err != nil {
		return 0, 0, errNoSeq
	}
	return run, seq, nil
}

// quickAckListener hands out connections that re-arm TCP_QUICKACK after
// every read. Linux leaves quick-ACK mode on its own; without this the
// sink delays its ACKs and a peer's Nagle-held write (Postfix's client
// after the TLS 1.3 Finished) waits 40 ms, which is the sink's fault, not
// the relay's.
type quickAckListener struct {
	net.Listener
	accepted *atomic.Int64
}

func (l quickAckListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.accepted.Add(1)
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return c, nil
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return c, nil
	}
	qc := &quickAckConn{TCPConn: tc, raw: raw}
	qc.quickAck()
	return qc, nil
}

type quickAckConn struct {
	*net.TCPConn
	raw syscall.RawConn
}

func (c *quickAckConn) Read(p []byte) (int, error) {
	n, err := c.TCPConn.Read(p)
	c.quickAck()
	return n, err
}

func (c *quickAckConn) quickAck() {
	_ = c.raw.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, syscall.TCP_QUICKACK, 1)
	})
}
