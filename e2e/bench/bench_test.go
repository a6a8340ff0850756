// Package bench measures sealgate side by side with a direct connection to
// the same TLS sink and with a Postfix relay from Debian's packages. Run by
// `make bench` (TestBench with -full); `make test` runs the same paths in a
// smoke form so the harness cannot rot.
package bench

import (
	"crypto/tls"
	"flag"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"sealgate/certs/certstest"
	"sealgate/e2e/gwstat"
	"sealgate/e2e/postfix"
	"sealgate/enforcement/resolver/dnstest"
)

var (
	fullRun = flag.Bool("full", false, "run the whole matrix (make bench) instead of the smoke run")
	outDir  = flag.String("out", "", "directory for the table and the CPU profiles (default: a temporary one)")
	srcDir  = flag.String("src", "../..", "the sealgate module to build and measure (e.g. an export of an older commit)")
	sizesFl = flag.String("sizes", "", "comma-separated message sizes in bytes, instead of the plan's")
	concsFl = flag.String("concs", "", "comma-separated concurrencies, instead of the plan's")
	envFl   = flag.String("env", "", "comma-separated NAME=VALUE settings added to the environment of every gateway the benchmark starts, e.g. SEALGATE_UPSTREAM_MAX_IDLE=200")
)

func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "sealgate-bench")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if binPath, err = buildGateway(*srcDir, dir); err != nil {
		fmt.Fprintln(os.Stderr, "building sealgate:", err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// plan is what one run of TestBench measures.
type plan struct {
	sizes []int
	concs []int
	// messages is how many messages a cell sends for a size (at least
	// twice the concurrency).
	messages func(size int) int
	warmup   int
	// idle is how many idle inbound sessions the idle measurement opens.
	idle int
	// profiles are the sealgate cells run again under the CPU profiler.
	profiles []profileCell
}

type profileCell struct{ size, conc, n int }

var (
	smokePlan = plan{
		sizes:    []int{10 << 10},
		concs:    []int{2},
		messages: func(int) int { return 20 },
		warmup:   4,
		idle:     200,
		profiles: []profileCell{{size: 10 << 10, conc: 2, n: 20}},
	}
	fullPlan = plan{
		sizes: []int{1 << 10, 10 << 10, 1 << 20},
		concs: []int{1, 20, 200},
		messages: func(size int) int {
			if size >= 1<<20 {
				return 200
			}
			return 2000
		},
		warmup: 200,
		idle:   10000,
		profiles: []profileCell{
			{size: 10 << 10, conc: 20, n: 6000},
			{size: 1 << 20, conc: 1, n: 300},
		},
	}
)

// TestBench runs the client straight to the TLS sink (the ceiling),
// through sealgate and through Postfix, for every size and concurrency of
// the plan, prints the table, measures idle inbound sessions and writes CPU
// profiles of sealgate. The smoke form checks that every path delivers
// every message and that every figure can be read; the full form
// (-full) is the benchmark.
func TestBench(t *testing.T) {
	p := smokePlan
	if *fullRun {
		p = fullPlan
	}
	var err error
	if p.sizes, err = intList(*sizesFl, p.sizes); err != nil {
		t.Fatalf("-sizes: %v", err)
	}
	if p.concs, err = intList(*concsFl, p.concs); err != nil {
		t.Fatalf("-concs: %v", err)
	}
	extraEnv, err := envList(*envFl)
	if err != nil {
		t.Fatalf("-env: %v", err)
	}
	out := *outDir
	if out == "" {
		out = t.TempDir()
	} else if err := os.MkdirAll(out, 0o755); err != nil {
		t.Fatal(err)
	}
	env := newBenchEnv(t)
	paths := []*path{env.direct(), env.sealgate(t, "", extraEnv), env.postfix(t)}

	run := 0
	for _, pa := range paths {
		run++
		runCell(t, env.sink, pa, run, 10<<10, 20, p.warmup)
	}
	var cells []cell
	for _, size := range p.sizes {
		for _, conc := range p.concs {
			n := max(p.messages(size), 2*conc)
			for _, pa := range paths {
				run++
				c := runCell(t, env.sink, pa, run, size, conc, n)
				t.Logf("%s", c)
				cells = append(cells, c)
			}
		}
	}
	heapFile := filepath.Join(out, "sealgate-idle-heap.pprof")
	idle := measureIdle(t, env, p.idle, heapFile, extraEnv)

	var report strings.Builder
	writeTable(&report, cells)
	fmt.Fprintf(&report, "\n%d idle inbound sessions (after greeting and EHLO): sealgate RSS %.1f MiB (%.1f MiB before), %d goroutines (%d before); goroutine stacks %.1f MiB (%.1f KiB per session), heap in use %.1f MiB\n",
		idle.sessions, mib(idle.rss), mib(idle.baseRSS), idle.goroutines, idle.baseGoroutines, idle.stack/(1<<20), idle.stackPerSession()/(1<<10), idle.heap/(1<<20))
	writeTargets(&report, cells, idle)
	fmt.Fprintf(&report, "\nHeap profile with the idle sessions open: %s\n", heapFile)
	if *fullRun {
		report.Write(pprofTop(t, "-sample_index=inuse_space", heapFile))
	}

	// Profiles: a separate gateway, so that profiling slows no measured cell.
	prof := env.sealgate(t, filepath.Join(out, "cpu.pprof"), extraEnv)
	for _, pc := range p.profiles {
		run++
		file := filepath.Join(out, fmt.Sprintf("sealgate-%s-c%d.pprof", sizeName(pc.size), pc.conc))
		prof.gw.startProfile()
		c := runCell(t, env.sink, prof, run, pc.size, pc.conc, pc.n)
		prof.gw.stopProfile()
		if err := os.Rename(prof.gw.profile, file); err != nil {
			t.Fatal(err)
		}
		if fi, err := os.Stat(file); err != nil || fi.Size() == 0 {
			t.Fatalf("CPU profile %s: %v", file, err)
		}
		fmt.Fprintf(&report, "\nCPU profile of %s (%d messages): %s\n", c.key(), pc.n, file)
		if *fullRun {
			report.Write(pprofTop(t, "-cum", file))
		}
	}
	fmt.Print("\n" + report.String())
	if err := os.WriteFile(filepath.Join(out, "bench.txt"), []byte(report.String()), 0o644); err != nil {
		t.Fatal(err)
	}
}

// pprofTop is the top of a profile, as "go tool pprof -top" prints it.
func pprofTop(t *testing.T, option, file string) []byte {
	t.Helper()
	top, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount=40", option, binPath, file).CombinedOutput()
	if err != nil {
		t.Fatalf("go tool pprof: %v\n%s", err, top)
	}
	return top
}

// benchEnv is what every path shares: the fake DNS, the WebPKI CA the
// gateway trusts and the sink.
type benchEnv struct {
	dns    *dnstest.Server
	caFile string
	sink   *sink
}

func newBenchEnv(t *testing.T) *benchEnv {
	ca := certstest.NewCA(t, "sealgate bench WebPKI root")
	e := &benchEnv{dns: dnstest.NewServer(t), caFile: ca.WriteCAFile(t.TempDir())}
	e.sink = startSink(t, ca.Leaf("mx.bench.test"))
	e.dns.Add("bench.test. 300 IN MX 10 mx.bench.test.", "mx.bench.test. 300 IN A 127.0.0.1")
	// As a real zone's servers do: a negative answer (no AAAA, no TLSA,
	// no _mta-sts TXT) carries an SOA, so resolvers may keep it.
	e.dns.SetNegativeTTL(300)
	return e
}

// path is one way from the client to the sink.
type path struct {
	name      string
	addr      string
	clientTLS *tls.Config
	// usage reads the relay's CPU time and resident set; nil for none.
	usage func() (usage, error)
	// peak starts measuring the relay's peak resident set and returns
	// the function that ends it; nil for none.
	peak func() func() int64
	// drained waits until the relay holds no message; nil for a relay
	// that keeps none.
	drained func() error
	gw      *gateway
	// dns, when set, is the resolver the relay asks; its queries are
	// counted.
	dns *dnstest.Server
}

func (e *benchEnv) direct() *path {
	return &path{name: "direct", addr: e.sink.addr, clientTLS: &tls.Config{InsecureSkipVerify: true, ServerName: "mx.bench.test"}}
}

// sealgate starts a gateway routing bench.test to the sink; profile is
// BENCH_CPUPROFILE ("" for none).
func (e *benchEnv) sealgate(t *testing.T, profile string, extra map[string]string) *path {
	_, port, _ := strings.Cut(e.sink.addr, ":")
	env := map[string]string{
		"SEALGATE_DNS_RESOLVER":           e.dns.Addr(),
		"SEALGATE_MX_PORT":                port,
		"SSL_CERT_FILE":                   e.caFile,
		"SEALGATE_MAX_CONNECTIONS":        "1000",
		"SEALGATE_MAX_CONNECTIONS_PER_IP": "1000",
	}
	if profile != "" {
		env["BENCH_CPUPROFILE"] = profile
	}
	maps.Copy(env, extra)
	g := startGateway(t, env)
	pid := g.pid()
	return &path{
		name: "sealgate", addr: g.addr, gw: g, dns: e.dns,
		usage: func() (usage, error) { return processUsage(pid) },
		peak: func() func() int64 {
			if err := resetPeak(pid); err != nil {
				t.Fatal(err)
			}
			return func() int64 {
				hwm, err := gwstat.StatusBytes(pid, "VmHWM")
				if err != nil {
					t.Fatal(err)
				}
				return hwm
			}
		},
	}
}

// postfix starts a private Postfix relaying everything to the sink over
// TLS, reusing its TLS connections.
func (e *benchEnv) postfix(t *testing.T) *path {
	in := postfix.Start(t, postfix.Options{
		RelayHost:  e.sink.addr,
		SMTPListen: freeAddr(t),
		MainCF: map[string]string{
			"smtp_tls_security_level":               "encrypt",
			"smtp_tls_connection_reuse":             "yes",
			"default_destination_concurrency_limit": "250",
			"default_process_limit":                 "1000",
		},
	})
	b, err := os.ReadFile(filepath.Join(in.QueueDir(), "pid", "master.pid"))
	if err != nil {
		t.Fatal(err)
	}
	master, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatalf("master.pid: %v", err)
	}
	return &path{
		name: "postfix", addr: in.SMTPAddr(),
		usage: func() (usage, error) { return groupUsage(master) },
		peak: func() func() int64 {
			s := samplePeak(250*time.Millisecond, func() int64 { return groupPSS(master) })
			return s.end
		},
		drained: func() error { return in.WaitQueueEmpty(time.Minute) },
	}
}

// sinkTimeout bounds the wait for the sink to hold a run's messages after
// the client is done.
const sinkTimeout = 3 * time.Minute

// runCell sends n messages of size bytes at concurrency conc along pa and
// measures it.
func runCell(t *testing.T, s *sink, pa *path, run, size, conc, n int) cell {
	t.Helper()
	fail := func(err error) {
		t.Helper()
		t.Fatalf("%s, %s at concurrency %d: %v", pa.name, sizeName(size), conc, err)
	}
	s.expect(run, n)
	conns0 := s.conns.Load()
	if pa.dns != nil {
		pa.dns.ResetQueries()
	}
	var before usage
	var endPeak func() int64
	if pa.usage != nil {
		var err error
		if before, err = pa.usage(); err != nil {
			fail(err)
		}
		endPeak = pa.peak()
	}
	machine0, err := machineBusy()
	if err != nil {
		fail(err)
	}
	self0, err := processUsage(os.Getpid())
	if err != nil {
		fail(err)
	}
	res := load{addr: pa.addr, tls: pa.clientTLS, run: run, n: n, conc: conc, size: size}.send()
	if res.lastErr != nil {
		fail(res.lastErr)
	}
	last, accepted, err := s.wait(sinkTimeout)
	if err != nil {
		fail(err)
	}
	c := cell{path: pa.name, size: size, conc: conc, n: n, elapsed: last.Sub(res.start), retries: res.retries,
		latency: latencies(res.dots, accepted)}
	if res.firstRetry != nil {
		t.Logf("%s: %d retries, the first after: %v", c.key(), res.retries, res.firstRetry)
	}
	if pa.drained != nil {
		if err := pa.drained(); err != nil {
			fail(err)
		}
	}
	machine1, err := machineBusy()
	if err != nil {
		fail(err)
	}
	self1, err := processUsage(os.Getpid())
	if err != nil {
		fail(err)
	}
	c.machineCPU, c.harnessCPU = machine1-machine0, self1.cpu-self0.cpu
	c.sinkConns = int(s.conns.Load() - conns0)
	if pa.dns != nil {
		c.dnsQueries = len(pa.dns.Queries())
	}
	if pa.usage != nil {
		after, err := pa.usage()
		if err != nil {
			fail(err)
		}
		c.cpu = after.cpu - before.cpu
		c.peakRSS = endPeak()
	}
	return c
}

// latencies returns, sorted, how long after the client's end of DATA the
// sink accepted each message.
func latencies(dots, accepted []time.Time) []time.Duration {
	out := make([]time.Duration, len(dots))
	for i := range dots {
		out[i] = accepted[i].Sub(dots[i])
	}
	sortDurations(out)
	return out
}

// intList parses a comma-separated list of positive numbers; "" is def.
func intList(s string, def []int) ([]int, error) {
	if s == "" {
		return def, nil
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("%q is not a positive number", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// envList parses comma-separated NAME=VALUE settings.
func envList(s string) (map[string]string, error) {
	out := map[string]string{}
	if s == "" {
		return out, nil
	}
	for _, f := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(f), "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%q is not NAME=VALUE", f)
		}
		out[k] = v
	}
	return out, nil
}
