package k8s

import (
	"debug/elf"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// containers runs buildah and podman on a storage of the tests' own (vfs:
// no overlay mounts needed) under workDir, so that nothing is left behind.
type containers struct {
	t       testing.TB
	storage []string
}

// image is built once for the tests that need it.
var image struct {
	once    sync.Once
	storage []string
	tag     string
	err     error
}

// builtImage returns the image and a containers on its storage. The image
// is built once: rootfs.sh lays the file system out, and the Containerfile
// is built with it standing in for the build stage (no base image is
// pulled: there is no registry here).
func builtImage(t testing.TB) (*containers, string) {
	t.Helper()
	for _, tool := range []string{"buildah", "podman", "runc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found: install the Debian package %s", tool, tool)
		}
	}
	image.once.Do(func() {
		dir := filepath.Join(workDir, "containers")
		image.storage = []string{"--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "run"), "--storage-driver", "vfs"}
		rootfs := filepath.Join(workDir, "rootfs")
		lay := exec.Command("deploy/container/rootfs.sh", rootfs)
		lay.Dir = repoRoot
		lay.Env = append(os.Environ(), "VERSION=image-test")
		if out, err := lay.CombinedOutput(); err != nil {
			image.err = fmt.Errorf("rootfs.sh: %v\n%s", err, out)
			return
		}
		const tag = "localhost/sealgate:test"
		c := &containers{storage: image.storage}
		build := c.cmd("buildah", "build", "--build-context", "rootfs="+rootfs,
			"-f", filepath.Join(repoRoot, "deploy", "container", "Containerfile"), "-t", tag, filepath.Join(repoRoot, "deploy", "container"))
		if out, err := build.CombinedOutput(); err != nil {
			image.err = fmt.Errorf("%v: %v\n%s", build.Args, err, out)
			return
		}
		image.tag = tag
	})
	if image.err != nil {
		t.Fatal(image.err)
	}
	return &containers{t: t, storage: image.storage}, image.tag
}

