package proxy

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

func TestBodyReader(t *testing.T) {
	tests := []struct {
		name string
		in   string
		// bad names the offence, "" for a clean message; line is
		// where it is.
		bad  string
		line int
	}{
		{name: "clean", in: "Subject: x\r\n\r\nhello\r\n"},
		{name: "8bit is fine", in: "Subject: \xc3\xa9\r\n\r\n\xff\r\n"},
		{name: "empty", in: ""},
		{name: "bare LF", in: "a\r\nb\nc\r\n", bad: "bare LF", line: 2},
		{name: "bare CR mid-line", in: "a\r\nb\rc\r\n", bad: "bare CR", line: 2},
		{name: "smuggling pattern", in: "x\r\n\r.\r\nMAIL FROM:<a@b>\r\n", bad: "bare CR", line: 2},
		{name: "bare CR at the end", in: "a\r\nb\r", bad: "bare CR", line: 2},
		{name: "CR CR LF", in: "a\r\r\n", bad: "bare CR", line: 1},
		{name: "NUL", in: "a\r\nb\x00c\r\n", bad: "NUL byte", line: 2},
		{name: "LF first", in: "\nx", bad: "bare LF", line: 1},
	}
	for _, tc := range tests {
		for _, split := range []struct {
			name string
			wrap func(io.Reader) io.Reader
		}{
			{"whole", func(r io.Reader) io.Reader { return r }},
			{"byte by byte", iotest.OneByteReader},
		} {
			t.Run(tc.name+"/"+split.name, func(t *testing.T) {
				out, err := io.ReadAll(newBodyReader(split.wrap(bytes.NewReader([]byte(tc.in)))))
				var be *bodyError
				if tc.bad == "" {
					if err != nil || string(out) != tc.in {
						t.Fatalf("got %q, %v; want the message unchanged", out, err)
					}
					return
				}
				if !errors.As(err, &be) {
					t.Fatalf("got %q, %v; want a *bodyError", out, err)
				}
				if be.what != tc.bad || be.line != tc.line {
					t.Fatalf("got %s in line %d, want %s in line %d", be.what, be.line, tc.bad, tc.line)
				}
				if !bytes.HasPrefix([]byte(tc.in), out) {
					t.Fatalf("passed %q, not a prefix of the input", out)
				}
			})
		}
	}
}

func FuzzBodyReader(f *testing.F) {
	for _, s := range []string{"a\r\n", "a\nb", "a\rb", "\x00", "x\r\n\r.\r\n", ""} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := io.ReadAll(newBodyReader(iotest.HalfReader(bytes.NewReader(in))))
		if err == nil {
			// What passes has only CRLF line ends and no NUL.
			if !bytes.Equal(out, in) {
				t.Fatalf("changed %q to %q", in, out)
			}
			clean := bytes.ReplaceAll(in, []byte("\r\n"), nil)
			if bytes.ContainsAny(clean, "\r\n\x00") {
				t.Fatalf("passed %q", in)
			}
			return
		}
		var be *bodyError
		if !errors.As(err, &be) {
			t.Fatalf("error %v is not a *bodyError", err)
		}
		if !bytes.HasPrefix(in, out) {
			t.Fatalf("passed %q, not a prefix of %q", out, in)
		}
	})
}

func TestDotCRScanner(t *testing.T) {
	tests := []struct {
		name   string
		chunks []string
		hit    bool
	}{
		{name: "clean", chunks: []string{"DATA\r\n", "a\r\n..b\r\n.\r\n"}},
		{name: "end of data is no hit", chunks: []string{"x\r\n.\r\n"}},
		{name: "dot bare CR", chunks: []string{"x\r\n.\rMAIL FROM:<a@b>\r\n"}, hit: true},
		{name: "split before the dot", chunks: []string{"x\r\n", ".\rX"}, hit: true},
		{name: "split after the dot", chunks: []string{"x\r\n.", "\rX"}, hit: true},
		{name: "split after the CR", chunks: []string{"x\r\n.\r", "X"}, hit: true},
		{name: "split after the CR, then LF", chunks: []string{"x\r\n.\r", "\n"}},
		{name: "byte by byte", chunks: strings.Split("y\r\n.\rZ", ""), hit: true},
		{name: "CR in mid-line is not this", chunks: []string{"a.\rb\r\n"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var s dotCRScanner
			for _, c := range tc.chunks {
				s.scan([]byte(c))
			}
			if got := s.hits.Load() > 0; got != tc.hit {
				t.Fatalf("hit %t, want %t", got, tc.hit)
			}
		})
	}
}
