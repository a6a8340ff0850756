package dnssec

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/miekg/dns"
)

// Sentinel errors of daemon start-up.
var (
	ErrExited   = errors.New("dnssec: daemon exited")
	ErrNotReady = errors.New("dnssec: daemon not ready in time")
)

const (
	// readyTimeout is generous: on a loaded 2-core machine nsd has been seen
	// taking 3 s to read a handful of zones.
	readyTimeout = 30 * time.Second
	stopTimeout  = 5 * time.Second
	pollInterval = 20 * time.Millisecond
)

// daemon is one foreground nsd or unbound process.
type daemon struct {
	name string
	cmd  *exec.Cmd
	logs []string // files whose tails explain a failure
	done chan struct{}
	err  error // Wait's result, set before done closes
}

// startDaemon runs path with args in its own process group, stdout and
// stderr appended to stderrFile. The child gets SIGTERM if the test binary
// dies without cleaning up. Where allowed (root), it is also the init of a
// new PID namespace: nsd's main process exits before its server child, and
// this makes the kernel kill and reap such helpers instead of leaving
// zombies under the machine's PID 1.
func startDaemon(name, path string, args []string, stderrFile string, logs ...string) (*daemon, error) {
	out, err := os.OpenFile(stderrFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("dnssec: %s: %w", name, err)
	}
	defer out.Close()
	var cmd *exec.Cmd
	for _, flags := range []uintptr{syscall.CLONE_NEWPID, 0} {
		cmd = exec.Command(path, args...)
		cmd.Stdout = out
		cmd.Stderr = out
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM, Cloneflags: flags}
		if err = cmd.Start(); !errors.Is(err, syscall.EPERM) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("dnssec: start %s: %w", name, err)
	}
	d := &daemon{name: name, cmd: cmd, logs: append([]string{stderrFile}, logs...), done: make(chan struct{})}
	go func() {
		d.err = cmd.Wait()
		close(d.done)
	}()
	return d, nil
}

// stop sends SIGTERM and, if the daemon has not gone after stopTimeout,
// SIGKILL to its process group (nsd forks helpers into it).
func (d *daemon) stop() {
	select {
	case <-d.done:
		return
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(stopTimeout):
		_ = syscall.Kill(-d.cmd.Process.Pid, syscall.SIGKILL)
		<-d.done
	}
}

// tails returns the last lines of every log of d, for error messages.
func (d *daemon) tails() string {
	var b strings.Builder
	for _, f := range d.logs {
		fmt.Fprintf(&b, "\n--- %s (last lines) ---\n%s", f, tail(f, 20))
	}
	return b.String()
}

// bindFailed reports whether d's logs say it could not bind its port, the
// one failure a retry on another port cures.
func (d *daemon) bindFailed() bool {
	for _, f := range d.logs {
		b, _ := os.ReadFile(f)
		if bytes.Contains(b, []byte("in use")) || bytes.Contains(b, []byte("can't bind")) || bytes.Contains(b, []byte("cannot bind")) {
			return true
		}
	}
	return false
}

// waitReady sends probe to addr until ok accepts the reply, d exits, or
// readyTimeout passes.
func (d *daemon) waitReady(ctx context.Context, addr netip.AddrPort, probe *dns.Msg, ok func(*dns.Msg) bool) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	c := &dns.Client{Net: "udp", Timeout: 500 * time.Millisecond}
	last := "no reply"
	for {
		select {
		case <-d.done:
			return fmt.Errorf("%w: %s: %v", ErrExited, d.name, d.err)
		default:
		}
		in, _, err := c.ExchangeContext(ctx, probe, addr.String())
		switch {
		case err == nil && ok(in):
			return nil
		case err != nil:
			last = err.Error()
		default:
			last = fmt.Sprintf("rcode %s, flags %s", dns.RcodeToString[in.Rcode], flags(in))
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: %s at %s asked %s: %s", ErrNotReady, d.name, addr, probe.Question[0].String(), last)
		case <-d.done:
		case <-time.After(pollInterval):
		}
	}
}

func flags(m *dns.Msg) string {
	var f []string
	for _, x := range []struct {
		on   bool
		name string
	}{{m.Authoritative, "aa"}, {m.RecursionAvailable, "ra"}, {m.AuthenticatedData, "ad"}} {
		if x.on {
			f = append(f, x.name)
		}
	}
	return "[" + strings.Join(f, " ") + "]"
}

// freePort returns a port on ip that is free for both UDP and TCP right now.
// Another process may take it before the daemon binds; callers retry.
func freePort(ip netip.Addr) (netip.AddrPort, error) {
	var lastErr error
	for range 20 {
		udp, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("dnssec: %w", err)
		}
		ap := udp.LocalAddr().(*net.UDPAddr).AddrPort()
		tcp, err := net.ListenTCP("tcp", net.TCPAddrFromAddrPort(ap))
		udp.Close()
		if err != nil {
			lastErr = err
			continue
		}
		tcp.Close()
		return netip.AddrPortFrom(ip, ap.Port()), nil
	}
	return netip.AddrPort{}, fmt.Errorf("dnssec: no port free for UDP and TCP: %w", lastErr)
}

// tail returns the last n lines of a file, or why it cannot.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
