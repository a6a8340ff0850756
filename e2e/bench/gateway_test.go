package bench

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"syscall"
	"testing"
	"time"

	"sealgate/e2e/gwstat"
)

// binPath is the sealgate binary the benchmark measures, built by TestMain
// without the race detector and with testdata/cpuprofile.go.txt added.
var binPath string

// buildGateway builds cmd/sealgate of the module at root into dir with the
// profiling hook added through an overlay (the product's sources are not
// touched).
func buildGateway(root, dir string) (string, error) {
	root, err := filepath.Abs(root)
	if err != nil {
		return "", err
	}
	hook, err := filepath.Abs("testdata/cpuprofile.go.txt")
	if err != nil {
		return "", err
	}
	overlay := filepath.Join(dir, "overlay.json")
	spec := fmt.Sprintf(`{"Replace":{%q:%q}}`, filepath.Join(root, "cmd", "sealgate", "zz_bench_cpuprofile.go"), hook)
	if err := os.WriteFile(overlay, []byte(spec), 0o644); err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "sealgate")
	build := exec.Command("go", "build", "-overlay", overlay, "-o", bin, "./cmd/sealgate")
	build.Dir = root
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	return bin, build.Run()
}

// gateway is a running sealgate process.
type gateway struct {
	t       testing.TB
	cmd     *exec.Cmd
	addr    string
	admin   string
	logFile string
	profile string // BENCH_CPUPROFILE, or ""
	done    chan struct{}
}

var (
	listeningRE = regexp.MustCompile(`msg=listening addr=(\S+)`)
	adminRE     = regexp.MustCompile(`msg="admin endpoint listening" addr=(\S+)`)
)

// startGateway runs the binary with env (SEALGATE_LISTEN and
// SEALGATE_ADMIN_LISTEN on 127.0.0.1:0 unless given), its log in a file.
func startGateway(t testing.TB, env map[string]string) *gateway {
	t.Helper()
	dir := t.TempDir()
	g := &gateway{t: t, logFile: filepath.Join(dir, "sealgate.log"), done: make(chan struct{}), profile: env["BENCH_CPUPROFILE"]}
	full := map[string]string{
		"PATH":                  os.Getenv("PATH"),
		"SEALGATE_LISTEN":       "127.0.0.1:0",
		"SEALGATE_ADMIN_LISTEN": "127.0.0.1:0",
		"SEALGATE_HOSTNAME":     "gw.bench.test",
		"SEALGATE_STATE_DIR":    filepath.Join(dir, "state"),
	}
	for k, v := range env {
		full[k] = v
	}
	logf, err := os.Create(g.logFile)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	g.cmd = exec.Command(binPath, "serve")
	for k, v := range full {
		g.cmd.Env = append(g.cmd.Env, k+"="+v)
	}
	g.cmd.Stdout, g.cmd.Stderr = logf, logf
	if err := g.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { g.cmd.Wait(); close(g.done) }()
	t.Cleanup(g.stop)
	deadline := time.Now().Add(20 * time.Second)
	for g.addr == "" || g.admin == "" {
		log, _ := os.ReadFile(g.logFile)
		if m := listeningRE.FindSubmatch(log); m != nil {
			g.addr = string(m[1])
		}
		if m := adminRE.FindSubmatch(log); m != nil {
			g.admin = string(m[1])
		}
		select {
		case <-g.done:
			t.Fatalf("sealgate exited at start:\n%s", log)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("sealgate did not start listening:\n%s", log)
		}
	}
	return g
}

func (g *gateway) pid() int { return g.cmd.Process.Pid }

func (g *gateway) stop() {
	gwstat.Stop(g.cmd.Process, g.done, gwstat.StopGrace)
	if g.t.Failed() {
		g.t.Logf("sealgate log (tail):\n%s", g.logTail(40))
	}
}

// logTail returns the last n lines of the gateway's log.
func (g *gateway) logTail(n int) string {
	f, err := os.Open(g.logFile)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
		if len(lines) > n {
			lines = lines[1:]
		}
	}
	out := ""
	for _, l := range lines {
		out += l + "\n"
	}
	return out
}

// startProfile and stopProfile drive the hook of testdata/cpuprofile.go.txt;
// stopProfile waits until the profile is written.
func (g *gateway) startProfile() {
	g.t.Helper()
	if err := g.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		g.t.Fatal(err)
	}
}

func (g *gateway) stopProfile() {
	g.t.Helper()
	os.Remove(g.profile)
	if err := g.cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		g.t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := os.Stat(g.profile); err == nil {
			return
		}
		if time.Now().After(deadline) {
			g.t.Fatalf("no CPU profile at %s:\n%s", g.profile, g.logTail(20))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freeAddr returns a loopback address with a port free a moment ago.
func freeAddr(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
