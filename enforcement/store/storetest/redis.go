package storetest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RedisServerPath is where Debian's redis-server package installs the
// server.
const RedisServerPath = "/usr/bin/redis-server"

// StartRedis runs a private redis-server on 127.0.0.1 with a free port, no
// persistence and a temporary directory, waits until it answers PING, and
// stops it when the test ends. It returns the redis:// URL. Without
// redis-server the test fails (in CI too): install the Debian package
// redis-server.
func StartRedis(t testing.TB) string {
	t.Helper()
	bin := RedisServerPath
	if _, err := os.Stat(bin); err != nil {
		p, lerr := exec.LookPath("redis-server")
		if lerr != nil {
			ci := ""
			if os.Getenv("CI") == "true" {
				ci = " (CI=true: the CI image lacks it)"
			}
			t.Fatalf("redis-server not found at %s or in PATH%s: install the Debian package redis-server (apt-get install redis-server)", bin, ci)
		}
		bin = p
	}
	dir := t.TempDir()
	var lastErr error
	for range 3 { // the free port may be taken between probe and start
		url, err := startRedis(t, bin, dir)
		if err == nil {
			return url
		}
		lastErr = err
	}
	t.Fatalf("starting redis-server: %v", lastErr)
	return ""
}

func startRedis(t testing.TB, bin, dir string) (string, error) {
	port, err := freePort()
	if err != nil {
		return "", err
	}
	var out lockedBuffer
	cmd := exec.Command(bin,
		"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
		"--save", "", "--appendonly", "no", "--dir", dir,
		"--daemonize", "no", "--loglevel", "warning")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		return "", err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	stop := func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	deadline := time.Now().Add(10 * time.Second)
	for {
		if err := ping(addr); err == nil {
			break
		} else if time.Now().After(deadline) {
			stop()
			return "", fmt.Errorf("no PONG from %s: %v; output:\n%s", addr, err, out.String())
		}
		select {
		case err := <-exited:
			exited <- err // for stop
			return "", fmt.Errorf("redis-server exited: %v; output:\n%s", err, out.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Cleanup(stop)
	return "redis://" + addr + "/0", nil
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// ping sends an inline PING and expects +PONG.
func ping(addr string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(line) != "+PONG" {
		return errors.New("unexpected reply " + strconv.Quote(line))
	}
	return nil
}

// lockedBuffer collects the server's output from the exec goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
