package upstream

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/textproto"
	"slices"
	"strings"
	"time"
)

// errNoSTARTTLS means the server did not offer STARTTLS or refused it.
var errNoSTARTTLS = errors.New("STARTTLS not offered")

// errInjected means the server sent bytes that no command of ours asked
// for before the TLS handshake.
var errInjected = errors.New("server sent data before the TLS handshake")

// replyError is a reply from the server during the pre-TLS phase.
type replyError struct {
	Stage string
	Code  int
	Text  string
}

func (e *replyError) Error() string {
	return fmt.Sprintf("%s: server replied %d %s", e.Stage, e.Code, e.Text)
}

// quitTimeout bounds the wait for the reply to a QUIT sent to a server we
// leave: it is a courtesy that must not hold up the next MX host.
const quitTimeout = 5 * time.Second

// preTLS runs the cleartext part of the session by hand: it reads the
// greeting, sends EHLO with our name and STARTTLS. Nothing else is ever
// sent in cleartext but QUIT, when the server offers no STARTTLS or
// refuses it (RFC 3207 §4.1: a client that will not go on without TLS
// should issue QUIT). On success the connection is ready for the TLS
// handshake. It returns the greeting line's text for the log.
func preTLS(conn net.Conn, hostname string, timeout time.Duration) (string, error) {
	in := &fillTracker{r: conn}
	br := bufio.NewReaderSize(in, 4096)
	tp := textproto.NewReader(br)
	read := func(stage string, want int) (string, error) {
		conn.SetReadDeadline(time.Now().Add(timeout))
		_, msg, err := tp.ReadResponse(want)
		if err != nil {
			var perr *textproto.Error
			if errors.As(err, &perr) {
				return "", &replyError{Stage: stage, Code: perr.Code, Text: perr.Msg}
			}
			return "", fmt.Errorf("%s: %w", stage, err)
		}
		return msg, nil
	}
	write := func(line string) error {
		conn.SetWriteDeadline(time.Now().Add(timeout))
		_, err := conn.Write([]byte(line + "\r\n"))
		return err
	}
	// quit ends the session politely and waits briefly for the 221.
	quit := func() {
		if write("QUIT") == nil {
			conn.SetReadDeadline(time.Now().Add(min(timeout, quitTimeout)))
			_, _, _ = tp.ReadResponse(221)
		}
	}
	greeting, err := read("greeting", 220)
	if err != nil {
		return "", err
	}
	if err := write("EHLO " + hostname); err != nil {
		return greeting, fmt.Errorf("EHLO: %w", err)
	}
	ehlo, err := read("EHLO", 250)
	if err != nil {
		var re *replyError
		if errors.As(err, &re) && (re.Code == 500 || re.Code == 502) {
			// No ESMTP means no STARTTLS (RFC 3207).
			quit()
			return greeting, fmt.Errorf("%w (EHLO refused: %d %s)", errNoSTARTTLS, re.Code, re.Text)
		}
		return greeting, err
	}
	if !hasExtension(ehlo, "STARTTLS") {
		quit()
		return greeting, errNoSTARTTLS
	}
	// A reply to STARTTLS sent ahead of the command would leave bytes
	// of the next read unseen by the check below.
	if br.Buffered() > 0 {
		return greeting, fmt.Errorf("EHLO: %w", errInjected)
	}
	if err := write("STARTTLS"); err != nil {
		return greeting, fmt.Errorf("STARTTLS: %w", err)
	}
	if _, err := read("STARTTLS", 220); err != nil {
		var re *replyError
		if errors.As(err, &re) {
			quit()
			return greeting, fmt.Errorf("%w (STARTTLS refused: %d %s)", errNoSTARTTLS, re.Code, re.Text)
		}
		return greeting, err
	}
	// Anything the server sent after its 220 would be read as if it came
	// through TLS (the STARTTLS command injection flaw): refuse it, both
	// when it is in our buffer and when the last read filled the buffer
	// (more may wait behind a reply that ends at its edge).
	if br.Buffered() > 0 || in.full {
		return greeting, fmt.Errorf("STARTTLS: %w", errInjected)
	}
	conn.SetDeadline(time.Time{})
	return greeting, nil
}

// hasExtension reports whether an EHLO reply (lines joined by "\n", the
// first being the greeting) lists the keyword.
func hasExtension(ehlo, keyword string) bool {
	return slices.Contains(ehloKeywords(ehlo), strings.ToUpper(keyword))
}

// ehloKeywords returns the keywords an EHLO reply (lines joined by "\n",
// the first being the greeting) lists, upper-cased. A line whose first
// word is not an ehlo-keyword of RFC 5321 §4.1.1.1 (ASCII letters and
// digits, then also "-") lists none: Unicode case folding must not turn
// "ſTARTTLS" into STARTTLS.
func ehloKeywords(ehlo string) []string {
	lines := strings.Split(ehlo, "\n")
	var out []string
	for _, l := range lines[1:] {
		f := strings.Fields(l)
		if len(f) > 0 && isKeyword(f[0]) {
			out = append(out, strings.ToUpper(f[0]))
		}
	}
	return out
}

func isKeyword(s string) bool {
	for i, c := range []byte(s) {
		alnum := 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
		if !alnum && (i == 0 || c != '-') {
			return false
		}
	}
	return s != ""
}

// fillTracker remembers whether the last read filled the buffer it was
// given: then more bytes may be waiting on the connection.
type fillTracker struct {
	r    io.Reader
	full bool
}

func (t *fillTracker) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	t.full = n > 0 && n == len(p)
	return n, err
}
