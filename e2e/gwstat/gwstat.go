// Package gwstat reads the figures of a running gateway process that the
// end-to-end tests and the benchmark report: sizes from /proc/PID/status
// (or any file of "Field: N kB" lines, such as smaps_rollup) and
// go_goroutines from the admin endpoint's /metrics; and stops it.
package gwstat

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// ErrFormat reports a file or page without the figure asked for.
var ErrFormat = errors.New("gwstat: figure not found")

// StatusBytes reads a size field ("VmRSS", "VmHWM") of /proc/PID/status,
// in bytes.
func StatusBytes(pid int, field string) (int64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return ParseKB(data, field)
}

// ParseKB finds the line "field: N kB" in data and returns N KiB in bytes.
func ParseKB(data []byte, field string) (int64, error) {
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("%w: %s: %w", ErrFormat, field, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("%w: no %s", ErrFormat, field)
}

var goGoroutines = regexp.MustCompile(`(?m)^go_goroutines (\d+)$`)

// Goroutines reads go_goroutines from the admin endpoint at admin
// (host:port) over a connection closed at once (a kept-alive one would
// count).
func Goroutines(admin string) (int, error) {
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + admin + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	return ParseGoroutines(body)
}

// ParseGoroutines finds go_goroutines in a Prometheus text page.
func ParseGoroutines(page []byte) (int, error) {
	m := goGoroutines.FindSubmatch(page)
	if m == nil {
		return 0, fmt.Errorf("%w: no go_goroutines in /metrics:\n%s", ErrFormat, page)
	}
	return strconv.Atoi(string(m[1]))
}

// StopGrace is how long Stop waits after SIGTERM: longer than the 30 s
// the gateway gives sessions in progress.
const StopGrace = 35 * time.Second

// Stop ends a gateway process whose exit closes done: SIGTERM, then
// SIGKILL after grace. It returns at once if the process has exited.
func Stop(p *os.Process, done <-chan struct{}, grace time.Duration) {
	select {
	case <-done:
		return
	default:
	}
	_ = p.Signal(syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(grace):
		_ = p.Kill()
		<-done
	}
}
