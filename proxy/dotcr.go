package proxy

import (
	"bytes"
	"sync"
	"sync/atomic"
)

// dotCRScanner watches the raw bytes a client sends for a line that starts
// with a dot followed by a bare CR (".\r" and then anything but LF).
// go-smtp's DATA reader drops that dot and CR together, so the body check
// never sees the bare CR; the scanner, under the reader, does. It sees
// plaintext only: on a STARTTLS session the bytes under go-smtp are
// ciphertext, and it is switched off (stop).
//
// A finding must be charged to the message it is in, not to a neighbour:
// go-smtp reads ahead (a pipelined next message may be read with this
// one), and drains the rest of a message whose Data returned early after
// Data returned. So the scanner notes where each such line starts, and
// where each line "." ends (the end of a DATA body, RFC 5321 §4.1.1.4,
// or ".\n", which go-smtp takes for one too), as offsets in the byte
// stream. Every DATA message ends at the next of those ends, in order:
// the message's body is what lies between the previous message's end and
// its own, and only a line there counts against it. (A line "." sent as
// a command, or inside a BDAT chunk, would shift that order: a client that
// sends such garbage may see its neighbour judged by its bytes.)
type dotCRScanner struct {
	off     atomic.Bool
	mu      sync.Mutex
	pos     int64   // bytes scanned
	tail    []byte  // the last bytes scanned, at most 3
	classed int64   // start of the last line classified (a start is never 0)
	hits    []int64 // starts of ".\r" lines not yet charged
	ends    []dotEnd
	// owed is the DATA messages whose Data returned before their end:
	// go-smtp drains them, and their ends come before the next one's.
	owed int
	// from is where the body of the next DATA message may start.
	from int64
}

// dotEnd is a line "." (or ".\n"): start and end offsets.
type dotEnd struct{ start, end int64 }

// maxDotEvents bounds each list (a client sending lines of dots as
// commands): beyond it the oldest go.
const maxDotEvents = 1024

var lineDot = []byte("\n.")

// scan notes the lines starting with a dot in p, across the boundary with
// the bytes before.
func (s *dotCRScanner) scan(p []byte) {
	if len(p) == 0 {
		return
	}
	if s.off.Load() {
		return // every read of a TLS session: no lock
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// The boundary: a line that starts in the tail is decided here (or,
	// with fewer new bytes than it needs, stays in the tail).
	var edge [6]byte
	k := copy(edge[:], s.tail)
	k += copy(edge[k:], p[:min(3, len(p))])
	s.classify(edge[:k], s.pos-int64(len(s.tail)))
	s.classify(p, s.pos)
	s.pos += int64(len(p))
	var both [6]byte
	n := copy(both[:], s.tail)
	n += copy(both[n:], p[max(0, len(p)-3):])
	s.tail = append(s.tail[:0], both[max(0, n-3):n]...)
}

// classify notes the lines starting with a dot in w, which starts at
// offset base; one that needs bytes beyond w is left for later.
func (s *dotCRScanner) classify(w []byte, base int64) {
	for j := 0; ; {
		i := bytes.Index(w[j:], lineDot)
		if i < 0 {
			return
		}
		i += j
		j = i + 1
		start := base + int64(i) + 1 // the dot
		if start <= s.classed {
			continue
		}
		if i+2 >= len(w) || (w[i+2] == '\r' && i+3 >= len(w)) {
			return // more bytes needed
		}
		switch {
		case w[i+2] == '\n':
			s.ends = appendBounded(s.ends, dotEnd{start, start + 2})
		case w[i+2] == '\r' && w[i+3] == '\n':
			s.ends = appendBounded(s.ends, dotEnd{start, start + 3})
		case w[i+2] == '\r':
			s.hits = appendBounded(s.hits, start)
		}
		s.classed = start
	}
}

func appendBounded[T any](list []T, v T) []T {
	if len(list) >= maxDotEvents {
		list = list[1:]
	}
	return append(list, v)
}

// stop switches the scanner off: the bytes are no longer plaintext.
func (s *dotCRScanner) stop() {
	s.off.Store(true)
	s.mu.Lock()
	s.hits, s.ends, s.tail = nil, nil, nil
	s.mu.Unlock()
}

// endMessage is called at the end of a DATA message's body, once go-smtp
// read its end: it reports whether a line starting with a dot and a bare
// CR lies in that body.
func (s *dotCRScanner) endMessage() bool {
	if s.off.Load() {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for ; s.owed > 0 && len(s.ends) > 0; s.owed-- {
		s.from, s.ends = s.ends[0].end, s.ends[1:]
	}
	s.owed = 0
	if len(s.ends) == 0 {
		return false // not seen: nothing to judge by
	}
	end := s.ends[0]
	s.ends = s.ends[1:]
	hit := false
	kept := s.hits[:0]
	for _, h := range s.hits {
		switch {
		case h >= s.from && h < end.start:
			hit = true
		case h >= end.end:
			kept = append(kept, h)
		}
	}
	s.hits, s.from = kept, end.end
	return hit
}

// abandonMessage is called when a DATA message's Data returned before
// the end of its body: go-smtp reads the rest, through its end.
func (s *dotCRScanner) abandonMessage() {
	s.mu.Lock()
	s.owed++
	s.mu.Unlock()
}
