package appliance

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"sync"
	"time"

	"sealgate/e2e/netns"
)

// VMOptions says how to boot an Image.
type VMOptions struct {
	// Netns and Tap: the VM's one network interface is the tap device Tap
	// (made by the caller) of the namespace.
	Netns *netns.NS
	Tap   string
	// MemoryMiB defaults to 768.
	MemoryMiB int
	// Accel is qemu's accelerator, default "tcg" (software emulation,
	// with -cpu max); "kvm" where /dev/kvm works.
	Accel string
}

// VM is a running qemu with the appliance.
type VM struct {
	cmd     *exec.Cmd
	console *Console
	done    chan struct{}
	err     error
}

// Console is the VM's serial console, safe for concurrent use.
type Console struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (c *Console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.buf.Write(p)
}

// ansi matches the terminal escape sequences systemd colours its status
// lines with.
var ansi = regexp.MustCompile(`\x1b\[[0-9;?]*[A-Za-z]`)

// String returns everything the console printed so far, without terminal
// escape sequences.
func (c *Console) String() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return ansi.ReplaceAllString(c.buf.String(), "")
}

// Boot starts qemu inside the namespace, direct kernel boot of the image's
// own kernel.
func Boot(img Image, opts VMOptions) (*VM, error) {
	mem := opts.MemoryMiB
	if mem == 0 {
		mem = 768
	}
	accel := []string{"-accel", "tcg", "-cpu", "max"}
	if opts.Accel != "" && opts.Accel != "tcg" {
		accel = []string{"-accel", opts.Accel, "-cpu", "host"}
	}
	args := append(accel,
		"-m", fmt.Sprint(mem), "-smp", "2",
		"-nodefaults", "-nographic", "-no-reboot",
		"-serial", "stdio", "-monitor", "none",
		"-kernel", img.Kernel, "-initrd", img.Initrd,
		"-append", "root=/dev/vda rw console=ttyS0 panic=-1 net.ifnames=0",
		"-drive", "file="+img.Disk+",format=raw,if=virtio",
		"-netdev", "tap,id=lan,ifname="+opts.Tap+",script=no,downscript=no",
		"-device", "virtio-net-pci,netdev=lan",
	)
	vm := &VM{console: &Console{}, done: make(chan struct{})}
	vm.cmd = opts.Netns.Command("qemu-system-x86_64", args...)
	vm.cmd.Stdout, vm.cmd.Stderr = vm.console, vm.console
	if err := vm.cmd.Start(); err != nil {
		return nil, fmt.Errorf("qemu-system-x86_64: %w", err)
	}
	go func() { vm.err = vm.cmd.Wait(); close(vm.done) }()
	return vm, nil
}

// Console returns the serial console.
func (vm *VM) Console() *Console { return vm.console }

// WaitConsole waits until the console matches re, qemu ends or ctx is
// done.
func (vm *VM) WaitConsole(ctx context.Context, re *regexp.Regexp) error {
	for {
		if re.MatchString(vm.console.String()) {
			return nil
		}
		select {
		case <-vm.done:
			return fmt.Errorf("qemu ended (%v) before the console showed %q", vm.err, re)
		case <-ctx.Done():
			return fmt.Errorf("the console did not show %q: %w", re, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Stop kills qemu (the appliance's disk is thrown away with it).
func (vm *VM) Stop() {
	select {
	case <-vm.done:
		return
	default:
	}
	vm.cmd.Process.Kill()
	<-vm.done
}
