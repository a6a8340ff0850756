package bench

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"sealgate/e2e/gwstat"
)

// idleResult is what n idle inbound sessions cost sealgate.
type idleResult struct {
	sessions                   int
	baseRSS, rss               int64
	baseGoroutines, goroutines int
	// stack and heap are go_memstats_stack_inuse_bytes and
	// go_memstats_heap_inuse_bytes with the sessions open; baseStack is
	// the first before them.
	stack, heap, baseStack float64
}

// maxIdleStack is the most goroutine stack an idle session may take. A Go
// stack starts at 2 KiB and doubles as calls need it; an idle session's
// goroutine is blocked in its read and stays at the largest size it ever
// reached, because what it uses there is more than the quarter of 8 KiB
// below which a collection would halve it again. Greeting and EHLO need
// 4 KiB; a session that took 8 KiB for them costs 40 MiB more per 10,000
// idle sessions.
const maxIdleStack = 6 << 10

// stackPerSession is the goroutine stack each idle session added.
func (r idleResult) stackPerSession() float64 {
	return (r.stack - r.baseStack) / float64(r.sessions)
}

// idleSources is how many loopback source addresses the idle sessions
// spread over (127.0.0.2 and on), so that no one address pair runs short
// of ephemeral ports.
const idleSources = 8

// measureIdle starts a gateway that admits n+1000 sessions, opens n
// sessions that each get the greeting and an EHLO reply and then stay
// idle, reads the gateway's resident set and goroutines, and writes its
// heap profile to heapFile.
func measureIdle(t *testing.T, e *benchEnv, n int, heapFile string, extra map[string]string) idleResult {
	t.Helper()
	_, port, _ := strings.Cut(e.sink.addr, ":")
	pprofAddr := freeAddr(t)
	env := map[string]string{
		"BENCH_PPROF_LISTEN":              pprofAddr,
		"SEALGATE_DNS_RESOLVER":           e.dns.Addr(),
		"SEALGATE_MX_PORT":                port,
		"SSL_CERT_FILE":                   e.caFile,
		"SEALGATE_MAX_CONNECTIONS":        strconv.Itoa(n + 1000),
		"SEALGATE_MAX_CONNECTIONS_PER_IP": strconv.Itoa(n + 1000),
	}
	maps.Copy(env, extra)
	g := startGateway(t, env)
	res := idleResult{sessions: n, baseGoroutines: goroutines(t, g.admin)}
	page, err := gwstat.Metrics(g.admin)
	if err != nil {
		t.Fatal(err)
	}
	if res.baseStack, err = gwstat.ParseMetric(page, "go_memstats_stack_inuse_bytes"); err != nil {
		t.Fatal(err)
	}
	if res.baseRSS, err = gwstat.StatusBytes(g.pid(), "VmRSS"); err != nil {
		t.Fatal(err)
	}
	conns := make([]net.Conn, n)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var firstErr error
	const workers = 50
	for w := range workers {
		wg.Go(func() {
			for i := w; i < n; i += workers {
				c, err := idleSession(g.addr, fmt.Sprintf("127.0.0.%d", 2+i%idleSources))
				if err != nil {
					mu.Lock()
					firstErr = fmt.Errorf("session %d: %w", i, err)
					mu.Unlock()
					return
				}
				conns[i] = c
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		t.Fatalf("idle sessions: %v", firstErr)
	}
	if res.rss, err = gwstat.StatusBytes(g.pid(), "VmRSS"); err != nil {
		t.Fatal(err)
	}
	if page, err = gwstat.Metrics(g.admin); err != nil {
		t.Fatal(err)
	}
	n64, err1 := gwstat.ParseMetric(page, "go_goroutines")
	stack, err2 := gwstat.ParseMetric(page, "go_memstats_stack_inuse_bytes")
	heap, err3 := gwstat.ParseMetric(page, "go_memstats_heap_inuse_bytes")
	if err := errors.Join(err1, err2, err3); err != nil {
		t.Fatal(err)
	}
	res.goroutines, res.stack, res.heap = int(n64), stack, heap
	if res.goroutines < n {
		t.Fatalf("%d idle sessions but only %d goroutines: sessions were lost", n, res.goroutines)
	}
	if per := res.stackPerSession(); per > maxIdleStack {
		t.Errorf("an idle session takes %.0f bytes of goroutine stack, more than %d: something on the greeting or EHLO path grew its stack to 8 KiB", per, maxIdleStack)
	}
	saveProfile(t, "http://"+pprofAddr+"/debug/pprof/heap", heapFile)
	return res
}

// saveProfile fetches a profile from the hook's pprof listener into file.
func saveProfile(t *testing.T, url, file string) {
	t.Helper()
	client := &http.Client{Timeout: 30 * time.Second}
	var resp *http.Response
	var err error
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if resp, err = client.Get(url); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s: %s", url, resp.Status)
	}
	f, err := os.Create(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if n, err := io.Copy(f, resp.Body); err != nil || n == 0 {
		t.Fatalf("%s: %d bytes, %v", url, n, err)
	}
}

// idleSession connects from src, reads the greeting, says EHLO and reads
// the reply.
func idleSession(addr, src string) (net.Conn, error) {
	d := net.Dialer{Timeout: 10 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	if err := readReply(br, "220"); err != nil {
		c.Close()
		return nil, fmt.Errorf("greeting: %w", err)
	}
	if _, err := io.WriteString(c, "EHLO idle.bench.test\r\n"); err != nil {
		c.Close()
		return nil, err
	}
	if err := readReply(br, "250"); err != nil {
		c.Close()
		return nil, fmt.Errorf("EHLO: %w", err)
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// readReply reads one (multi-line) reply and checks its code.
func readReply(br *bufio.Reader, code string) error {
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return err
		}
		if !strings.HasPrefix(line, code) {
			return fmt.Errorf("reply %q, want %s", strings.TrimSpace(line), code)
		}
		if len(line) < 4 || line[3] != '-' {
			return nil
		}
	}
}

// goroutines reads go_goroutines from the admin endpoint's /metrics.
func goroutines(t *testing.T, admin string) int {
	t.Helper()
	n, err := gwstat.Goroutines(admin)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
