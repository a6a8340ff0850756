package proxy

import (
	"bufio"
	"context"
	"io"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/emersion/go-smtp"

	"sealgate/enforcement"
)

func TestCheckHelo(t *testing.T) {
	tests := []struct {
		name string
		arg  string
		ok   bool
	}{
		{name: "domain", arg: "legacy.example.test", ok: true},
		{name: "bare host name", arg: "EXCHANGE01", ok: true},
		{name: "underscore", arg: "mail_srv.corp.test", ok: true},
		{name: "address literal", arg: "[192.0.2.1]", ok: true},
		{name: "IPv6 literal", arg: "[IPv6:2001:db8::1]", ok: true},
		{name: "U-label", arg: "exämple.test", ok: true},
		{name: "NUL", arg: "legacy\x00.test"},
		{name: "bare CR", arg: "legacy\r.test"},
		{name: "bare LF", arg: "legacy\n.test"},
		{name: "tab", arg: "legacy\t.test"},
		{name: "other C0 control", arg: "legacy\x1b.test"},
		{name: "DEL", arg: "legacy\x7f.test"},
		{name: "not UTF-8", arg: "legacy\xff.test"},
		{name: "empty", arg: ""},
		{name: "too long", arg: strings.Repeat("a", 256)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			wantRefusal(t, checkHelo(tc.arg), tc.ok, 501, smtp.EnhancedCode{5, 5, 2})
		})
	}
}

// addressTests hold addresses as go-smtp hands them over (quoted local
// parts unquoted); both checkSender and checkRecipient must agree on them.
var addressTests = []struct {
	name string
	addr string
	ok   bool
}{
	{name: "plain", addr: "a@example.test", ok: true},
	{name: "unquoted quoted local part", addr: "a b@example.test", ok: true},
	{name: "at sign in quoted local part", addr: "x@y@example.test", ok: true},
	{name: "quote and backslash in local part", addr: `a"b\c@example.test`, ok: true},
	{name: "UTF-8", addr: "jürgen@exämple.test", ok: true},
	{name: "final dot", addr: "a@example.test.", ok: true},
	{name: "underscore in domain", addr: "a@mail_srv.example.test", ok: true},
	{name: "address literal", addr: "a@[192.0.2.1]", ok: true},
	{name: "IPv6 address literal", addr: "a@[IPv6:2001:db8::1]", ok: true},
	{name: "local part of 64", addr: strings.Repeat("a", 64) + "@example.test", ok: true},
	{name: "domain of 189, path of 256", addr: strings.Repeat("a", 64) + "@" + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 61), ok: true},

	{name: "NUL in local part", addr: "a\x00b@example.test"},
	{name: "NUL in domain", addr: "a@example.test\x00"},
	{name: "bare CR in local part", addr: "a\rb@example.test"},
	{name: "bare CR in domain", addr: "a@exa\rmple.test"},
	{name: "bare LF", addr: "a\nb@example.test"},
	{name: "tab", addr: "a\tb@example.test"},
	{name: "escape", addr: "a\x1bb@example.test"},
	{name: "DEL", addr: "a\x7fb@example.test"},
	{name: "not UTF-8 in domain", addr: "a@ex\xffample.test"},
	{name: "not UTF-8 in local part", addr: "a\xc3@example.test"},
	{name: "no domain", addr: "postmaster"},
	{name: "empty domain", addr: "a@"},
	{name: "empty local part", addr: "@example.test"},
	{name: "empty label", addr: "a@example..test"},
	{name: "only a dot", addr: "a@."},
	{name: "label of 64", addr: "a@" + strings.Repeat("b", 64) + ".test"},
	{name: "local part of 65", addr: strings.Repeat("a", 65) + "@example.test"},
	{name: "path of 257", addr: strings.Repeat("a", 64) + "@" + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 62)},
	{name: "domain of 256", addr: "a@" + strings.Repeat(strings.Repeat("b", 63)+".", 4)},
	{name: "angle bracket in domain", addr: "a@exa<mple.test"},
	{name: "space in domain", addr: "a@exa mple.test"},
	{name: "unterminated literal", addr: "a@[192.0.2.1"},
	{name: "empty literal", addr: "a@[]"},
	{name: "bracket in literal", addr: "a@[1[2]"},
}

