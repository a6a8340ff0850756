// Package netns builds private network namespaces joined by veth pairs
// for tests that need a router, interception rules and well-known ports:
// nothing in them can reach the machine's own network. Helper processes
// run inside with "ip netns exec"; the test process itself creates
// sockets inside with Do (a socket stays in the namespace it was made
// in). It needs root (CAP_SYS_ADMIN, CAP_NET_ADMIN) and iproute2.
package netns

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

var counter atomic.Int32

// NS is a named network namespace with its loopback up.
type NS struct {
	Name string
	t    testing.TB
}

// New creates a namespace (deleted by t.Cleanup) whose name starts with
// role.
func New(t testing.TB, role string) *NS {
	t.Helper()
	name := fmt.Sprintf("sg%d-%d-%s", os.Getpid(), counter.Add(1), role)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("netns: ip netns add %s: %v: %s (needs root and iproute2)", name, err, out)
	}
	ns := &NS{Name: name, t: t}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	ns.Run("ip", "link", "set", "lo", "up")
	return ns
}

// Command is a command run inside the namespace.
func (n *NS) Command(name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", n.Name, name}, args...)...)
}

// Run runs a command inside the namespace and fails the test if it fails.
func (n *NS) Run(name string, args ...string) string {
	n.t.Helper()
	out, err := n.Command(name, args...).CombinedOutput()
	if err != nil {
		n.t.Fatalf("netns %s: %s %s: %v: %s", n.Name, name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Link joins a and b with a veth pair named ifA in a and ifB in b, and
// gives each end its addresses (CIDR notation; IPv6 without duplicate
// address detection, so they are usable at once).
func Link(t testing.TB, a *NS, ifA string, addrsA []string, b *NS, ifB string, addrsB []string) {
	t.Helper()
	if out, err := exec.Command("ip", "link", "add", ifA, "netns", a.Name, "type", "veth", "peer", "name", ifB, "netns", b.Name).CombinedOutput(); err != nil {
		t.Fatalf("netns: veth %s/%s: %v: %s", ifA, ifB, err, out)
	}
	for _, end := range []struct {
		ns    *NS
		ifc   string
		addrs []string
	}{{a, ifA, addrsA}, {b, ifB, addrsB}} {
		for _, addr := range end.addrs {
			args := []string{"addr", "add", addr, "dev", end.ifc}
			if strings.Contains(addr, ":") {
				args = append([]string{"-6"}, append(args, "nodad")...)
			}
			end.ns.Run("ip", args...)
		}
		end.ns.Run("ip", "link", "set", end.ifc, "up")
	}
}

// Do runs f on a thread inside the namespace: sockets that f creates
// belong to it for their whole life, whichever goroutine uses them later.
// f must not start goroutines that create sockets.
func (n *NS) Do(f func() error) error {
	target, err := os.Open("/run/netns/" + n.Name)
	if err != nil {
		return err
	}
	defer target.Close()
	runtime.LockOSThread()
	self, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()))
	if err != nil {
		runtime.UnlockOSThread()
		return err
	}
	defer self.Close()
	if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("setns %s: %w", n.Name, err)
	}
	ferr := f()
	if err := unix.Setns(int(self.Fd()), unix.CLONE_NEWNET); err != nil {
		// The thread stays in the wrong namespace: leave it locked so
		// that it ends with this goroutine.
		return fmt.Errorf("setns back from %s: %w", n.Name, err)
	}
	runtime.UnlockOSThread()
	return ferr
}
