package postfix

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

const helperEnv = "SEALGATE_POSTFIX_HELPER"

// alive reports whether pid is a live (not zombie) process.
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(b), ')')
	f := strings.Fields(string(b[i+1:]))
	return len(f) > 0 && f[0] != "Z" && f[0] != "X"
}

func waitGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(stopTimeout)
	for alive(pid) || liveInGroup(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("master %d or its children still alive after %v", pid, stopTimeout)
		}
		time.Sleep(pollInterval)
	}
}

func TestStopEndsEveryProcess(t *testing.T) {
	t.Parallel()
	in := Start(t, Options{RelayHost: "127.0.0.1:2"})
	pid := in.masterPID
	if !alive(pid) || !liveInGroup(pid) {
		t.Fatalf("master %d not running after Start", pid)
	}
	in.Stop()
	if alive(pid) || liveInGroup(pid) {
		t.Errorf("master %d or its children alive after Stop", pid)
	}
	select {
	case <-in.exited:
	default:
		t.Error("watchdog not reaped after Stop")
	}
}

// TestWatchdogStopsMasterWhenTestDies kills a test binary that runs an
// instance (without any chance to clean up) and checks that master goes.
func TestWatchdogStopsMasterWhenTestDies(t *testing.T) {
	if os.Getenv(helperEnv) == "1" {
		in := Start(t, Options{RelayHost: "127.0.0.1:2"})
		fmt.Printf("PFX %s %d\n", in.paths.root, in.masterPID)
		time.Sleep(time.Minute) // killed long before
		return
	}
	t.Parallel()
	cmd := exec.Command(os.Args[0], "-test.run=^TestWatchdogStopsMasterWhenTestDies$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait() //nolint:errcheck // killed on purpose
	defer cmd.Process.Kill()

	var root string
	var pid int
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	timeout := time.After(readyTimeout)
	for root == "" {
		select {
		case line, ok := <-lines:
			if !ok {
				t.Fatal("helper exited without starting Postfix")
			}
			fmt.Sscanf(line, "PFX %s %d", &root, &pid)
		case <-timeout:
			t.Fatal("helper did not start Postfix in time")
		}
	}
	t.Cleanup(func() { os.RemoveAll(root) }) // the killed helper cannot
	go func() {
		for range lines { // drain
		}
	}()
	if !alive(pid) {
		t.Fatalf("master %d not running in the helper", pid)
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitGone(t, pid)
}
