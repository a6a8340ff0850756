package upstreamtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// MITMOptions configures NewMITM.
type MITMOptions struct {
	// Upstream is the address of the real server, "host:port". Required.
	Upstream string
	// Addr is the listen address; default "127.0.0.1:0".
	Addr string
	// STARTTLSReply is what the attacker answers a STARTTLS command with;
	// default 502 5.5.1. STARTTLS is never forwarded.
	STARTTLSReply *smtp.SMTPError
	// KeepSTARTTLS leaves the STARTTLS capability in EHLO replies, so only
	// the command is refused (a forged 454, say).
	KeepSTARTTLS bool
}

// MITM is a man in the middle between an SMTP client and a real server: a
// TCP proxy that strips STARTTLS from EHLO replies and refuses the STARTTLS
// command itself, so that a client that does not insist on TLS continues in
// cleartext. It records every byte the client sent.
type MITM struct {
	t      testing.TB
	opts   MITMOptions
	ln     net.Listener
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	once   sync.Once

	mu          sync.Mutex
	closed      bool
	open        map[net.Conn]struct{}
	client      []byte
	connections int
	starttls    int
	stripped    int
}

var replyMITMNoTLS = &smtp.SMTPError{Code: 502, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "STARTTLS not supported"}

// NewSTRIPTLS starts a STRIPTLS attacker on listenAddr ("" for
// 127.0.0.1:0) in front of upstreamAddr. It is NewMITM with defaults.
func NewSTRIPTLS(t testing.TB, upstreamAddr, listenAddr string) *MITM {
	t.Helper()
	return NewMITM(t, MITMOptions{Upstream: upstreamAddr, Addr: listenAddr})
}

// NewMITM starts a man in the middle and registers its Close with
// t.Cleanup.
func NewMITM(t testing.TB, opts MITMOptions) *MITM {
	t.Helper()
	if opts.Upstream == "" {
		t.Fatalf("upstreamtest: MITM needs an Upstream address")
	}
	if opts.Addr == "" {
		opts.Addr = "127.0.0.1:0"
	}
	if opts.STARTTLSReply == nil {
		opts.STARTTLSReply = replyMITMNoTLS
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		t.Fatalf("upstreamtest: listen on %s: %v", opts.Addr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &MITM{t: t, opts: opts, ln: ln, ctx: ctx, cancel: cancel, open: make(map[net.Conn]struct{})}
	m.wg.Add(1)
	go m.serve()
	t.Cleanup(m.Close)
	return m
}

// Addr returns the address the MITM listens on.
func (m *MITM) Addr() string { return m.ln.Addr().String() }

// Port returns the TCP port the MITM listens on.
func (m *MITM) Port() int { return m.ln.Addr().(*net.TCPAddr).Port }

// ClientBytes returns a copy of everything clients sent, all connections
// concatenated in arrival order, STARTTLS commands included.
func (m *MITM) ClientBytes() []byte {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.client)
}

// Connections returns the number of client connections accepted.
func (m *MITM) Connections() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.connections
}

// STARTTLSRefused returns how many STARTTLS commands the MITM answered.
func (m *MITM) STARTTLSRefused() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.starttls
}

// Stripped returns how many EHLO replies lost their STARTTLS line.
func (m *MITM) Stripped() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.stripped
}

// Close stops the MITM, closes every connection and waits for its
// goroutines. It is safe to call more than once.
func (m *MITM) Close() {
	m.once.Do(func() {
		m.mu.Lock()
		m.closed = true
		open := make([]net.Conn, 0, len(m.open))
		for c := range m.open {
			open = append(open, c)
		}
		m.mu.Unlock()
		m.cancel()
		_ = m.ln.Close()
		for _, c := range open {
			_ = c.Close()
		}
		m.wg.Wait()
	})
}

func (m *MITM) serve() {
	defer m.wg.Done()
	for {
		c, err := m.ln.Accept()
		if err != nil {
			return
		}
		if !m.track(c) {
			continue
		}
		m.mu.Lock()
		m.connections++
		m.mu.Unlock()
		m.wg.Add(1)
		go m.handle(c)
	}
}