func TestCheckSender(t *testing.T) {
	wantRefusal(t, checkSender(""), true, 0, smtp.EnhancedCode{})
	for _, tc := range addressTests {
		t.Run(tc.name, func(t *testing.T) {
			wantRefusal(t, checkSender(tc.addr), tc.ok, 501, smtp.EnhancedCode{5, 1, 7})
		})
	}
}

func TestCheckRecipient(t *testing.T) {
	wantRefusal(t, checkRecipient(""), false, 501, smtp.EnhancedCode{5, 1, 3})
	for _, tc := range addressTests {
		t.Run(tc.name, func(t *testing.T) {
			wantRefusal(t, checkRecipient(tc.addr), tc.ok, 501, smtp.EnhancedCode{5, 1, 3})
		})
	}
}

func wantRefusal(t *testing.T, got *smtp.SMTPError, ok bool, code int, ec smtp.EnhancedCode) {
	t.Helper()
	switch {
	case ok && got != nil:
		t.Errorf("refused: %d %v %s", got.Code, got.EnhancedCode, got.Message)
	case !ok && got == nil:
		t.Errorf("accepted, want %d %v", code, ec)
	case !ok && (got.Code != code || got.EnhancedCode != ec):
		t.Errorf("got %d %v %s, want %d %v", got.Code, got.EnhancedCode, got.Message, code, ec)
	}
}

// FuzzCommandArguments: whatever a client sends as an EHLO argument or an
// address, an accepted one carries no control character, is UTF-8 and
// keeps to the RFC 5321 limits, and a refusal is a 501 whose text is
// printable ASCII (the offending byte is never echoed).
func FuzzCommandArguments(f *testing.F) {
	for _, s := range []string{"a@example.test", "a b@example.test", "x@y@example.test", "a\x00@example.test", "a\r@b", "a@b\xff", "[192.0.2.1]", "a@[IPv6:::1]", "legacy.test", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, r := range []*smtp.SMTPError{checkHelo(s), checkSender(s), checkRecipient(s)} {
			if r == nil {
				continue
			}
			if r.Code != 501 {
				t.Errorf("%q refused with %d", s, r.Code)
			}
			for i := 0; i < len(r.Message); i++ {
				if c := r.Message[i]; c < 0x20 || c > 0x7e {
					t.Fatalf("%q: reply text %q holds byte 0x%02X", s, r.Message, c)
				}
			}
		}
		clean := utf8.ValidString(s) && !strings.ContainsFunc(s, func(r rune) bool { return r < 0x20 || r == 0x7f })
		if checkHelo(s) == nil && (!clean || s == "" || len(s) > maxDomain) {
			t.Errorf("EHLO %q accepted", s)
		}
		for _, r := range []*smtp.SMTPError{checkSender(s), checkRecipient(s)} {
			if r != nil || s == "" {
				continue
			}
			i := strings.LastIndexByte(s, '@')
			if !clean || i < 1 || i > maxLocalPart || len(s)-i-1 > maxDomain || len(s)+2 > maxPath {
				t.Errorf("address %q accepted", s)
			}
		}
	})
}

// recordingRouter resolves every domain to one route and records the
// domains it was asked for.
type recordingRouter struct {
	mu      sync.Mutex
	domains []string
}

func (r *recordingRouter) Resolve(ctx context.Context, domain string) (*enforcement.Route, error) {
	r.mu.Lock()
	r.domains = append(r.domains, domain)
	r.mu.Unlock()
	return staticRouter{}.Resolve(ctx, domain)
}

func (r *recordingRouter) RelaxedRoute(ctx context.Context, domain string) (*enforcement.Route, error) {
	return r.Resolve(ctx, domain)
}