func (c *containers) run(tool string, args ...string) string {
	c.t.Helper()
	out, err := c.cmd(tool, args...).CombinedOutput()
	if err != nil {
		c.t.Fatalf("%s %s: %v\n%s", tool, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func (c *containers) cmd(tool string, args ...string) *exec.Cmd {
	all := slices.Clone(c.storage)
	if tool == "podman" {
		// crun, and runc with the default limits, are refused setrlimit
		// here (see TestImageRunsThePod); runc it is.
		all = append(all, "--runtime", "runc", "--cgroup-manager", "cgroupfs", "--events-backend", "file")
	}
	return exec.Command(tool, append(all, args...)...)
}

// TestImage builds the image and checks what it holds and how it starts.
func TestImage(t *testing.T) {
	c, tag := builtImage(t)

	var inspect struct {
		OCIv1 struct {
			Config struct {
				User         string
				Entrypoint   []string
				Cmd          []string
				Env          []string
				Volumes      map[string]struct{}
				ExposedPorts map[string]struct{}
			} `json:"config"`
		}
	}
	if err := json.Unmarshal([]byte(c.run("buildah", "inspect", "--type", "image", tag)), &inspect); err != nil {
		t.Fatal(err)
	}
	cfg := inspect.OCIv1.Config
	if cfg.User != "65532:65532" {
		t.Errorf("user %q, want 65532:65532", cfg.User)
	}
	if !slices.Equal(cfg.Entrypoint, []string{"/sealgate"}) || !slices.Equal(cfg.Cmd, []string{"serve"}) {
		t.Errorf("entrypoint %v, cmd %v", cfg.Entrypoint, cfg.Cmd)
	}
	if _, ok := cfg.Volumes["/data"]; !ok || !slices.Contains(cfg.Env, "SEALGATE_STATE_DIR=/data") {
		t.Errorf("volumes %v, env %v: the state is not on /data", cfg.Volumes, cfg.Env)
	}
	for _, p := range []string{"2525/tcp", "9025/tcp"} {
		if _, ok := cfg.ExposedPorts[p]; !ok {
			t.Errorf("port %s not exposed", p)
		}
	}

	// The file system: the binary, static; the CA bundle; the user; /data
	// owned by it; no shell, nothing else.
	ctr := strings.TrimSpace(c.run("buildah", "from", tag))
	t.Cleanup(func() { c.cmd("buildah", "rm", ctr).Run() })
	mnt := strings.TrimSpace(c.run("buildah", "mount", ctr))
	var files []string
	err := filepath.WalkDir(mnt, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(mnt, p)
			files = append(files, "/"+rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sort.Strings(files)
	want := []string{"/etc/group", "/etc/passwd", "/etc/ssl/certs/ca-certificates.crt", "/sealgate"}
	if !slices.Equal(files, want) {
		t.Errorf("image files %v, want %v", files, want)
	}
	bin, err := elf.Open(filepath.Join(mnt, "sealgate"))
	if err != nil {
		t.Fatal(err)
	}
	defer bin.Close()
	for _, p := range bin.Progs {
		if p.Type == elf.PT_INTERP {
			t.Error("/sealgate is dynamically linked")
		}
	}
	if libs, _ := bin.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("/sealgate needs %v", libs)
	}
	st, err := os.Stat(filepath.Join(mnt, "data"))
	if err != nil {
		t.Fatal(err)
	}
	if uid := fmt.Sprint(statUID(st)); uid != "65532" || !st.IsDir() {
		t.Errorf("/data owned by %s, want 65532", uid)
	}
	ca, err := os.ReadFile(filepath.Join(mnt, "etc/ssl/certs/ca-certificates.crt"))
	if err != nil || strings.Count(string(ca), "BEGIN CERTIFICATE") < 10 {
		t.Errorf("the CA bundle holds %d certificates (%v)", strings.Count(string(ca), "BEGIN CERTIFICATE"), err)
	}
	passwd, _ := os.ReadFile(filepath.Join(mnt, "etc/passwd"))
	if !strings.Contains(string(passwd), "sealgate:x:65532:65532:") {
		t.Errorf("/etc/passwd has no user 65532:\n%s", passwd)
	}

	out := c.run("podman", "run", "--rm", "--network", "none", "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096", tag, "version")
	if !strings.HasPrefix(out, "sealgate image-test ") {
		t.Errorf("podman run %s version: %q", tag, out)
	}
}

// TestImageRunsThePod starts the image with podman as the single overlay
// describes its container (user, read-only root, no capability, no
// privilege escalation, the environment, /data on a volume) and delivers a
// message through it. The container shares the host's network namespace
// and listens on loopback only; DNS is the fake, on loopback.
func TestImageRunsThePod(t *testing.T) {
	c, tag := builtImage(t)
	w := newWorld(t)
	mx := w.mx("image.test", "mx.image.test", 10)

	m := buildOverlay(t, "single")
	spec := &m.gateway(t).Spec.Template.Spec
	ctr := container(t, spec, "sealgate")
	env := m.env(t, ctr)
	sc := ctr.SecurityContext
	psc := spec.SecurityContext
	args := []string{"run", "--rm", "--name", "sealgate-test-" + strconv.Itoa(os.Getpid()), "--network", "host",
		"--user", fmt.Sprintf("%d:%d", *psc.RunAsUser, *psc.RunAsGroup),
		// The sandbox refuses raising these limits (setrlimit EPERM);
		// lowering them is allowed.
		"--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096"}
	if *sc.ReadOnlyRootFilesystem {
		args = append(args, "--read-only")
	}
	if !*sc.AllowPrivilegeEscalation {
		args = append(args, "--security-opt", "no-new-privileges")
	}
	for _, capability := range sc.Capabilities.Drop {
		args = append(args, "--cap-drop", string(capability))
	}
	data := t.TempDir()
	if err := os.Chown(data, int(*psc.RunAsUser), int(*psc.RunAsGroup)); err != nil {
		t.Fatal(err)
	}
	args = append(args, "-v", data+":"+env["SEALGATE_STATE_DIR"], "-v", w.caFile+":/etc/sealgate-test/ca.pem:ro")
	run := map[string]string{}
	for k, v := range env {
		run[k] = v
	}
	run["SEALGATE_LISTEN"] = "127.0.0.1:0"
	run["SEALGATE_ADMIN_LISTEN"] = "127.0.0.1:0"
	run["SEALGATE_DNS_RESOLVER"] = w.dns.Addr()
	run["SEALGATE_ALLOWED_NETWORKS"] = env["SEALGATE_ALLOWED_NETWORKS"] + ",127.0.0.0/8"
	run["SEALGATE_MX_PORT"] = strconv.Itoa(w.port)
	run["SSL_CERT_FILE"] = "/etc/sealgate-test/ca.pem"
	delete(run, "SEALGATE_POLICY_FILE") // its ConfigMap is not mounted here
	for k, v := range run {
		args = append(args, "-e", k+"="+v)
	}
	args = append(args, tag)
	args = append(args, ctr.Args...)
	name := args[3]
	t.Cleanup(func() { c.cmd("podman", "rm", "-f", name).Run() })

	podman := c.cmd("podman", args...)
	p := startProcess(t, "podman run", podman.Args, os.Environ())
	addr := p.waitLog(t, listeningRE)[1]
	if err := send(t, addr, "b@image.test"); err != nil {
		t.Fatalf("delivery through the container: %v", err)
	}
	if n := len(mx.Messages()); n != 1 {
		t.Fatalf("the MX got %d messages", n)
	}
	if _, err := os.Stat(filepath.Join(data, "sealgate.db")); err != nil {
		t.Errorf("no state on the volume: %v", err)
	}
}
