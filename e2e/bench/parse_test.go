package bench

import (
	"bufio"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestParseStat(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    procStat
		wantErr error
	}{
		{
			name: "postfix daemon",
			in:   "4242 (smtp) S 4200 4200 4200 0 -1 4194560 500 0 0 0 17 5 3 4 20 0 1 0 900 10000000 812 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n",
			want: procStat{state: "S", pgrp: 4200, utime: 17, stime: 5, cutime: 3, cstime: 4, rssPages: 812},
		},
		{
			name: "name with spaces and parentheses",
			in:   "7 (a (b) c) R 1 7 7 0 -1 0 0 0 0 0 100 200 0 0 20 0 9 0 5 1 2048 0",
			want: procStat{state: "R", pgrp: 7, utime: 100, stime: 200, rssPages: 2048},
		},
		{name: "no closing parenthesis", in: "7 (a R 1 7", wantErr: errProcFormat},
		{name: "too few fields", in: "7 (a) R 1 7 7", wantErr: errProcFormat},
		{name: "not a number", in: "7 (a) R 1 x 7 0 -1 0 0 0 0 0 100 200 0 0 20 0 9 0 5 1 2048 0", wantErr: errProcFormat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStat([]byte(tt.in))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("parseStat() error = %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("parseStat() = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestReadSeq(t *testing.T) {
	tests := []struct {
		name             string
		msg              string
		wantRun, wantSeq int
		wantErr          error
	}{
		{name: "after relay headers", msg: "Received: from x\r\n\tby y\r\nX-Bench-Seq: 3-17\r\nFrom: a\r\n\r\nbody\r\n", wantRun: 3, wantSeq: 17},
		{name: "in the body only", msg: "From: a\r\n\r\nX-Bench-Seq: 3-17\r\n", wantErr: errNoSeq},
		{name: "no dash", msg: "X-Bench-Seq: 317\r\n\r\n", wantErr: errNoSeq},
		{name: "not numbers", msg: "X-Bench-Seq: a-b\r\n\r\n", wantErr: errNoSeq},
		{name: "empty", msg: "", wantErr: errNoSeq},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			run, seq, err := readSeq(bufio.NewReader(strings.NewReader(tt.msg)))
			if !errors.Is(err, tt.wantErr) || run != tt.wantRun || seq != tt.wantSeq {
				t.Errorf("readSeq() = %d, %d, %v; want %d, %d, %v", run, seq, err, tt.wantRun, tt.wantSeq, tt.wantErr)
			}
		})
	}
}

func TestQuantile(t *testing.T) {
	ten := make([]time.Duration, 10)
	for i := range ten {
		ten[i] = time.Duration(i+1) * time.Millisecond
	}
	tests := []struct {
		name   string
		sorted []time.Duration
		q      float64
		want   time.Duration
	}{
		{name: "empty", q: 0.5, want: 0},
		{name: "median of ten", sorted: ten, q: 0.5, want: 5 * time.Millisecond},
		{name: "p99 of ten is the largest", sorted: ten, q: 0.99, want: 10 * time.Millisecond},
		{name: "one", sorted: ten[:1], q: 0.99, want: time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := quantile(tt.sorted, tt.q); got != tt.want {
				t.Errorf("quantile(%v) = %v, want %v", tt.q, got, tt.want)
			}
		})
	}
}

func TestFillerSize(t *testing.T) {
	for _, size := range []int{1 << 10, 10 << 10, 1 << 20} {
		got := len(filler(size)) + len(seqHeader) + len("12-123456\r\n")
		if got > size || got < size-80 {
			t.Errorf("message for %s is %d bytes", sizeName(size), got)
		}
	}
}

func TestTargets(t *testing.T) {
	lat := []time.Duration{time.Millisecond}
	cells := []cell{
		{path: "direct", size: 10 << 10, conc: 20, n: 1000, elapsed: time.Second, latency: lat},
		{path: "sealgate", size: 10 << 10, conc: 20, n: 500, elapsed: time.Second, cpu: 300 * time.Millisecond, latency: lat},
		{path: "postfix", size: 10 << 10, conc: 20, n: 200, elapsed: time.Second, cpu: time.Second, latency: lat},
	}
	got := targets(cells, idleResult{sessions: 10000, rss: 100 << 20})
	want := map[string]bool{
		"10KB c20: sealgate at least 5x Postfix's msgs/s": false, // 2.5x
		"10KB c20: sealgate at least 45% of the ceiling":  true,  // 50%
		"10KB c20: sealgate CPU at most 0.8 ms/msg":       true,  // 0.6 ms
		"10000 idle sessions below 200 MiB":               true,
	}
	if len(got) != len(want) {
		t.Fatalf("targets() = %+v, want %d", got, len(want))
	}
	for _, g := range got {
		if met, ok := want[g.what]; !ok || met != g.met {
			t.Errorf("target %q met=%v (%s), want %v", g.what, g.met, g.got, met)
		}
	}
}

func TestParseMachineBusy(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    time.Duration
		wantErr error
	}{
		{name: "idle and iowait left out, guest not counted twice", in: "cpu  100 2 30 5000 40 1 2 3 7 0\ncpu0 1 2 3 4\n", want: 138 * clockTick},
		{name: "short kernel line", in: "cpu  1 2 3 4 5\n", want: 6 * clockTick},
		{name: "not the cpu line", in: "intr 1 2 3 4 5 6\n", wantErr: errProcFormat},
		{name: "not a number", in: "cpu  1 x 3 4 5 6\n", wantErr: errProcFormat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseMachineBusy([]byte(tt.in))
			if !errors.Is(err, tt.wantErr) || got != tt.want {
				t.Errorf("parseMachineBusy() = %v, %v; want %v, %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestIntList(t *testing.T) {
	def := []int{1, 20}
	tests := []struct {
		name    string
		in      string
		want    []int
		wantErr bool
	}{
		{name: "empty keeps the default", in: "", want: def},
		{name: "list", in: "1024, 1048576", want: []int{1024, 1048576}},
		{name: "zero", in: "0", wantErr: true},
		{name: "word", in: "10KB", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := intList(tt.in, def)
			if (err != nil) != tt.wantErr || !slices.Equal(got, tt.want) {
				t.Errorf("intList(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestEnvList(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    map[string]string
		wantErr bool
	}{
		{name: "empty", in: "", want: map[string]string{}},
		{name: "two", in: "SEALGATE_UPSTREAM_MAX_IDLE=200, SEALGATE_LOG_LEVEL=warn", want: map[string]string{"SEALGATE_UPSTREAM_MAX_IDLE": "200", "SEALGATE_LOG_LEVEL": "warn"}},
		{name: "empty value", in: "A=", want: map[string]string{"A": ""}},
		{name: "no equals sign", in: "A", wantErr: true},
		{name: "no name", in: "=1", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := envList(tt.in)
			if (err != nil) != tt.wantErr || (!tt.wantErr && !maps.Equal(got, tt.want)) {
				t.Errorf("envList(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.wantErr)
			}
		})
	}
}
