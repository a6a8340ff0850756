package postfix_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"sealgate/e2e/postfix"
)

const (
	sinkName    = "sink.test" // must differ from the instance's myhostname
	waitTimeout = 15 * time.Second
)

// received is one message the sink accepted.
type received struct {
	helo string
	from string
	to   []string
	data string // CRLF normalised to LF
}

// sink is an SMTP server standing in for sealgate: it records what it
// accepts and answers RCPT as rcptReply says.
type sink struct {
	addr string
	msgs chan received

	mu        sync.Mutex
	rcptCalls int
	// rcptReply decides the reply to the nth RCPT (1-based); nil accepts.
	rcptReply func(ctx context.Context, n int) error
	ctx       context.Context
}

func startSink(t *testing.T, rcptReply func(ctx context.Context, n int) error) *sink {
	t.Helper()
	s := &sink{msgs: make(chan received, 16), rcptReply: rcptReply, ctx: t.Context()}
	srv := smtp.NewServer(smtp.BackendFunc(func(c *smtp.Conn) (smtp.Session, error) {
		return &sinkSession{sink: s, helo: c.Hostname()}, nil
	}))
	srv.Domain = sinkName
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s.addr = l.Addr().String()
	go srv.Serve(l) //nolint:errcheck // returns ErrServerClosed at cleanup
	t.Cleanup(func() { srv.Close() })
	return s
}

func (s *sink) rcpts() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rcptCalls
}

func (s *sink) wait(t *testing.T) received {
	t.Helper()
	select {
	case m := <-s.msgs:
		return m
	case <-time.After(waitTimeout):
		t.Fatalf("sink got no message within %v", waitTimeout)
		return received{}
	}
}

type sinkSession struct {
	sink *sink
	helo string
	from string
	to   []string
}

func (ss *sinkSession) Reset()        { ss.from, ss.to = "", nil }
func (ss *sinkSession) Logout() error { return nil }

func (ss *sinkSession) Mail(from string, _ *smtp.MailOptions) error {
	ss.from = from
	return nil
}

func (ss *sinkSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	ss.sink.mu.Lock()
	ss.sink.rcptCalls++
	n := ss.sink.rcptCalls
	ss.sink.mu.Unlock()
	if f := ss.sink.rcptReply; f != nil {
		if err := f(ss.sink.ctx, n); err != nil {
			return err
		}
	}
	ss.to = append(ss.to, to)
	return nil
}

func (ss *sinkSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	ss.sink.msgs <- received{
		helo: ss.helo, from: ss.from, to: slices.Clone(ss.to),
		data: strings.ReplaceAll(string(b), "\r\n", "\n"),
	}
	return nil
}

// message builds a test message whose body has a unique token and a line
// holding a single dot (sendmail must not take it for the end).
func message(token string) []byte {
	return fmt.Appendf(nil, "From: alice@legacy.test\nTo: bob@dest.test\nSubject: %s\n\nfirst line %s\n.\nlast line\n", token, token)
}

func checkReceived(t *testing.T, got received, from string, to []string, token string) {
	t.Helper()
	if got.helo != postfix.DefaultMyHostname {
		t.Errorf("HELO = %q, want %q", got.helo, postfix.DefaultMyHostname)
	}
	if got.from != from {
		t.Errorf("MAIL FROM = %q, want %q", got.from, from)
	}
	slices.Sort(got.to)
	if !slices.Equal(got.to, to) {
		t.Errorf("RCPT TO = %q, want %q", got.to, to)
	}
	for _, want := range []string{"Subject: " + token + "\n", "\nfirst line " + token + "\n.\nlast line\n"} {
		if !strings.Contains(got.data, want) {
			t.Errorf("relayed message lacks %q:\n%s", want, got.data)
		}
	}
}

func TestSendmailRelaysToRelayHost(t *testing.T) {
	t.Parallel()
	s := startSink(t, nil)
	pf := postfix.Start(t, postfix.Options{RelayHost: s.addr})

	from, to := "alice@legacy.test", []string{"bob@dest.test", "carol@dest.test"}
	if err := pf.Sendmail(from, to, message("token-relay")); err != nil {
		t.Fatal(err)
	}
	checkReceived(t, s.wait(t), from, to, "token-relay")
	if err := pf.WaitQueueEmpty(waitTimeout); err != nil {
		t.Fatal(err)
	}
	if !pf.QueueEmpty() {
		t.Error("QueueEmpty() = false after WaitQueueEmpty succeeded")
	}
	if err := pf.WaitLog("status=sent", waitTimeout); err != nil {
		t.Error(err)
	}
}