// exchange writes input in one piece and reads n replies after the
// greeting.
func exchange(t *testing.T, c io.ReadWriter, input string, n int) []string {
	t.Helper()
	go io.WriteString(c, input)
	br := bufio.NewReader(c)
	var replies []string
	for len(replies) < n+1 {
		var sb strings.Builder
		for {
			l, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("reading reply: %v (so far %q)", err, replies)
			}
			sb.WriteString(l)
			if len(l) < 4 || l[3] != '-' {
				break
			}
		}
		replies = append(replies, strings.TrimRight(sb.String(), "\r\n"))
	}
	return replies[1:]
}

// TestBadCommandsRefused: EHLO, MAIL FROM and RCPT TO with bytes RFC 5321
// forbids get 501 at once; nothing is resolved or sent upstream, and the
// session goes on.
func TestBadCommandsRefused(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  []string // reply prefixes after the greeting
	}{
		{name: "NUL in EHLO", input: "EHLO legacy\x00.test\r\nMAIL FROM:<a@x.test>\r\nEHLO legacy.test\r\n",
			want: []string{"501 5.5.2 ", "502 5.5.1 ", "250-"}},
		{name: "bare CR in EHLO", input: "EHLO legacy\r.test\r\nHELO legacy\r.test\r\nHELO legacy.test\r\n",
			want: []string{"501 5.5.2 ", "501 5.5.2 ", "250 "}},
		// go-smtp answers a later EHLO itself (250) and asks nothing of
		// the session: MAIL is refused until a valid name comes.
		{name: "control byte in a later EHLO", input: "EHLO legacy.test\r\nEHLO bad\x01name\r\nMAIL FROM:<a@x.test>\r\nEHLO legacy2.test\r\nMAIL FROM:<a@x.test>\r\n",
			want: []string{"250-", "250-", "501 5.5.2 EHLO argument", "250-", "250 "}},
		{name: "over-long later HELO", input: "EHLO legacy.test\r\nHELO " + strings.Repeat("x", 300) + "\r\nMAIL FROM:<a@x.test>\r\nRSET\r\nMAIL FROM:<a@x.test>\r\n",
			want: []string{"250-", "250 ", "501 5.5.2 EHLO argument", "250 ", "501 5.5.2 EHLO argument"}},
		{name: "NUL in MAIL", input: "EHLO x.test\r\nMAIL FROM:<a\x00@x.test>\r\nRCPT TO:<b@example.test>\r\n",
			want: []string{"250-", "501 5.1.7 ", "502 5.5.1 "}},
		{name: "bare CR in MAIL", input: "EHLO x.test\r\nMAIL FROM:<a\rb@x.test>\r\nMAIL FROM:<a@x.test>\r\n",
			want: []string{"250-", "501 5.1.7 ", "250 "}},
		{name: "not UTF-8 in sender domain", input: "EHLO x.test\r\nMAIL FROM:<a@x\xff.test>\r\n",
			want: []string{"250-", "501 5.1.7 "}},
		{name: "NUL in RCPT", input: "EHLO x.test\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b\x00@example.test>\r\nRCPT TO:<b@example.test\x00>\r\n",
			want: []string{"250-", "250 ", "501 5.1.3 ", "501 5.1.3 "}},
		{name: "bare CR in RCPT", input: "EHLO x.test\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b\r@example.test>\r\nRCPT TO:b@example.test\r\r\n",
			want: []string{"250-", "250 ", "501 5.1.3 ", "451 4.7.4 "}}, // a CR before CRLF is trailing white space
		{name: "bare LF in RCPT", input: "EHLO x.test\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b\n@example.test>\r\n",
			want: []string{"250-", "250 ", "501 5.5.2 ", "501 5.5.2 "}}, // two commands, both refused
		{name: "not UTF-8 in recipient domain", input: "EHLO x.test\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@ex\xffample.test>\r\n",
			want: []string{"250-", "250 ", "501 5.1.3 "}},
		{name: "not UTF-8 in local part", input: "EHLO x.test\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b\xc3@example.test>\r\n",
			want: []string{"250-", "250 ", "501 5.1.3 "}},
		{name: "local part too long", input: "EHLO x.test\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<" + strings.Repeat("b", 65) + "@example.test>\r\n",
			want: []string{"250-", "250 ", "501 5.1.3 "}},
		{name: "address literal as before", input: "EHLO x.test\r\nMAIL FROM:<a@[192.0.2.1]>\r\nRCPT TO:<b@[192.0.2.1]>\r\n",
			want: []string{"250-", "250 ", "501 5.1.3 bad recipient"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			router := &recordingRouter{}
			_, dial := newTestServer(t, Options{Router: router})
			c := dial("127.0.0.1")
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			got := exchange(t, c, tc.input, len(tc.want))
			for i, want := range tc.want {
				if !strings.HasPrefix(got[i], want) {
					t.Errorf("reply %d: %q, want prefix %q", i+1, got[i], want)
				}
				if strings.ContainsRune(got[i], 0) || strings.Contains(got[i], "\xff") {
					t.Errorf("reply %d echoes the bad byte: %q", i+1, got[i])
				}
			}
			router.mu.Lock()
			defer router.mu.Unlock()
			for _, d := range router.domains {
				if d != "example.test" {
					t.Errorf("resolved %q", d)
				}
			}
		})
	}
}

