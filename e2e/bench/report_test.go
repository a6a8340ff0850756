package bench

import (
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"
)

// cell is one measured run: one path, one size, one concurrency.
type cell struct {
	path    string
	size    int
	conc    int
	n       int
	elapsed time.Duration   // client's start to the sink holding every message
	latency []time.Duration // end of DATA to the sink's acceptance, sorted
	cpu     time.Duration   // the relay's CPU time over the run; 0 for direct
	peakRSS int64           // the relay's peak resident set; 0 for direct
	retries int64
	// machineCPU is what every processor of the machine was busy for over
	// the run, harnessCPU the share of the benchmark's own process (the
	// client and the sink): a check that the relay's figure is whole.
	machineCPU, harnessCPU time.Duration
	dnsQueries             int // what the relay asked the DNS over the run
	sinkConns              int // connections the sink accepted over the run
}

func (c cell) key() string { return fmt.Sprintf("%s %s c%d", c.path, sizeName(c.size), c.conc) }

func (c cell) String() string {
	return fmt.Sprintf("%s: %d messages in %v: %.0f msgs/s, %.1f MB/s, p50 %s ms, p99 %s ms, relay CPU %.3f ms/msg, peak %.1f MiB, %d retries, %.1f DNS queries/msg, %d connections to the sink; machine busy %.3f ms/msg, client and sink %.3f ms/msg",
		c.key(), c.n, c.elapsed.Round(time.Millisecond), c.rate(), c.byteRate()/1e6, ms(c.quantile(0.5)), ms(c.quantile(0.99)),
		c.cpuPerMessage(), mib(c.peakRSS), c.retries, float64(c.dnsQueries)/float64(c.n), c.sinkConns, perMessage(c.machineCPU, c.n), perMessage(c.harnessCPU, c.n))
}

func (c cell) rate() float64     { return float64(c.n) / c.elapsed.Seconds() }
func (c cell) byteRate() float64 { return float64(c.n) * float64(c.size) / c.elapsed.Seconds() }

// cpuPerMessage is the relay's CPU milliseconds per message.
func (c cell) cpuPerMessage() float64 { return perMessage(c.cpu, c.n) }

func perMessage(d time.Duration, n int) float64 {
	return float64(d) / float64(time.Millisecond) / float64(n)
}

// quantile is the q-quantile of the latencies (nearest rank).
func (c cell) quantile(q float64) time.Duration {
	return quantile(c.latency, q)
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted))+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func sortDurations(d []time.Duration) { slices.Sort(d) }

func ms(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }

func mib(b int64) float64 { return float64(b) / (1 << 20) }

func sizeName(size int) string {
	switch {
	case size >= 1<<20 && size%(1<<20) == 0:
		return fmt.Sprintf("%dMB", size>>20)
	case size >= 1<<10 && size%(1<<10) == 0:
		return fmt.Sprintf("%dKB", size>>10)
	}
	return fmt.Sprintf("%dB", size)
}

// find returns the cell of path at size and conc.
func find(cells []cell, path string, size, conc int) (cell, bool) {
	for _, c := range cells {
		if c.path == path && c.size == size && c.conc == conc {
			return c, true
		}
	}
	return cell{}, false
}

