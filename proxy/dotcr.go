package proxy

import (
	"bytes"
	"sync/atomic"
)

// dotCRScanner watches the raw bytes a client sends for a line that starts
// with a dot followed by a bare CR ("\n.\r" and then anything but LF).
// go-smtp's DATA reader drops that dot and CR together, so the body check
// never sees the bare CR; the scanner, under the reader, does. It sees
// plaintext only: on a STARTTLS session the bytes under go-smtp are
// ciphertext, and its count means nothing.
type dotCRScanner struct {
	hits atomic.Uint64
	// seen is hits at the end of the last message.
	seen atomic.Uint64
	tail [3]byte // the last bytes scanned
	n    int
}

var dotCR = []byte("\n.\r")

// scan counts the pattern in p, across the boundary with the bytes before.
// A pattern may be counted twice; only a change of the count matters.
func (s *dotCRScanner) scan(p []byte) {
	if len(p) == 0 {
		return
	}
	var edge [6]byte
	k := copy(edge[:], s.tail[:s.n])
	k += copy(edge[k:], p[:min(3, len(p))])
	s.count(edge[:k])
	s.count(p)
	if len(p) >= 3 {
		s.n = copy(s.tail[:], p[len(p)-3:])
		return
	}
	both := append(s.tail[:s.n:s.n], p...)
	s.n = copy(s.tail[:], both[max(0, len(both)-3):])
}

func (s *dotCRScanner) count(b []byte) {
	for {
		i := bytes.Index(b, dotCR)
		if i < 0 || i+3 >= len(b) {
			return
		}
		if b[i+3] != '\n' {
			s.hits.Add(1)
		}
		b = b[i+1:]
	}
}

// since reports whether the pattern was seen since the end of the last
// message.
func (s *dotCRScanner) since() bool { return s.hits.Load() != s.seen.Load() }

// settle marks the end of a message.
func (s *dotCRScanner) settle() { s.seen.Store(s.hits.Load()) }
