package localpolicy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

const (
	maxLineBytes = 1 << 20 // a physical line longer than this is an error
	maxErrors    = 20      // Parse reports at most this many problems
)

// Load reads the policy file at path; see Parse.
func Load(path string) (*Policy, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("policy file: %w", err)
	}
	defer f.Close()
	return Parse(path, f)
}

// Parse reads a policy table from r. name is the file name used in error
// messages and the base for relative tafile paths (its directory). Every
// tafile is loaded now. On error, the result is nil and the error joins one
// *ParseError per bad line (at most 20).
func Parse(name string, r io.Reader) (*Policy, error) {
	p, _, err := parse(name, r)
	return p, err
}

// parse is Parse that also returns the path of every tafile the table
// names, as opened, even when the table has errors (a tafile that cannot
// be loaded included): what a live table must watch.
func parse(name string, r io.Reader) (*Policy, []string, error) {
	p := &Policy{File: name, byDest: make(map[string]*Entry)}
	var tafiles []string
	base := filepath.Dir(name)
	var errs []error
	fail := func(line int, err error) bool {
		errs = append(errs, &ParseError{File: name, Line: line, Err: err})
		return len(errs) < maxErrors
	}
	add := func(ll *logicalLine) bool {
		e, line, err := parseEntry(base, ll, &tafiles)
		if err != nil {
			return fail(line, err)
		}
		if prev, dup := p.byDest[e.Destination]; dup {
			return fail(e.Line, fmt.Errorf("%w %s (first on line %d)", ErrDuplicate, e.Destination, prev.Line))
		}
		p.byDest[e.Destination] = e
		p.entries = append(p.entries, e)
		return true
	}

	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), maxLineBytes)
	var cur *logicalLine
	n := 0
	more := true
	for more && sc.Scan() {
		n++
		text := strings.TrimSuffix(sc.Text(), "\r")
		trimmed := strings.TrimSpace(text)
		switch {
		case trimmed == "" || trimmed[0] == '#':
			// Blank and comment lines do not end a logical line.
		case text[0] == ' ' || text[0] == '\t':
			if cur == nil {
				more = fail(n, fmt.Errorf("%w: line starts with whitespace but no entry precedes it", ErrSyntax))
				continue
			}
			cur.segs = append(cur.segs, segment{text: trimmed, line: n})
		default:
			if cur != nil {
				more = add(cur)
			}
			cur = &logicalLine{segs: []segment{{text: trimmed, line: n}}}
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			err = fmt.Errorf("%w: line longer than %d bytes", ErrSyntax, maxLineBytes)
		}
		fail(n+1, err)
	} else if more && cur != nil {
		add(cur)
	}
	if len(errs) > 0 {
		return nil, tafiles, errors.Join(errs...)
	}
	return p, tafiles, nil
}

// logicalLine is one entry: its first physical line and continuations.
type logicalLine struct{ segs []segment }

type segment struct {
	text string
	line int
}

// token is one whitespace- or comma-separated word of an entry's value.
type token struct {
	text   string
	line   int
	braced bool // was "{ ... }": whitespace inside is part of the value
}

// split returns the destination (up to the first whitespace of the first
// line) and the value tokens of all lines. On error, the int is the line.
func (ll *logicalLine) split() (token, []token, int, error) {
	first := ll.segs[0]
	key, rest := first.text, ""
	if i := strings.IndexAny(key, " \t"); i >= 0 {
		key, rest = key[:i], key[i+1:]
	}
	dest := token{text: key, line: first.line}
	segs := append([]segment{{text: rest, line: first.line}}, ll.segs[1:]...)
	var toks []token
	for _, s := range segs {
		t, err := tokenize(s.text, s.line)
		if err != nil {
			return dest, nil, s.line, err
		}
		toks = append(toks, t...)
	}
	return dest, toks, 0, nil
}

func isSep(c byte) bool { return c == ' ' || c == '\t' || c == ',' }

// tokenize splits one physical line's value part Postfix-style: separators
// are whitespace and commas; "{ ... }" is one token.
func tokenize(s string, line int) ([]token, error) {
	var out []token
	for i := 0; i < len(s); {
		switch c := s[i]; {
		case isSep(c):
			i++
		case c == '{':
			j := strings.IndexByte(s[i+1:], '}')
			if j < 0 {
				return nil, fmt.Errorf("%w: %q has no closing brace", ErrSyntax, s[i:])
			}
			inner := s[i+1 : i+1+j]
			if strings.ContainsRune(inner, '{') {
				return nil, fmt.Errorf("%w: nested braces in %q", ErrSyntax, s[i:i+j+2])
			}
			i += j + 2
			if i < len(s) && !isSep(s[i]) {
				return nil, fmt.Errorf("%w: text after closing brace in %q", ErrSyntax, s)
			}
			out = append(out, token{text: strings.Join(strings.Fields(inner), " "), line: line, braced: true})
		default:
			j := i
			for j < len(s) && !isSep(s[j]) {
				j++
			}
			w := s[i:j]
			if strings.ContainsAny(w, "{}") {
				return nil, fmt.Errorf("%w: unexpected brace in %q", ErrSyntax, w)
			}
			out = append(out, token{text: w, line: line})
			i = j
		}
	}
	return out, nil
}

// nameValue splits an attribute token at its first "=".
func nameValue(t token) (string, string, error) {
	name, value, ok := strings.Cut(t.text, "=")
	name, value = strings.TrimSpace(name), strings.TrimSpace(value)
	if !ok || name == "" {
		hint := ""
		if strings.HasPrefix(t.text, "#") {
			hint = "; comments must be on lines of their own"
		}
		return "", "", fmt.Errorf("%w: %q is not a name=value attribute%s", ErrSyntax, t.text, hint)
	}
	return strings.ToLower(name), value, nil
}