// track registers a connection to close at Close; false after Close.
func (m *MITM) track(c net.Conn) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		_ = c.Close()
		return false
	}
	m.open[c] = struct{}{}
	return true
}

func (m *MITM) untrack(c net.Conn) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.open, c)
	_ = c.Close()
}

func (m *MITM) handle(client net.Conn) {
	defer m.wg.Done()
	defer m.untrack(client)

	d := net.Dialer{Timeout: 5 * time.Second}
	up, err := d.DialContext(m.ctx, "tcp", m.opts.Upstream)
	if err != nil {
		m.t.Logf("upstreamtest MITM %s: dial %s: %v", m.Addr(), m.opts.Upstream, err)
		_, _ = client.Write([]byte("421 4.4.0 upstream unreachable\r\n"))
		return
	}
	if !m.track(up) {
		return
	}
	defer m.untrack(up)

	p := &mitmPipe{m: m, client: client, up: up}
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.upstreamToClient()
		_ = client.Close()
	}()
	p.clientToUpstream()
	_ = up.Close()
	<-done
}

// mitmPipe is one proxied connection.
type mitmPipe struct {
	m      *MITM
	client net.Conn
	up     net.Conn
	wmu    sync.Mutex  // serialises writes to client
	data   atomic.Bool // upstream sent 354: the client sends a body
}

func (p *mitmPipe) writeClient(b []byte) error {
	p.wmu.Lock()
	defer p.wmu.Unlock()
	_, err := p.client.Write(b)
	return err
}

func (p *mitmPipe) clientToUpstream() {
	br := bufio.NewReader(p.client)
	var bdatLeft int64
	midLine, inData, lastCRLF := false, false, true
	for {
		if bdatLeft > 0 {
			buf := make([]byte, min(bdatLeft, 32<<10))
			n, err := br.Read(buf)
			bdatLeft -= int64(n)
			p.record(buf[:n])
			if _, werr := p.up.Write(buf[:n]); werr != nil || err != nil {
				return
			}
			continue
		}
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			p.record(line)
			if !inData && p.data.Load() {
				inData, lastCRLF = true, true
			}
			isCommand := !midLine && err == nil
			midLine = errors.Is(err, bufio.ErrBufferFull)
			switch {
			case inData:
				if lastCRLF && string(line) == ".\r\n" {
					inData = false
					p.data.Store(false)
				}
				lastCRLF = bytes.HasSuffix(line, []byte("\r\n"))
			case isCommand:
				verb, arg, _ := strings.Cut(strings.TrimRight(string(line), "\r\n"), " ")
				switch strings.ToUpper(verb) {
				case "STARTTLS":
					p.m.mu.Lock()
					p.m.starttls++
					p.m.mu.Unlock()
					if p.writeClient(formatError(p.m.opts.STARTTLSReply)) != nil {
						return
					}
					continue
				case "BDAT":
					bdatLeft = bdatSize(arg)
				}
			}
			if _, werr := p.up.Write(line); werr != nil {
				return
			}
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}

func (p *mitmPipe) record(b []byte) {
	p.m.mu.Lock()
	defer p.m.mu.Unlock()
	p.m.client = append(p.m.client, b...)
}

// upstreamToClient forwards whole replies, stripping STARTTLS from 250
// replies, and notes when the server invites a body.
func (p *mitmPipe) upstreamToClient() {
	br := bufio.NewReader(p.up)
	var reply []byte
	for {
		line, err := br.ReadSlice('\n')
		if len(line) > 0 {
			code, more, _, ok := parseReplyLine(strings.TrimRight(string(line), "\r\n"))
			reply = append(reply, line...)
			if ok && !more && err == nil {
				if code == "354" {
					p.data.Store(true)
				}
				if code == "250" && !p.m.opts.KeepSTARTTLS {
					var stripped bool
					if reply, stripped = stripCapability(reply, "STARTTLS"); stripped {
						p.m.mu.Lock()
						p.m.stripped++
						p.m.mu.Unlock()
					}
				}
			}
			if !ok || !more || err != nil {
				if p.writeClient(reply) != nil {
					return
				}
				reply = nil
			}
		}
		if err != nil && !errors.Is(err, bufio.ErrBufferFull) {
			return
		}
	}
}
