package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"sealgate/upstream/upstreamtest"
)

var replyLine = regexp.MustCompile(`^[2-5][0-9][0-9][ -]`)

const (
	// sessionWait bounds every wait of one fuzz input: a healthy
	// session answers in milliseconds.
	sessionWait = 5 * time.Second
	// maxPad is the largest rest of a BDAT chunk the harness sends to
	// bring the session back to commands; beyond it the client hangs up
	// in the middle of the chunk instead.
	maxPad = 64 << 10
)

// FuzzSession feeds arbitrary command streams to an inbound session. Every
// line the server writes must be a well-formed reply, and the server must
// neither panic nor hang: it answers a final QUIT (or closes the
// connection itself), and a client that hangs up in the middle of a chunk
// ends the session.
//
// An input may end inside a BDAT chunk, where the server rightly waits for
// the rest of it: the harness follows the stream as go-smtp reads it (see
// chunkState) and completes the chunk, or, when the rest is too large,
// hangs up. The sessions never get a recipient (failOpener), so no input
// opens a DATA body.
func FuzzSession(f *testing.F) {
	seeds := []string{
		"EHLO x.test\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<b@example.test>\r\nDATA\r\nhello\r\n.\r\n",
		"HELO x\r\nMAIL FROM:<> SIZE=10 BODY=8BITMIME\r\nRCPT TO:<b@example.test> NOTIFY=SUCCESS,FAILURE\r\n",
		"EHLO x\r\nAUTH PLAIN AGFsaWNlAHB3\r\nAUTH LOGIN\r\n*\r\n",
		"EHLO x\r\nMAIL FROM:<a@x> SMTPUTF8\r\nRCPT TO:<ü@exämple.test>\r\nBDAT 5 LAST\r\nhello",
		"EHLO x\r\nSTARTTLS\r\n\x16\x03\x01garbage",
		"RCPT TO:<x@y>\r\nDATA\r\nRSET\r\nNOOP\r\nVRFY a\r\nEXPN b\r\nHELP\r\n",
		"EHLO x.test\r\nMAIL FROM:<a@x.test>\r\nRCPT TO:<\"a b\"@[1.2.3.4]>\r\nRCPT TO:<@route:b@example.test>\r\n",
		strings.Repeat("A", 3000) + "\r\n",
		// Inputs that end inside a chunk, or inside the command line
		// that announces one.
		"EHLO x\r\nBDAT 20000\r\nabc",
		"EHLO x\r\nBDAT 4294967295 LAST\r\n",
		"EHLO x\r\nBDAT 7",
		"EHLO x\r\nbdat 3 last\r\nab\r\nBDAT 2\r\n",
	}
	for _, s := range seeds {
		f.Add(s)
	}
	_, dial := newTestServer(f, Options{})
	f.Fuzz(func(t *testing.T, input string) {
		stream, hangUp := completeStream([]byte(input))
		c := dial("127.0.0.1")
		defer c.Close()
		c.SetDeadline(time.Now().Add(sessionWait))

		replies := make(chan error, 1)
		go func() { replies <- readReplies(c) }()

		_, werr := c.Write(stream)
		if hangUp {
			c.Close()
		}
		var rerr error
		select {
		case rerr = <-replies:
		case <-time.After(sessionWait + time.Second):
			c.Close()
			rerr = <-replies
			t.Errorf("reading the replies did not end")
		}
		switch {
		case rerr != nil && !hangUp:
			t.Errorf("replies: %v", rerr)
		case werr != nil && !hangUp && isTimeout(werr):
			t.Errorf("the server stopped reading: %v", werr)
		}
		c.Close()
		waitSessionsEnd(t)
	})
}

// completeStream returns input followed by what brings the session back
// to commands and then QUIT: the rest of an open BDAT chunk (filler) and
// the end of an open command line. When an open chunk wants more than
// maxPad bytes, it returns input alone and hangUp: the client must close
// the connection after it.
func completeStream(input []byte) (stream []byte, hangUp bool) {
	stream = append([]byte(nil), input...)
	// Ending a line may announce a chunk; a completed chunk leaves no
	// open line: two rounds reach the command state.
	for range 3 {
		pending, midLine := chunkState(stream)
		switch {
		case pending > maxPad:
			return stream, true
		case pending > 0:
			stream = append(stream, bytes.Repeat([]byte{'x'}, int(pending))...)
		case midLine:
			stream = append(stream, "\r\n"...)
		default:
			return append(stream, "QUIT\r\n"...), false
		}
	}
	panic("completeStream: no command state after three rounds")
}

// chunkState follows stream as go-smtp's server reads it and returns how
// many bytes of a BDAT chunk it still awaits at the end, and whether the
// stream ends inside a command line. A line ends at LF; a command "BDAT n"
// or "BDAT n LAST" whose arguments parse is followed by n bytes of chunk,
// which the server reads whatever its reply (even without a transaction,
// or over the size limit). Malformed BDAT commands are answered 501 and
// carry no chunk.
func chunkState(stream []byte) (pending uint64, midLine bool) {
	for len(stream) > 0 {
		i := bytes.IndexByte(stream, '\n')
		if i < 0 {
			return 0, true
		}
		line := strings.TrimRight(string(stream[:i]), "\r\n")
		stream = stream[i+1:]
		size, ok := bdatSize(line)
		if !ok {
			continue
		}
		if uint64(len(stream)) < size {
			return size - uint64(len(stream)), false
		}
		stream = stream[size:]
	}
	return 0, false
}

// bdatSize parses a command line as go-smtp does (parseCmd, handleBdat)
// and returns the chunk size of a well-formed BDAT.
func bdatSize(line string) (uint64, bool) {
	if len(line) <= 5 || strings.ToUpper(line[:4]) != "BDAT" || line[4] != ' ' {
		return 0, false
	}
	args := strings.Fields(strings.TrimSpace(line[5:]))
	if len(args) == 0 || len(args) > 2 || (len(args) == 2 && !strings.EqualFold(args[1], "LAST")) {
		return 0, false
	}
	size, err := strconv.ParseUint(args[0], 10, 32)
	return size, err == nil
}

// readReplies reads reply lines until "221 " or the end of the
// connection, and fails at the first malformed one or a timeout.
func readReplies(c net.Conn) error {
	sc := bufio.NewScanner(c)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for sc.Scan() {
		line := sc.Text()
		if !replyLine.MatchString(line) {
			return errors.New("malformed reply line " + strconv.Quote(line))
		}
		if strings.HasPrefix(line, "221 ") {
			return nil
		}
	}
	if err := sc.Err(); err != nil && !errors.Is(err, io.ErrClosedPipe) && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// sessionMarkers name the goroutines of inbound sessions: go-smtp's
// connection handlers and whatever runs our session's methods (Data runs
// on a goroutine of its own for BDAT).
var sessionMarkers = []string{"sealgate/proxy.(*session)", "emersion/go-smtp.(*Conn)"}

// waitSessionsEnd fails the test unless every session goroutine ended
// within sessionWait, and prints their stacks.
func waitSessionsEnd(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(sessionWait)
	for {
		left := upstreamtest.Leaked(sessionMarkers...)
		if left == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("sessions still running %v after their clients left:\n%s", sessionWait, left)
		}
		time.Sleep(time.Millisecond)
	}
}
