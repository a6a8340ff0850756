package postfix

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// watchdog runs master ("$@") and stops it with SIGTERM when fd 3, the read
// end of a pipe whose only writer is the test binary, reaches end of file:
// when Stop closes the writer, or when the test binary dies. Pdeathsig
// cannot do this: master briefly switches its effective uid to postfix,
// and any credential change clears the parent-death signal. It exits with
// master's status.
const watchdog = `"$@" & m=$!
{ read -r _ <&3; kill -TERM "$m" 2>/dev/null; } & w=$!
wait "$m"; s=$?
kill "$w" 2>/dev/null
exit "$s"`

// startMaster runs master in the foreground under the watchdog, as
// "postfix start-fg" does (without -w master does not fork; it calls
// setsid and becomes the leader of a process group holding all its
// children).
func (in *Instance) startMaster() error {
	out, err := os.OpenFile(filepath.Join(in.paths.root, "master.out"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer out.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	cmd := exec.Command("/bin/sh", "-c", watchdog, "sh", in.bins.master, "-c", in.paths.config, "-s")
	cmd.Stdout, cmd.Stderr = out, out
	cmd.ExtraFiles = []*os.File{r} // fd 3
	if err := cmd.Start(); err != nil {
		w.Close()
		return fmt.Errorf("starting master: %w", err)
	}
	in.cmd, in.lifeline = cmd, w
	go func() {
		in.exitErr = cmd.Wait()
		close(in.exited)
	}()
	return nil
}

// waitReady waits until showq answers through master, then records
// master's pid. postqueue, run as root, reads the queue directly (and
// warns, also in the mail log) while master is not serving, so it runs only
// once showq's socket exists.
func (in *Instance) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	showq := filepath.Join(in.paths.queue, "public", "showq")
	for {
		select {
		case <-in.exited:
			return fmt.Errorf("%w during start-up: %v", ErrExited, in.exitErr)
		default:
		}
		var stderr bytes.Buffer
		if _, err := os.Stat(showq); err == nil {
			cmd := exec.Command(in.bins.postqueue, "-c", in.paths.config, "-j")
			cmd.Stderr = &stderr
			if err := cmd.Run(); err == nil && stderr.Len() == 0 {
				return in.readMasterPID()
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: master not serving after %v: %s", ErrTimeout, timeout, strings.TrimSpace(stderr.String()))
		}
		time.Sleep(pollInterval)
	}
}

// readMasterPID reads queue/pid/master.pid, which master writes and locks.
func (in *Instance) readMasterPID() error {
	b, err := os.ReadFile(filepath.Join(in.paths.queue, "pid", "master.pid"))
	if err != nil {
		return err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		return fmt.Errorf("bad master.pid %q", b)
	}
	in.masterPID = pid
	return nil
}

// Stop stops master and its children; it is idempotent and also runs when
// the test ends. Queue files stay until the test's cleanup removes them.
func (in *Instance) Stop() {
	in.stopOnce.Do(func() {
		if in.masterPID == 0 {
			_ = in.readMasterPID() // start-up failed half-way, or not yet known
		}
		in.lifeline.Close() // the watchdog sends SIGTERM; master signals its group
		select {
		case <-in.exited:
		case <-time.After(stopTimeout):
			if in.masterPID > 1 {
				_ = syscall.Kill(-in.masterPID, syscall.SIGKILL)
			}
			_ = in.cmd.Process.Kill()
			<-in.exited
		}
		if in.masterPID <= 1 {
			return // master never wrote its pid: it has no children
		}
		// Master's children may still be exiting; they must be gone before
		// the tree is removed. They are orphans now, so they linger as
		// zombies until PID 1 reaps them (seconds, here): those hold no
		// files and are not waited for.
		deadline := time.Now().Add(stopTimeout)
		for liveInGroup(in.masterPID) && time.Now().Before(deadline) {
			time.Sleep(pollInterval)
		}
		if liveInGroup(in.masterPID) {
			_ = syscall.Kill(-in.masterPID, syscall.SIGKILL)
		}
	})
}

// liveInGroup reports whether a process of group pgid is alive (not a
// zombie), from /proc/PID/stat: "pid (comm) state ppid pgrp ...".
func liveInGroup(pgid int) bool {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	want := strconv.Itoa(pgid)
	for _, path := range stats {
		b, err := os.ReadFile(path)
		if err != nil {
			continue // exited meanwhile
		}
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) >= 3 && f[2] == want && f[0] != "Z" && f[0] != "X" {
			return true
		}
	}
	return false
}
