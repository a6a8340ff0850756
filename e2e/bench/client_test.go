package bench

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/emersion/go-smtp"
)

// load is one run of the client: n messages of size bytes over conc
// connections at once, each connection sending message after message.
type load struct {
	addr string
	// tls, when set, makes the client say STARTTLS first (the ceiling:
	// straight to the sink); otherwise it speaks plaintext as legacy
	// servers do.
	tls  *tls.Config
	run  int
	n    int
	conc int
	size int
}

// loadResult is what the client saw.
type loadResult struct {
	start   time.Time
	dots    []time.Time // when the client ended DATA, by sequence number
	retries int64       // messages sent again after a failure
	// firstRetry is the failure that caused the first retry.
	firstRetry error
	lastErr    error
}

// maxAttempts bounds how often one message is tried before the run fails.
const maxAttempts = 5

// send runs the load and returns once every message has a 250 (or has
// failed maxAttempts times).
func (l load) send() loadResult {
	payload := filler(l.size)
	res := loadResult{start: time.Now(), dots: make([]time.Time, l.n)}
	var next atomic.Int64
	var retries atomic.Int64
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range l.conc {
		wg.Go(func() {
			var c *smtp.Client
			defer func() {
				if c != nil {
					c.Quit()
					c.Close()
				}
			}()
			for {
				seq := int(next.Add(1) - 1)
				if seq >= l.n {
					return
				}
				var err error
				for attempt := 0; attempt < maxAttempts; attempt++ {
					if attempt > 0 {
						retries.Add(1)
						time.Sleep(50 * time.Millisecond)
					}
					if c == nil {
						c, err = l.dial()
					}
					if c != nil {
						if err = l.message(c, seq, payload, res.dots); err == nil {
							break
						}
						c.Close()
						c = nil
					}
					mu.Lock()
					if res.firstRetry == nil && attempt+1 < maxAttempts {
						res.firstRetry = fmt.Errorf("message %d: %w", seq, err)
					}
					mu.Unlock()
				}
				if err != nil {
					mu.Lock()
					res.lastErr = fmt.Errorf("message %d: %w", seq, err)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	res.retries = retries.Load()
	return res
}

func (l load) dial() (*smtp.Client, error) {
	conn, err := net.DialTimeout("tcp", l.addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	var c *smtp.Client
	if l.tls != nil {
		c, err = smtp.NewClientStartTLS(conn, l.tls)
	} else {
		c = smtp.NewClient(conn)
		err = c.Hello("client.bench.test")
	}
	if err != nil {
		conn.Close()
		return nil, err
	}
	c.CommandTimeout = time.Minute
	c.SubmissionTimeout = 2 * time.Minute
	return c, nil
}

// message sends message seq on c and records when DATA ended.
func (l load) message(c *smtp.Client, seq int, payload []byte, dots []time.Time) error {
	if err := c.Mail("a@legacy.bench.test", nil); err != nil {
		return err
	}
	if err := c.Rcpt("b@bench.test", nil); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	if _, err := fmt.Fprintf(w, "%s%d-%d\r\n", seqHeader, l.run, seq); err != nil {
		return err
	}
	if _, err := w.Write(payload); err != nil {
		return err
	}
	// The end of DATA: Close writes the final dot and waits for the reply.
	dots[seq] = time.Now()
	return w.Close()
}

// filler is the rest of a message of about size bytes after the sequence
// header: a few header fields, a blank line and lines of 76 letters.
func filler(size int) []byte {
	var b bytes.Buffer
	b.WriteString("From: a@legacy.bench.test\r\nTo: b@bench.test\r\nSubject: benchmark\r\n\r\n")
	line := bytes.Repeat([]byte("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789abcd"), 1)
	for b.Len()+len(line)+2 <= size-len(seqHeader)-16 {
		b.Write(line)
		b.WriteString("\r\n")
	}
	return b.Bytes()
}
