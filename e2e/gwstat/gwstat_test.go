package gwstat

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

func TestParseKB(t *testing.T) {
	status := "Name:\tsealgate\nVmHWM:\t   51200 kB\nVmRSS:\t   40960 kB\nPss:  12 kB\nBad:\tx kB\n"
	tests := []struct {
		name    string
		field   string
		want    int64
		wantErr error
	}{
		{name: "rss", field: "VmRSS", want: 40 << 20},
		{name: "peak", field: "VmHWM", want: 50 << 20},
		{name: "smaps_rollup form", field: "Pss", want: 12 << 10},
		{name: "not a number", field: "Bad", wantErr: ErrFormat},
		{name: "missing", field: "VmSwap", wantErr: ErrFormat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseKB([]byte(status), tt.field)
			if !errors.Is(err, tt.wantErr) || got != tt.want {
				t.Errorf("ParseKB(%q) = %d, %v; want %d, %v", tt.field, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestStatusBytesOfThisProcess(t *testing.T) {
	rss, err := StatusBytes(os.Getpid(), "VmRSS")
	if err != nil || rss <= 0 {
		t.Fatalf("StatusBytes(self, VmRSS) = %d, %v", rss, err)
	}
}

func TestParseMetric(t *testing.T) {
	page := "# TYPE go_goroutines gauge\ngo_goroutines 42\ngo_goroutines_total 3\ngo_memstats_stack_inuse_bytes 8.192e+07\nbad NaNx\n"
	tests := []struct {
		name    string
		metric  string
		want    float64
		wantErr error
	}{
		{name: "integer", metric: "go_goroutines", want: 42},
		{name: "exponent", metric: "go_memstats_stack_inuse_bytes", want: 8.192e7},
		{name: "a longer name is another metric", metric: "go_goroutines_total", want: 3},
		{name: "missing", metric: "go_threads", wantErr: ErrFormat},
		{name: "not a number", metric: "bad", wantErr: ErrFormat},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseMetric([]byte(page), tt.metric)
			if !errors.Is(err, tt.wantErr) || got != tt.want {
				t.Errorf("ParseMetric(%q) = %v, %v; want %v, %v", tt.metric, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestStop(t *testing.T) {
	tests := []struct {
		name       string
		script     string
		grace      time.Duration
		wantKilled bool
	}{
		{name: "exits on SIGTERM", script: "exec sleep 30", grace: 10 * time.Second},
		// The shell waits for sleep in the foreground and ignores TERM.
		{name: "ignores SIGTERM", script: "trap '' TERM; sleep 30; true", grace: 200 * time.Millisecond, wantKilled: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cmd := exec.Command("/bin/sh", "-c", tt.script)
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{})
			var state *os.ProcessState
			go func() { cmd.Wait(); state = cmd.ProcessState; close(done) }()
			time.Sleep(100 * time.Millisecond) // let the shell set its trap
			start := time.Now()
			Stop(cmd.Process, done, tt.grace)
			if took := time.Since(start); took > tt.grace+5*time.Second {
				t.Errorf("Stop took %v", took)
			}
			ws := state.Sys().(syscall.WaitStatus)
			if got := ws.Signaled() && ws.Signal() == syscall.SIGKILL; got != tt.wantKilled {
				t.Errorf("killed = %v (%v), want %v", got, state, tt.wantKilled)
			}
			Stop(cmd.Process, done, tt.grace) // after the exit: returns at once
		})
	}
}
