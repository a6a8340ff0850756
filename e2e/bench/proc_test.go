package bench

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"sealgate/e2e/gwstat"
)

// clockTick is the unit of utime and stime in /proc/PID/stat: USER_HZ,
// 100 on every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

var errProcFormat = errors.New("bad /proc format")

// procStat is what the benchmark reads of /proc/PID/stat.
type procStat struct {
	state          string
	pgrp           int
	utime, stime   int64 // ticks of the process's own threads
	cutime, cstime int64 // ticks of its waited-for children
	rssPages       int64
}

// parseStat parses /proc/PID/stat: "pid (comm) state ppid pgrp ...";
// comm may hold spaces and parentheses, so fields count from the last ')'.
func parseStat(b []byte) (procStat, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("%w: stat %q", errProcFormat, b)
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state); utime is field 14, rss field 24.
	if len(f) < 22 {
		return procStat{}, fmt.Errorf("%w: stat has %d fields", errProcFormat, len(f)+2)
	}
	nums := make([]int64, 0, 5)
	for _, k := range []int{2, 11, 12, 13, 14, 21} {
		n, err := strconv.ParseInt(f[k], 10, 64)
		if err != nil {
			return procStat{}, fmt.Errorf("%w: stat field %d: %w", errProcFormat, k+3, err)
		}
		nums = append(nums, n)
	}
	return procStat{state: f[0], pgrp: int(nums[0]), utime: nums[1], stime: nums[2],
		cutime: nums[3], cstime: nums[4], rssPages: nums[5]}, nil
}

func readStat(pid int) (procStat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, err
	}
	return parseStat(b)
}

// usage is the CPU time and resident memory of a relay: one process
// (sealgate) or a process group (Postfix's master and every daemon it
// started).
type usage struct {
	cpu time.Duration
	rss int64 // bytes, summed over the processes
}

// processUsage is the CPU time of pid's threads and its resident set.
func processUsage(pid int) (usage, error) {
	st, err := readStat(pid)
	if err != nil {
		return usage{}, err
	}
	return usage{cpu: time.Duration(st.utime+st.stime) * clockTick, rss: st.rssPages * int64(os.Getpagesize())}, nil
}

// groupUsage sums over the live processes of process group pgid (Postfix's
// master calls setsid: every daemon is in its group), plus what the
// leader's children that have exited used (cutime, cstime), so that a
// daemon that ends between two readings still counts.
func groupUsage(pgid int) (usage, error) {
	stats, err := filepath.Glob("/proc/[0-9]*/stat")
	if err != nil {
		return usage{}, err
	}
	var u usage
	found := false
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // exited meanwhile
		}
		st, err := parseStat(b)
		if err != nil || st.pgrp != pgid {
			continue
		}
		ticks := st.utime + st.stime
		if pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(path))); pid == pgid {
			ticks += st.cutime + st.cstime
			found = true
		}
		u.cpu += time.Duration(ticks) * clockTick
		u.rss += st.rssPages * int64(os.Getpagesize())
	}
	if !found {
		return usage{}, fmt.Errorf("process group %d has no leader", pgid)
	}
	return u, nil
}

// groupPSS sums the proportional set size (smaps_rollup's Pss: each
// shared page divided among the processes that map it) over process group
// pgid. Summing resident sets instead would count the libraries and the
// shared memory of Postfix's hundreds of daemons once per daemon.
func groupPSS(pgid int) int64 {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var total int64
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		st, err := parseStat(b)
		if err != nil || st.pgrp != pgid {
			continue
		}
		rollup, err := os.ReadFile(filepath.Join(filepath.Dir(path), "smaps_rollup"))
		if err != nil {
			continue // exited meanwhile
		}
		if pss, err := gwstat.ParseKB(rollup, "Pss"); err == nil {
			total += pss
		}
	}
	return total
}

// machineBusy is the CPU time all processors spent on anything but idle
// and iowait since boot, from the first line of /proc/stat.
func machineBusy() (time.Duration, error) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, err
	}
	return parseMachineBusy(b)
}

func parseMachineBusy(b []byte) (time.Duration, error) {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 6 || f[0] != "cpu" {
		return 0, fmt.Errorf("%w: /proc/stat %q", errProcFormat, line)
	}
	var busy int64
	for i, v := range f[1:] {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("%w: /proc/stat: %w", errProcFormat, err)
		}
		// user nice system idle iowait irq softirq steal (guest time is
		// already in user).
		if i != 3 && i != 4 && i < 8 {
			busy += n
		}
	}
	return time.Duration(busy) * clockTick, nil
}

// resetPeak resets a process's peak resident set (VmHWM) to its current
// one (Linux 4.0 and later).
func resetPeak(pid int) error {
	return os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0)
}

// peakSampler samples a reading every interval and keeps the largest.
type peakSampler struct {
	stop chan struct{}
	done chan struct{}
	mu   sync.Mutex
	peak int64
}

func samplePeak(interval time.Duration, read func() int64) *peakSampler {
	p := &peakSampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			v := read()
			p.mu.Lock()
			p.peak = max(p.peak, v)
			p.mu.Unlock()
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return p
}

// end stops sampling and returns the peak.
func (p *peakSampler) end() int64 {
	close(p.stop)
	<-p.done
	return p.peak
}