func TestRefusalTextsNameTheByte(t *testing.T) {
	tests := []struct {
		name string
		got  *smtp.SMTPError
		want string
	}{
		{name: "NUL", got: checkRecipient("b\x00@example.test"), want: "recipient address: control character 0x00 not allowed"},
		{name: "not UTF-8", got: checkSender("a@ex\xffample.test"), want: "sender address: not valid UTF-8"},
		{name: "bare CR", got: checkHelo("legacy\r.test"), want: "EHLO argument: control character 0x0D not allowed"},
		{name: "domain", got: checkRecipient("b@exa<mple.test"), want: "recipient address: character '<' not allowed in domain"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.got == nil || tc.got.Message != tc.want {
				t.Errorf("got %v, want %q", tc.got, tc.want)
			}
		})
	}
}

// TestLaterEHLONameInReceived: the Received header names the EHLO the
// transaction followed, a later valid one included.
func TestLaterEHLONameInReceived(t *testing.T) {
	w := newMXWorld(t)
	ts := newTCPServer(t, Options{Router: w.router, Opener: w.opener})
	c := ts.dial(t, "127.0.0.1")
	c.reply(5 * time.Second)
	for _, cmd := range []string{"EHLO first.legacy.test", "EHLO second.legacy.test", "MAIL FROM:<a@legacy.test>", "RCPT TO:<b@example.test>", "DATA"} {
		if r := c.cmd(cmd); r[0] != '2' && r[0] != '3' {
			t.Fatalf("%s: %q", cmd, r)
		}
	}
	if r := c.cmd("Subject: x\r\n\r\nhello\r\n."); !strings.HasPrefix(r, "250 ") {
		t.Fatalf("message: %q", r)
	}
	msgs := w.mx.Messages()
	if len(msgs) != 1 || !strings.HasPrefix(string(msgs[0].Data), "Received: from second.legacy.test ") {
		t.Fatalf("MX got %+v, want one message whose Received header names second.legacy.test", msgs)
	}
}

// TestRecipientDomainIDN: an internationalized recipient domain is routed
// by its A-labels (RFC 5891 §5): looked up raw, its UTF-8 bytes made a
// question no resolver answers as asked, and the message was deferred
// for ever. A name IDNA refuses is a bad address.
func TestRecipientDomainIDN(t *testing.T) {
	for _, tc := range []struct {
		addr, want string
		ok         bool
	}{
		{addr: "b@bücher.test", want: "xn--bcher-kva.test", ok: true},
		{addr: "b@BÜCHER.Test.", want: "xn--bcher-kva.test", ok: true},
		{addr: "b@xn--bcher-kva.test", want: "xn--bcher-kva.test", ok: true},
		{addr: "b@example.test", want: "example.test", ok: true},
		{addr: "b@a\u200db.test", ok: false}, // a joiner IDNA does not allow there
	} {
		got, ok := recipientDomain(tc.addr)
		if ok != tc.ok || (ok && got != tc.want) {
			t.Errorf("recipientDomain(%q) = %q, %v; want %q, %v", tc.addr, got, ok, tc.want, tc.ok)
		}
	}
}
