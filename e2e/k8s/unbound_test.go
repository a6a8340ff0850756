package k8s

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
)

// unboundConfig is an unbound.conf as lines.
type unboundConfig struct{ lines []string }

// unboundConf returns the configuration file the unbound container reads:
// the argument of -c, found in the ConfigMap mounted over its directory.
func unboundConf(t testing.TB, m *manifests, pod *corev1.PodSpec, c *corev1.Container) unboundConfig {
	t.Helper()
	path := argAfter(c.Command, "-c")
	if path == "" {
		t.Fatalf("unbound command %v has no -c FILE", c.Command)
	}
	data, ok := m.mountedFile(t, pod, c, path)
	if !ok {
		t.Fatalf("%s is in no ConfigMap mounted into %s", path, c.Name)
	}
	return unboundConfig{lines: strings.Split(data, "\n")}
}

// mountedFile returns the content of path in container c when a
// ConfigMap volume provides it.
func (m *manifests) mountedFile(t testing.TB, pod *corev1.PodSpec, c *corev1.Container, path string) (string, bool) {
	t.Helper()
	for _, vm := range c.VolumeMounts {
		rel, err := filepath.Rel(vm.MountPath, path)
		if err != nil || strings.HasPrefix(rel, "..") {
			continue
		}
		for _, v := range pod.Volumes {
			if v.Name != vm.Name || v.ConfigMap == nil {
				continue
			}
			cm, ok := m.configMaps[v.ConfigMap.Name]
			if !ok {
				t.Fatalf("ConfigMap %s missing", v.ConfigMap.Name)
			}
			data, ok := cm.Data[rel]
			return data, ok
		}
	}
	return "", false
}

// values returns the values of every "key: value" line of the server
// clause (comments dropped).
func (u unboundConfig) values(key string) []string {
	var out []string
	for _, l := range u.lines {
		l, _, _ = strings.Cut(l, "#")
		k, v, ok := strings.Cut(strings.TrimSpace(l), ":")
		if ok && k == key {
			out = append(out, strings.TrimSpace(v))
		}
	}
	return out
}

// listens returns the addresses and port unbound answers on.
func (u unboundConfig) listens() []netip.AddrPort {
	port := uint16(53)
	if p := u.values("port"); len(p) > 0 {
		n, _ := strconv.Atoi(p[0])
		port = uint16(n)
	}
	var out []netip.AddrPort
	for _, i := range u.values("interface") {
		if a, err := netip.ParseAddr(i); err == nil {
			out = append(out, netip.AddrPortFrom(a, port))
		}
	}
	return out
}

// onLoopback returns the configuration adapted to run beside the test,
// every other line as the pod has it:
//   - port: the given one, as 5353 may be taken on this machine;
//   - directory: dir, the pod's /etc/unbound being absent here;
//   - no trust anchor: the fake DNS's zones are unsigned, and the root key
//     would make every answer bogus (validation itself is tested by
//     e2e/dnssec);
//   - "do-not-query-localhost: no" and a forward zone for "." to the fake
//     DNS on loopback, instead of recursion from the internet's root;
//   - "local-zone: test. transparent", as unbound answers NXDOMAIN for
//     test. (RFC 6761) by itself.
func (u unboundConfig) onLoopback(port int, dir string, forward netip.AddrPort) string {
	var b strings.Builder
	for _, l := range u.lines {
		key, _, _ := strings.Cut(strings.TrimSpace(l), ":")
		switch key {
		case "port":
			l = "\tport: " + strconv.Itoa(port)
		case "directory":
			l = fmt.Sprintf("\tdirectory: %q", dir)
		case "auto-trust-anchor-file", "trust-anchor-file":
			l = "\t# " + strings.TrimSpace(l) + " (left out on loopback)"
		case "do-not-query-localhost":
			l = "\tdo-not-query-localhost: no"
		case "remote-control":
			b.WriteString("\tlocal-zone: \"test.\" transparent\n")
		}
		b.WriteString(l + "\n")
	}
	fmt.Fprintf(&b, "forward-zone:\n\tname: \".\"\n\tforward-addr: %s@%d\n", forward.Addr(), forward.Port())
	return b.String()
}
