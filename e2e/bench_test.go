package e2e

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"

	"sealgate/upstream/upstreamtest"
)

// BenchmarkRelay measures messages through the built binary: a legacy
// client, one connection per message; sealgate resolving the domain,
// connecting to the MX, STARTTLS with a TLS 1.3 handshake judged under the
// floor, streaming the body. It reports messages per second and bytes per
// second for each message size. Run it with `make bench`.
func BenchmarkRelay(b *testing.B) {
	for _, size := range []int{4 << 10, 256 << 10, 4 << 20} {
		b.Run(fmt.Sprintf("%dKiB", size>>10), func(b *testing.B) {
			w := newWorld(b)
			mx := w.mx("bench.test", "mx.bench.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx.bench.test")})
			g := w.start(nil)
			body := bigMessage(size)
			b.SetBytes(int64(len(body)))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if res := g.send("a@legacy.sealgate.test", []string{"b@bench.test"}, body); res.Rcpt[0] != nil || res.Data != nil {
					b.Fatalf("%+v", res)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			b.ReportMetric(float64(peakRSS(b, g.cmd.Process.Pid))/(1<<20), "gateway-peak-RSS-MiB")
			if got := len(mx.Messages()); got != b.N {
				b.Fatalf("MX got %d messages, want %d", got, b.N)
			}
		})
	}
}

// peakRSS reads the peak resident set size of a process (VmHWM), in bytes.
func peakRSS(b *testing.B, pid int) int64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				b.Fatal(err)
			}
			return kb << 10
		}
	}
	b.Fatal("no VmHWM")
	return 0
}
