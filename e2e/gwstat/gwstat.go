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

// Metrics fetches the Prometheus text page of the admin endpoint at admin
// (host:port) over a connection closed at once (a kept-alive one would
// count as a goroutine).
func Metrics(admin string) ([]byte, error) {
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 10 * time.Second}
	resp, err := client.Get("http://" + admin + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	return io.ReadAll(resp.Body)
}

// Goroutines reads go_goroutines from the admin endpoint at admin.
func Goroutines(admin string) (int, error) {
	page, err := Metrics(admin)
	if err != nil {
		return 0, err
	}
	n, err := ParseMetric(page, "go_goroutines")
	return int(n), err
}

// ParseMetric finds the sample of an unlabelled metric in a Prometheus
// text page.
func ParseMetric(page []byte, name string) (float64, error) {
	re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`)
	m := re.FindSubmatch(page)
	if m == nil {
		return 0, fmt.Errorf("%w: no %s in /metrics:\n%s", ErrFormat, name, page)
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %s: %w", ErrFormat, name, err)
	}
	return v, nil
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