// TestKeepsMessageAfter4xx is the property sealgate relies on: a 4xx reply
// leaves the message in the legacy server's queue, and the legacy server
// delivers it on a later attempt of its own.
func TestKeepsMessageAfter4xx(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	s := startSink(t, func(ctx context.Context, n int) error {
		if n == 1 {
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 5}, Message: "sink: try again later"}
		}
		select { // hold the retry until the test has seen the deferral
		case <-release:
			return nil
		case <-ctx.Done():
			return &smtp.SMTPError{Code: 421, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "test over"}
		}
	})
	pf := postfix.Start(t, postfix.Options{RelayHost: s.addr})

	from, to := "alice@legacy.test", []string{"bob@dest.test"}
	if err := pf.Sendmail(from, to, message("token-retry")); err != nil {
		t.Fatal(err)
	}
	entries, err := pf.WaitQueue(func(entries []postfix.QueueEntry) bool {
		return len(entries) == 1 && len(entries[0].Recipients) == 1 &&
			strings.Contains(entries[0].Recipients[0].DelayReason, "451 4.7.5 sink: try again later")
	}, waitTimeout)
	if err != nil {
		t.Fatal(err)
	}
	if got := entries[0].Sender; got != from {
		t.Errorf("queued sender = %q, want %q", got, from)
	}
	if ids, err := pf.QueueIDs(); err != nil || len(ids) != 1 || ids[0] != entries[0].ID {
		t.Errorf("QueueIDs() = %q, %v; want [%q]", ids, err, entries[0].ID)
	}
	select {
	case m := <-s.msgs:
		t.Fatalf("sink got a message before the retry was released: %+v", m)
	default:
	}

	close(release) // no Flush: Postfix must retry by itself
	checkReceived(t, s.wait(t), from, to, "token-retry")
	if err := pf.WaitQueueEmpty(waitTimeout); err != nil {
		t.Fatal(err)
	}
	if got := s.rcpts(); got != 2 {
		t.Errorf("sink saw %d RCPT commands, want 2 (one refused, one accepted)", got)
	}
	if err := pf.WaitLog("status=sent", waitTimeout); err != nil {
		t.Fatal(err)
	}
	log := pf.Log()
	deferred, sent := strings.Index(log, "status=deferred"), strings.Index(log, "status=sent")
	if deferred < 0 || deferred > sent {
		t.Errorf("want status=deferred logged before status=sent:\n%s", log)
	}
}

func TestSMTPListenAcceptsSubmission(t *testing.T) {
	t.Parallel()
	s := startSink(t, nil)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	listen := l.Addr().String()
	l.Close()
	pf := postfix.Start(t, postfix.Options{RelayHost: s.addr, SMTPListen: listen})
	if pf.SMTPAddr() != listen {
		t.Errorf("SMTPAddr() = %q, want %q", pf.SMTPAddr(), listen)
	}

	c, err := smtp.Dial(listen)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	from, to := "alice@legacy.test", []string{"bob@dest.test"}
	msg := strings.ReplaceAll(string(message("token-smtpd")), "\n", "\r\n")
	if err := c.SendMail(from, to, strings.NewReader(msg)); err != nil {
		t.Fatal(err)
	}
	if err := c.Quit(); err != nil {
		t.Error(err)
	}
	checkReceived(t, s.wait(t), from, to, "token-smtpd")
	if err := pf.WaitQueueEmpty(waitTimeout); err != nil {
		t.Fatal(err)
	}
}

func TestFlushAndStop(t *testing.T) {
	t.Parallel()
	// Nothing listens at the relay: the message stays deferred.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	relay := l.Addr().String()
	l.Close()
	pf := postfix.Start(t, postfix.Options{RelayHost: relay, MyHostname: "other.legacy.test"})
	if err := pf.Sendmail("", []string{"bob@dest.test"}, message("token-flush")); err != nil {
		t.Fatal(err)
	}
	entries, err := pf.WaitQueue(func(e []postfix.QueueEntry) bool {
		return len(e) == 1 && len(e[0].Recipients) == 1 && strings.Contains(e[0].Recipients[0].DelayReason, "Connection refused")
	}, waitTimeout)
	if err != nil {
		t.Fatal(err)
	}
	if entries[0].Sender != "MAILER-DAEMON" { // how showq prints the null sender
		t.Errorf("sender = %q, want the null sender", entries[0].Sender)
	}
	if err := pf.Flush(); err != nil {
		t.Error(err)
	}
	if pf.QueueEmpty() {
		t.Error("QueueEmpty() = true with a deferred message")
	}
	if err := pf.WaitQueueEmpty(300 * time.Millisecond); err == nil {
		t.Error("WaitQueueEmpty succeeded with a deferred message")
	}
	pf.Stop()
	pf.Stop() // idempotent
	// The queue file outlives master; postqueue, as root, reads it directly.
	if ids, err := pf.QueueIDs(); err != nil || len(ids) != 1 || ids[0] != entries[0].ID {
		t.Errorf("after Stop, QueueIDs() = %q, %v; want [%q]", ids, err, entries[0].ID)
	}
}
