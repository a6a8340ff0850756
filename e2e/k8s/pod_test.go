package k8s

import (
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// mounts gives each volume mount of a container a directory of the test,
// filled with the files of a ConfigMap volume, and rewrites paths under a
// mount point to the directory that stands for it.
type mounts map[string]string

func newMounts(t testing.TB, m *manifests, pod *corev1.PodSpec, c *corev1.Container) mounts {
	t.Helper()
	out := mounts{}
	for _, vm := range c.VolumeMounts {
		dir := t.TempDir()
		out[vm.MountPath] = dir
		for _, v := range pod.Volumes {
			if v.Name != vm.Name || v.ConfigMap == nil {
				continue
			}
			for name, data := range m.configMaps[v.ConfigMap.Name].Data {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	return out
}

func (ms mounts) path(p string) string {
	for mount, dir := range ms {
		if p == mount {
			return dir
		}
		if rest, ok := strings.CutPrefix(p, mount+"/"); ok {
			return filepath.Join(dir, rest)
		}
	}
	return p
}

// pod is the sealgate pod of an overlay, its containers run as processes
// on loopback.
type pod struct {
	smtp, admin string
	gateway     *process
	env         map[string]string // the gateway's environment as started
	dataDir     string            // what stands for SEALGATE_STATE_DIR
}

var (
	listeningRE = regexp.MustCompile(`"msg":"listening","addr":"([^"]+)"`)
	adminRE     = regexp.MustCompile(`"msg":"admin endpoint listening","addr":"([^"]+)"`)
)

// startPod runs the unbound sidecar (its configuration adapted by
// unboundConfig.onLoopback) and then sealgate with the command, arguments
// and environment of the manifests. What must change to run beside the
// test changes, and nothing else:
//   - listeners on 127.0.0.1 with ports the kernel assigns;
//   - SEALGATE_DNS_RESOLVER: the sidecar's loopback address, its port
//     as the sidecar was given;
//   - SEALGATE_ALLOWED_NETWORKS: loopback added (the test is the legacy
//     server);
//   - SEALGATE_REDIS_URL: the Redis the test started, when set;
//   - paths under volume mounts: the test's directories;
//   - added: SEALGATE_MX_PORT (the fake MX hosts' port) and SSL_CERT_FILE
//     (the fake WebPKI), which the manifests must not set.
func startPod(t testing.TB, m *manifests, w *world, redisURL string) *pod {
	t.Helper()
	spec := &m.gateway(t).Spec.Template.Spec

	// The sidecar.
	u := container(t, spec, "unbound")
	conf := unboundConf(t, m, spec, u)
	podListens := conf.listens()
	if len(podListens) != 1 {
		t.Fatalf("the sidecar listens on %v; the test maps one address", podListens)
	}
	udir := t.TempDir()
	uport := freePort(t)
	uconf := filepath.Join(udir, "unbound.conf")
	fake, err := netip.ParseAddrPort(w.dns.Addr())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(uconf, []byte(conf.onLoopback(uport, udir, fake)), 0o644); err != nil {
		t.Fatal(err)
	}
	uargv := slices.Clone(u.Command)
	uargv[slices.Index(uargv, "-c")+1] = uconf
	bin, err := exec.LookPath(uargv[0])
	if err != nil {
		if bin, err = exec.LookPath("/usr/sbin/" + uargv[0]); err != nil {
			t.Fatalf("%s not found: install the Debian package unbound", uargv[0])
		}
	}
	uargv[0] = bin
	ub := startProcess(t, "unbound", uargv, []string{"PATH=" + os.Getenv("PATH")})
	ub.waitLog(t, regexp.MustCompile(`start of service`))
	resolver := netip.AddrPortFrom(podListens[0].Addr(), uint16(uport))

	// The gateway.
	c := container(t, spec, "sealgate")
	env := m.env(t, c)
	for _, k := range []string{"SEALGATE_MX_PORT", "SSL_CERT_FILE", "SSL_CERT_DIR"} {
		if _, ok := env[k]; ok {
			t.Fatalf("the manifests set %s", k)
		}
	}
	ms := newMounts(t, m, spec, c)
	run := maps.Clone(env)
	for k, v := range run {
		run[k] = ms.path(v)
	}
	run["SEALGATE_LISTEN"] = "127.0.0.1:0"
	run["SEALGATE_ADMIN_LISTEN"] = "127.0.0.1:0"
	var resolvers []string
	for _, r := range strings.Split(env["SEALGATE_DNS_RESOLVER"], ",") {
		if r != podListens[0].String() {
			t.Fatalf("SEALGATE_DNS_RESOLVER %s is not the sidecar (%s)", r, podListens[0])
		}
		resolvers = append(resolvers, resolver.String())
	}
	run["SEALGATE_DNS_RESOLVER"] = strings.Join(resolvers, ",")
	run["SEALGATE_ALLOWED_NETWORKS"] = env["SEALGATE_ALLOWED_NETWORKS"] + ",127.0.0.0/8"
	if (env["SEALGATE_REDIS_URL"] != "") != (redisURL != "") {
		t.Fatalf("SEALGATE_REDIS_URL=%q in the manifests, %q from the test", env["SEALGATE_REDIS_URL"], redisURL)
	}
	if redisURL != "" {
		run["SEALGATE_REDIS_URL"] = redisURL
	}
	run["SEALGATE_MX_PORT"] = strconv.Itoa(w.port)
	run["SSL_CERT_FILE"] = w.caFile

	if len(c.Command) != 1 {
		t.Fatalf("sealgate command %v", c.Command)
	}
	argv := append([]string{binPath}, c.Args...)
	envList := []string{"PATH=" + os.Getenv("PATH")}
	for k, v := range run {
		envList = append(envList, k+"="+v)
	}
	gw := startProcess(t, "sealgate", argv, envList)
	p := &pod{gateway: gw, env: run, dataDir: run["SEALGATE_STATE_DIR"]}
	p.smtp = gw.waitLog(t, listeningRE)[1]
	p.admin = gw.waitLog(t, adminRE)[1]

	// The kubelet's probes, as the manifest states them.
	for _, probe := range []*corev1.Probe{c.StartupProbe, c.LivenessProbe, c.ReadinessProbe} {
		resp, err := http.Get("http://" + p.admin + probe.HTTPGet.Path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("probe %s: %s", probe.HTTPGet.Path, resp.Status)
		}
	}
	return p
}

// startRedis runs the overlay's redis-server with the command and
// arguments of its StatefulSet: the port is one the kernel assigns, the
// data directory the test's, and it binds loopback only. It returns the
// SEALGATE_REDIS_URL that reaches it.
func startRedis(t testing.TB, m *manifests) string {
	t.Helper()
	sts := one(t, "StatefulSet", m.statefulSets)
	spec := &sts.Spec.Template.Spec
	c := container(t, spec, "redis")
	ms := newMounts(t, m, spec, c)
	argv := append(slices.Clone(c.Command), c.Args...)
	port := strconv.Itoa(freePort(t))
	for i, a := range argv {
		switch {
		case i > 0 && argv[i-1] == "--port":
			argv[i] = port
		case i > 0 && argv[i-1] == "--dir":
			argv[i] = ms.path(a)
		}
	}
	bin, err := exec.LookPath(argv[0])
	if err != nil {
		t.Fatalf("%s not found: install the Debian package redis-server", argv[0])
	}
	argv[0] = bin
	argv = append(argv, "--bind", "127.0.0.1")
	r := startProcess(t, "redis-server", argv, []string{"PATH=" + os.Getenv("PATH")})
	r.waitLog(t, regexp.MustCompile(`Ready to accept connections`))
	return "redis://" + net.JoinHostPort("127.0.0.1", port) + "/0"
}