// writeTable prints one row per size and concurrency with the three paths
// side by side. Peak memory is sealgate's VmHWM and the largest sum of
// Postfix's proportional set sizes sampled every 250 ms.
func writeTable(w io.Writer, cells []cell) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "\t\tmsgs/s\t\t\tsealgate\tover\tp50 ms\t\t\tp99 ms\t\t\tCPU ms/msg\t\tpeak MiB\t\t")
	fmt.Fprintln(tw, "size\tconc\tdirect\tsealgate\tpostfix\tof direct\tpostfix\tdirect\tsealgate\tpostfix\tdirect\tsealgate\tpostfix\tsealgate\tpostfix\tsealgate\tpostfix\t")
	seen := map[[2]int]bool{}
	for _, c := range cells {
		k := [2]int{c.size, c.conc}
		if seen[k] {
			continue
		}
		seen[k] = true
		d, _ := find(cells, "direct", c.size, c.conc)
		s, _ := find(cells, "sealgate", c.size, c.conc)
		p, _ := find(cells, "postfix", c.size, c.conc)
		fmt.Fprintf(tw, "%s\t%d\t%.0f\t%.0f\t%.0f\t%.0f%%\t%.1fx\t%s\t%s\t%s\t%s\t%s\t%s\t%.3f\t%.3f\t%.1f\t%.1f\t\n",
			sizeName(c.size), c.conc, d.rate(), s.rate(), p.rate(), 100*s.rate()/d.rate(), s.rate()/p.rate(),
			ms(d.quantile(0.5)), ms(s.quantile(0.5)), ms(p.quantile(0.5)),
			ms(d.quantile(0.99)), ms(s.quantile(0.99)), ms(p.quantile(0.99)),
			s.cpuPerMessage(), p.cpuPerMessage(), mib(s.peakRSS), mib(p.peakRSS))
	}
	tw.Flush()
}

// target is one goal of docs/performance.md and what was measured.
type target struct {
	what string
	got  string
	met  bool
}

// targets checks the goals against the cells that exist.
func targets(cells []cell, idle idleResult) []target {
	var out []target
	d, okD := find(cells, "direct", 10<<10, 20)
	s, okS := find(cells, "sealgate", 10<<10, 20)
	p, okP := find(cells, "postfix", 10<<10, 20)
	if okD && okS && okP {
		out = append(out,
			target{"10KB c20: sealgate at least 5x Postfix's msgs/s", fmt.Sprintf("%.1fx", s.rate()/p.rate()), s.rate() >= 5*p.rate()},
			target{"10KB c20: sealgate at least 45% of the ceiling", fmt.Sprintf("%.0f%%", 100*s.rate()/d.rate()), s.rate() >= 0.45*d.rate()},
			target{"10KB c20: sealgate CPU at most 0.8 ms/msg", fmt.Sprintf("%.3f ms (Postfix %.3f ms)", s.cpuPerMessage(), p.cpuPerMessage()), s.cpuPerMessage() <= 0.8},
		)
	}
	if d, ok := find(cells, "direct", 1<<20, 1); ok {
		if s, ok := find(cells, "sealgate", 1<<20, 1); ok {
			out = append(out, target{"1MB c1: sealgate at least 80% of the ceiling's bytes/s",
				fmt.Sprintf("%.0f%% (%.1f of %.1f MB/s)", 100*s.byteRate()/d.byteRate(), s.byteRate()/1e6, d.byteRate()/1e6), s.byteRate() >= 0.8*d.byteRate()})
		}
	}
	for _, size := range []int{1 << 10, 10 << 10} {
		d, okD := find(cells, "direct", size, 1)
		s, okS := find(cells, "sealgate", size, 1)
		if okD && okS {
			added := s.quantile(0.5) - d.quantile(0.5)
			out = append(out, target{fmt.Sprintf("%s c1: p50 latency added by sealgate below 1 ms", sizeName(size)), ms(added) + " ms", added < time.Millisecond})
		}
	}
	if idle.sessions >= 10000 {
		out = append(out, target{fmt.Sprintf("%d idle sessions below 200 MiB", idle.sessions), fmt.Sprintf("%.1f MiB", mib(idle.rss)), idle.rss < 200<<20})
	}
	return out
}

func writeTargets(w io.Writer, cells []cell, idle idleResult) {
	ts := targets(cells, idle)
	if len(ts) == 0 {
		return
	}
	fmt.Fprintln(w, "\nTargets:")
	for _, t := range ts {
		mark := "met"
		if !t.met {
			mark = "NOT MET"
		}
		fmt.Fprintf(w, "  %-56s %-32s %s\n", t.what, t.got, mark)
	}
}
