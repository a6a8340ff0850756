// Package appliance builds and boots the sealgate appliance VM
// (deploy/appliance) for tests: the cached root file system, the image
// with a given configuration, and qemu with its serial console captured,
// its interface on a tap device of a network namespace (e2e/netns).
package appliance

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// DefaultCache is where root file systems are kept, one folder per hash
// of the recipe (build.sh hash).
const DefaultCache = "/var/cache/sealgate-appliance"

// Recipe is deploy/appliance/build.sh of a repository.
type Recipe struct {
	// Script is the path of build.sh.
	Script string
	// Cache holds built root file systems; default DefaultCache.
	Cache string
	// Log receives the build's output; nil discards it.
	Log io.Writer
}

// Image is a built appliance: root file system image, kernel and initrd.
type Image struct {
	Disk, Kernel, Initrd string
}

func (r Recipe) run(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "sh", append([]string{r.Script}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	if r.Log != nil {
		r.Log.Write(out.Bytes())
	}
	if err != nil {
		return out.String(), fmt.Errorf("build.sh %s: %w\n%s", strings.Join(args, " "), err, tail(out.String(), 4000))
	}
	return out.String(), nil
}

// Rootfs returns the cached root file system of the recipe, building it
// first when the cache has none (minutes: debootstrap and packages).
func (r Recipe) Rootfs(ctx context.Context) (dir string, built bool, err error) {
	cache := r.Cache
	if cache == "" {
		cache = DefaultCache
	}
	hash, err := r.run(ctx, "hash")
	if err != nil {
		return "", false, err
	}
	dir = filepath.Join(cache, strings.TrimSpace(hash))
	if _, err := os.Stat(filepath.Join(dir, "boot")); err == nil {
		return dir, false, nil
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", false, err
	}
	if _, err := r.run(ctx, "rootfs", dir); err != nil {
		return "", false, err
	}
	return dir, true, nil
}

// Image builds the disk image into out from rootfs, the sealgate binary,
// the appliance configuration conf (a file) and files, a folder whose tree
// is copied over the image (certificates, a policy file), which may be "".
func (r Recipe) Image(ctx context.Context, rootfs, bin, out, conf, files string) (Image, error) {
	args := []string{"image", rootfs, bin, out, conf}
	if files != "" {
		args = append(args, files)
	}
	if _, err := r.run(ctx, args...); err != nil {
		return Image{}, err
	}
	return Image{
		Disk:   filepath.Join(out, "sealgate-appliance.img"),
		Kernel: filepath.Join(out, "vmlinuz"),
		Initrd: filepath.Join(out, "initrd.img"),
	}, nil
}

func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}
