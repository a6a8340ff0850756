package k8s

import (
	"go/ast"
	"go/parser"
	"go/token"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

var overlays = []string{"single", "replicas"}

// knownVariables reads the SEALGATE_* names the binary knows from the env
// tags of its configuration struct (cmd/sealgate), so that a variable
// added there is known here without a second list.
func knownVariables(t testing.TB) map[string]bool {
	t.Helper()
	dir := filepath.Join(repoRoot, "cmd", "sealgate")
	fset := token.NewFileSet()
	paths, err := filepath.Glob(filepath.Join(dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	known := map[string]bool{}
	found := false
	for _, path := range paths {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			t.Fatal(err)
		}
		{
			ast.Inspect(f, func(n ast.Node) bool {
				ts, ok := n.(*ast.TypeSpec)
				if !ok || ts.Name.Name != "Config" {
					return true
				}
				found = true
				for _, field := range ts.Type.(*ast.StructType).Fields.List {
					if field.Tag == nil {
						continue
					}
					tag, _ := strconv.Unquote(field.Tag.Value)
					if name, _, _ := strings.Cut(reflect.StructTag(tag).Get("env"), ","); name != "" {
						known["SEALGATE_"+name] = true
					}
				}
				return false
			})
		}
	}
	if !found || len(known) < 10 {
		t.Fatalf("no Config struct with env tags in %s (%d names)", dir, len(known))
	}
	return known
}

func TestManifestVariablesAreKnown(t *testing.T) {
	known := knownVariables(t)
	for _, name := range overlays {
		t.Run(name, func(t *testing.T) {
			m := buildOverlay(t, name)
			pod := &m.gateway(t).Spec.Template.Spec
			for _, c := range append(slices.Clone(pod.InitContainers), pod.Containers...) {
				for k := range m.env(t, &c) {
					if strings.HasPrefix(k, "SEALGATE_") && !known[k] {
						t.Errorf("container %s: %s is not a variable of sealgate", c.Name, k)
					}
				}
			}
			// A ConfigMap of SEALGATE_* entries that no container takes
			// would be configuration that never arrives.
			for cmName, cm := range m.configMaps {
				for k := range cm.Data {
					if strings.HasPrefix(k, "SEALGATE_") && !m.envSource(pod, cmName) {
						t.Errorf("ConfigMap %s holds %s but no container takes it as environment", cmName, k)
					}
				}
			}
		})
	}
}

func (m *manifests) envSource(pod *corev1.PodSpec, cmName string) bool {
	for _, c := range pod.Containers {
		for _, from := range c.EnvFrom {
			if from.ConfigMapRef != nil && from.ConfigMapRef.Name == cmName {
				return true
			}
		}
	}
	return false
}

func TestManifestKnownVariablesSeeTheStruct(t *testing.T) {
	known := knownVariables(t)
	for _, want := range []string{"SEALGATE_LISTEN", "SEALGATE_ADMIN_LISTEN", "SEALGATE_DNS_RESOLVER", "SEALGATE_REDIS_URL", "SEALGATE_STATE_DIR"} {
		if !known[want] {
			t.Errorf("%s not found in the configuration struct", want)
		}
	}
	if known["SEALGATE_NO_SUCH_VARIABLE"] {
		t.Error("an unknown name is known")
	}
}

func TestManifestPortsProbesAndServices(t *testing.T) {
	for _, name := range overlays {
		t.Run(name, func(t *testing.T) {
			m := buildOverlay(t, name)
			d := m.gateway(t)
			pod := &d.Spec.Template.Spec
			c := container(t, pod, "sealgate")
			env := m.env(t, c)

			admin := listenPort(t, "SEALGATE_ADMIN_LISTEN", env["SEALGATE_ADMIN_LISTEN"])
			host, _, _ := net.SplitHostPort(env["SEALGATE_ADMIN_LISTEN"])
			if ip, err := netip.ParseAddr(host); err == nil && ip.IsLoopback() {
				t.Errorf("SEALGATE_ADMIN_LISTEN=%s: the kubelet probes the pod's address, not its loopback", env["SEALGATE_ADMIN_LISTEN"])
			}
			probes := []struct {
				name  string
				probe *corev1.Probe
				path  string
			}{
				{name: "startup", probe: c.StartupProbe, path: "/healthz"},
				{name: "liveness", probe: c.LivenessProbe, path: "/healthz"},
				{name: "readiness", probe: c.ReadinessProbe, path: "/readyz"},
			}
			for _, p := range probes {
				if p.probe == nil || p.probe.HTTPGet == nil {
					t.Errorf("%s probe: missing or not HTTP", p.name)
					continue
				}
				if p.probe.HTTPGet.Path != p.path {
					t.Errorf("%s probe: path %s, want %s", p.name, p.probe.HTTPGet.Path, p.path)
				}
				if got := containerPort(t, c, p.probe.HTTPGet.Port.String()); got != admin {
					t.Errorf("%s probe: port %d, admin listener on %d", p.name, got, admin)
				}
			}

			smtp := listenPort(t, "SEALGATE_LISTEN", env["SEALGATE_LISTEN"])
			services := []struct {
				name string
				port int32
				want int32
			}{
				{name: "sealgate", port: 2525, want: smtp},
				{name: "sealgate-admin", port: 9025, want: admin},
			}
			for _, s := range services {
				svc, ok := m.services[s.name]
				if !ok {
					t.Errorf("no Service %s", s.name)
					continue
				}
				if svc.Spec.Type != corev1.ServiceTypeClusterIP {
					t.Errorf("Service %s: type %s, want ClusterIP", s.name, svc.Spec.Type)
				}
				if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
					t.Errorf("Service %s does not select the sealgate pods", s.name)
				}
				if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].Port != s.port {
					t.Fatalf("Service %s: ports %+v, want %d", s.name, svc.Spec.Ports, s.port)
				}
				if got := containerPort(t, c, svc.Spec.Ports[0].TargetPort.String()); got != s.want {
					t.Errorf("Service %s targets port %d; the listener is on %d", s.name, got, s.want)
				}
			}

			// The state directory is a mounted volume, not the read-only root.
			if !mounted(c, env["SEALGATE_STATE_DIR"]) {
				t.Errorf("SEALGATE_STATE_DIR=%s is not a mounted volume", env["SEALGATE_STATE_DIR"])
			}
			if p := env["SEALGATE_POLICY_FILE"]; p != "" && !mounted(c, filepath.Dir(p)) {
				t.Errorf("SEALGATE_POLICY_FILE=%s is not in a mounted volume", p)
			}
		})
	}
}

func mounted(c *corev1.Container, path string) bool {
	for _, vm := range c.VolumeMounts {
		if vm.MountPath == path {
			return true
		}
	}
	return false
}

func listenPort(t testing.TB, name, addr string) int32 {
	t.Helper()
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, addr, err)
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		t.Fatalf("%s=%q: not a fixed port", name, addr)
	}
	return int32(n)
}

func TestManifestResolverSidecar(t *testing.T) {
	for _, name := range overlays {
		t.Run(name, func(t *testing.T) {
			m := buildOverlay(t, name)
			pod := &m.gateway(t).Spec.Template.Spec
			env := m.env(t, container(t, pod, "sealgate"))
			u := container(t, pod, "unbound")
			if u.RestartPolicy == nil || *u.RestartPolicy != corev1.ContainerRestartPolicyAlways {
				t.Error("unbound is not a sidecar (an init container with restartPolicy Always)")
			}
			if env["SEALGATE_DNS_TRUST_AD"] == "true" {
				t.Error("SEALGATE_DNS_TRUST_AD=true: the sidecar on loopback needs no such trust")
			}
			resolvers := strings.Split(env["SEALGATE_DNS_RESOLVER"], ",")
			conf := unboundConf(t, m, pod, u)
			listens := conf.listens()
			for _, r := range resolvers {
				ap, err := netip.ParseAddrPort(r)
				if err != nil || !ap.Addr().IsLoopback() {
					t.Errorf("SEALGATE_DNS_RESOLVER=%s: not an address on loopback (the AD flag would not be trusted)", env["SEALGATE_DNS_RESOLVER"])
					continue
				}
				if !slices.Contains(listens, ap) {
					t.Errorf("SEALGATE_DNS_RESOLVER %s: the sidecar listens on %v", ap, listens)
				}
			}
			for _, key := range []string{"module-config", "auto-trust-anchor-file"} {
				if len(conf.values(key)) == 0 {
					t.Errorf("the sidecar's unbound.conf has no %s: it would not validate", key)
				}
			}
			if got := conf.values("module-config"); len(got) > 0 && !strings.Contains(got[0], "validator") {
				t.Errorf("module-config %s: no validator", got[0])
			}
			// The trust anchor must be on a writable volume shared with the
			// init container that puts it there.
			anchor := strings.Trim(conf.values("auto-trust-anchor-file")[0], `"`)
			if !mounted(u, filepath.Dir(anchor)) || !mounted(container(t, pod, "root-key"), filepath.Dir(anchor)) {
				t.Errorf("trust anchor %s: its directory is not a volume of unbound and root-key", anchor)
			}
		})
	}
}

func TestManifestSecurityAndResources(t *testing.T) {
	for _, name := range overlays {
		t.Run(name, func(t *testing.T) {
			m := buildOverlay(t, name)
			pods := map[string]*corev1.PodSpec{}
			for n, d := range m.deployments {
				pods["Deployment "+n] = &d.Spec.Template.Spec
			}
			for n, s := range m.statefulSets {
				pods["StatefulSet "+n] = &s.Spec.Template.Spec
			}
			for owner, pod := range pods {
				if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot {
					t.Errorf("%s: runAsNonRoot is not set", owner)
				}
				if pod.SecurityContext != nil && (pod.SecurityContext.RunAsUser == nil || *pod.SecurityContext.RunAsUser == 0) {
					t.Errorf("%s: no non-root runAsUser", owner)
				}
				if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
					t.Errorf("%s: the service account token is mounted", owner)
				}
				for _, c := range append(slices.Clone(pod.InitContainers), pod.Containers...) {
					sc := c.SecurityContext
					switch {
					case sc == nil:
						t.Errorf("%s/%s: no securityContext", owner, c.Name)
						continue
					case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
						t.Errorf("%s/%s: root file system not read-only", owner, c.Name)
					case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
						t.Errorf("%s/%s: privilege escalation allowed", owner, c.Name)
					case sc.Privileged != nil && *sc.Privileged:
						t.Errorf("%s/%s: privileged", owner, c.Name)
					case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) || len(sc.Capabilities.Add) > 0:
						t.Errorf("%s/%s: capabilities not all dropped: %+v", owner, c.Name, sc.Capabilities)
					}
					if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
						t.Errorf("%s/%s: resources need CPU and memory requests and a memory limit: %+v", owner, c.Name, c.Resources)
					}
				}
			}
		})
	}
}

// TestManifestImageMatchesContainerfile: the command and user of the pod
// are those the image provides.
func TestManifestImageMatchesContainerfile(t *testing.T) {
	cf, err := os.ReadFile(filepath.Join(repoRoot, "deploy", "container", "Containerfile"))
	if err != nil {
		t.Fatal(err)
	}
	entry := regexp.MustCompile(`(?m)^ENTRYPOINT \["([^"]+)"\]`).FindSubmatch(cf)
	user := regexp.MustCompile(`(?m)^USER (\d+):(\d+)`).FindSubmatch(cf)
	if entry == nil || user == nil {
		t.Fatal("the Containerfile has no ENTRYPOINT or numeric USER")
	}
	for _, name := range overlays {
		t.Run(name, func(t *testing.T) {
			m := buildOverlay(t, name)
			pod := &m.gateway(t).Spec.Template.Spec
			c := container(t, pod, "sealgate")
			if len(c.Command) != 1 || c.Command[0] != string(entry[1]) {
				t.Errorf("command %v, the image's entry point is %s", c.Command, entry[1])
			}
			if !slices.Equal(c.Args, []string{"serve"}) {
				t.Errorf("args %v, want [serve]", c.Args)
			}
			if got := strconv.FormatInt(*pod.SecurityContext.RunAsUser, 10); got != string(user[1]) {
				t.Errorf("runAsUser %s, the image's user is %s", got, user[1])
			}
		})
	}
}

func TestManifestOverlays(t *testing.T) {
	t.Run("single", func(t *testing.T) {
		m := buildOverlay(t, "single")
		d := m.gateway(t)
		if d.Spec.Replicas == nil || *d.Spec.Replicas != 1 {
			t.Errorf("replicas %v, want 1", d.Spec.Replicas)
		}
		if d.Spec.Strategy.Type != "Recreate" {
			t.Errorf("strategy %s: a second pod would wait on the bbolt lock", d.Spec.Strategy.Type)
		}
		env := m.env(t, container(t, &d.Spec.Template.Spec, "sealgate"))
		if env["SEALGATE_REDIS_URL"] != "" {
			t.Error("single sets SEALGATE_REDIS_URL")
		}
		vol := volumeAt(t, &d.Spec.Template.Spec, "sealgate", env["SEALGATE_STATE_DIR"])
		if vol.PersistentVolumeClaim == nil || vol.EmptyDir != nil {
			t.Fatalf("the state directory is not (only) a persistent volume: %+v", vol.VolumeSource)
		}
		if _, ok := m.pvcs[vol.PersistentVolumeClaim.ClaimName]; !ok {
			t.Errorf("PersistentVolumeClaim %s is not part of the overlay", vol.PersistentVolumeClaim.ClaimName)
		}
		if len(m.hpas) != 0 {
			t.Error("single has an autoscaler")
		}
		pdb := one(t, "PodDisruptionBudget", m.pdbs)
		if pdb.Spec.MinAvailable != nil || pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.IntValue() != 1 {
			t.Errorf("single's PodDisruptionBudget must let its one pod be drained: %+v", pdb.Spec)
		}
		checkPDBSelects(t, m)
	})
	t.Run("replicas", func(t *testing.T) {
		m := buildOverlay(t, "replicas")
		d := m.gateway(t)
		if d.Spec.Replicas == nil || *d.Spec.Replicas != 3 {
			t.Errorf("replicas %v, want 3", d.Spec.Replicas)
		}
		hpa := one(t, "HorizontalPodAutoscaler", m.hpas)
		if hpa.Spec.ScaleTargetRef.Kind != "Deployment" || hpa.Spec.ScaleTargetRef.Name != d.Name {
			t.Errorf("the autoscaler scales %+v", hpa.Spec.ScaleTargetRef)
		}
		if hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas != 3 || hpa.Spec.MaxReplicas < 3 {
			t.Errorf("autoscaler bounds %v..%d", hpa.Spec.MinReplicas, hpa.Spec.MaxReplicas)
		}
		if len(hpa.Spec.Metrics) != 1 || hpa.Spec.Metrics[0].Resource == nil || hpa.Spec.Metrics[0].Resource.Name != corev1.ResourceCPU {
			t.Errorf("the autoscaler does not scale on CPU: %+v", hpa.Spec.Metrics)
		}
		pdb := one(t, "PodDisruptionBudget", m.pdbs)
		if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() >= int(*hpa.Spec.MinReplicas) || pdb.Spec.MaxUnavailable != nil {
			t.Errorf("PodDisruptionBudget %+v: keep fewer than the autoscaler's minimum so that drains proceed", pdb.Spec)
		}
		checkPDBSelects(t, m)

		// SEALGATE_REDIS_URL names the Redis Service of the overlay, whose
		// pods it selects on the port the Service serves.
		env := m.env(t, container(t, &d.Spec.Template.Spec, "sealgate"))
		host, port := redisTarget(t, env["SEALGATE_REDIS_URL"])
		svc, ok := m.services[host]
		if !ok {
			t.Fatalf("SEALGATE_REDIS_URL names %s, which is not a Service of the overlay", host)
		}
		if len(svc.Spec.Ports) != 1 || strconv.Itoa(int(svc.Spec.Ports[0].Port)) != port {
			t.Errorf("Service %s ports %+v, SEALGATE_REDIS_URL port %s", host, svc.Spec.Ports, port)
		}
		redis := one(t, "StatefulSet", m.statefulSets)
		if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(redis.Spec.Template.Labels)) {
			t.Errorf("Service %s does not select the Redis pods", host)
		}
		rc := container(t, &redis.Spec.Template.Spec, "redis")
		if got := containerPort(t, rc, svc.Spec.Ports[0].TargetPort.String()); strconv.Itoa(int(got)) != argAfter(rc.Args, "--port") {
			t.Errorf("Service %s targets %d, redis-server listens on %s", host, got, argAfter(rc.Args, "--port"))
		}
	})
}

func argAfter(args []string, flag string) string {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

func redisTarget(t testing.TB, url string) (host, port string) {
	t.Helper()
	m := regexp.MustCompile(`^redis://([^:/]+):(\d+)/\d+$`).FindStringSubmatch(url)
	if m == nil {
		t.Fatalf("SEALGATE_REDIS_URL=%q is not redis://host:port/db", url)
	}
	return m[1], m[2]
}

func volumeAt(t testing.TB, pod *corev1.PodSpec, ctr, path string) *corev1.Volume {
	t.Helper()
	for _, vm := range container(t, pod, ctr).VolumeMounts {
		if vm.MountPath != path {
			continue
		}
		for i := range pod.Volumes {
			if pod.Volumes[i].Name == vm.Name {
				return &pod.Volumes[i]
			}
		}
		t.Fatalf("volume %s is mounted but not defined", vm.Name)
	}
	t.Fatalf("nothing mounted at %s in %s", path, ctr)
	return nil
}

func checkPDBSelects(t *testing.T, m *manifests) {
	t.Helper()
	pdb := one(t, "PodDisruptionBudget", m.pdbs)
	sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	if err != nil {
		t.Fatal(err)
	}
	if !sel.Matches(labels.Set(m.gateway(t).Spec.Template.Labels)) {
		t.Error("the PodDisruptionBudget does not select the sealgate pods")
	}
}

// TestManifestVolumesExist: every ConfigMap a pod mounts is generated by
// the overlay (kustomize renames them after their content); Secrets are
// optional and named as in examples/secrets.yaml.
func TestManifestVolumesExist(t *testing.T) {
	examples := decodeFile(t, filepath.Join(kubeDir, "examples", "secrets.yaml"))
	for _, name := range overlays {
		t.Run(name, func(t *testing.T) {
			m := buildOverlay(t, name)
			for _, v := range m.gateway(t).Spec.Template.Spec.Volumes {
				switch {
				case v.ConfigMap != nil:
					if _, ok := m.configMaps[v.ConfigMap.Name]; !ok {
						t.Errorf("volume %s: ConfigMap %s is not generated", v.Name, v.ConfigMap.Name)
					}
				case v.Secret != nil:
					if v.Secret.Optional == nil || !*v.Secret.Optional {
						t.Errorf("volume %s: Secret %s must be optional so that the pod starts without it", v.Name, v.Secret.SecretName)
					}
					if _, ok := examples.secrets[v.Secret.SecretName]; !ok {
						t.Errorf("volume %s: Secret %s has no example in examples/secrets.yaml", v.Name, v.Secret.SecretName)
					}
				}
			}
		})
	}
}

// portSet is what a list of NetworkPolicy ports lets through, as
// "TCP 25" strings (named ports resolved in the gateway container).
func portSet(t testing.TB, c *corev1.Container, ports []networkingv1.NetworkPolicyPort) []string {
	t.Helper()
	var out []string
	for _, p := range ports {
		proto := "TCP"
		if p.Protocol != nil {
			proto = string(*p.Protocol)
		}
		if p.Port == nil || p.EndPort != nil {
			t.Fatalf("port range or all ports in %+v", p)
		}
		n := p.Port.IntValue()
		if p.Port.IntValue() == 0 {
			n = int(containerPort(t, c, p.Port.String()))
		}
		out = append(out, proto+" "+strconv.Itoa(n))
	}
	sort.Strings(out)
	return out
}

// readmeNetworkTable returns the rows of the README's table of what the
// pod's NetworkPolicy lets in and out: direction -> sorted "TCP 25".
func readmeNetworkTable(t testing.TB) map[string][]string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(data), "\n## Kubernetes\n")
	if !ok {
		t.Fatal("README has no Kubernetes section")
	}
	section, _, _ = strings.Cut(section, "\n## ")
	row := regexp.MustCompile("(?m)^\\| (in|out) \\| `(TCP|UDP) (\\d+)`")
	out := map[string][]string{}
	for _, m := range row.FindAllStringSubmatch(section, -1) {
		out[m[1]] = append(out[m[1]], m[2]+" "+m[3])
	}
	for k := range out {
		sort.Strings(out[k])
	}
	if len(out["in"]) == 0 || len(out["out"]) == 0 {
		t.Fatalf("the README's Kubernetes section has no table of ports in and out: %v", out)
	}
	return out
}

func TestManifestNetworkPolicy(t *testing.T) {
	readme := readmeNetworkTable(t)
	for _, name := range overlays {
		t.Run(name, func(t *testing.T) {
			m := buildOverlay(t, name)
			d := m.gateway(t)
			c := container(t, &d.Spec.Template.Spec, "sealgate")
			env := m.env(t, c)
			np, ok := m.netpols["sealgate"]
			if !ok {
				t.Fatal("no NetworkPolicy sealgate")
			}
			sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
			if err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				t.Fatalf("the NetworkPolicy does not select the sealgate pods (%v)", err)
			}
			if !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{"Ingress", "Egress"}) {
				t.Errorf("policy types %v", np.Spec.PolicyTypes)
			}

			var in, out []string
			for _, r := range np.Spec.Ingress {
				ports := portSet(t, c, r.Ports)
				in = append(in, ports...)
				admin := slices.Contains(ports, "TCP "+strconv.Itoa(int(listenPort(t, "", env["SEALGATE_ADMIN_LISTEN"]))))
				for _, peer := range r.From {
					switch {
					case peer.IPBlock != nil && admin:
						t.Errorf("the admin port is open to addresses %s", peer.IPBlock.CIDR)
					case peer.IPBlock != nil:
						// SMTP clients: exactly the networks that may relay.
						if !slices.Contains(strings.Split(env["SEALGATE_ALLOWED_NETWORKS"], ","), peer.IPBlock.CIDR) {
							t.Errorf("ingress from %s, which is not in SEALGATE_ALLOWED_NETWORKS=%s", peer.IPBlock.CIDR, env["SEALGATE_ALLOWED_NETWORKS"])
						}
					case peer.NamespaceSelector == nil && peer.PodSelector == nil:
						t.Errorf("ingress rule with an empty peer")
					}
				}
				if len(r.From) == 0 {
					t.Errorf("ingress to %v from everywhere", ports)
				}
			}
			var redis []string
			for _, r := range np.Spec.Egress {
				if len(r.To) > 0 {
					// Egress to peers inside the cluster (Redis).
					redis = append(redis, portSet(t, c, r.Ports)...)
					continue
				}
				out = append(out, portSet(t, c, r.Ports)...)
			}
			sort.Strings(in)
			sort.Strings(out)
			if !slices.Equal(in, readme["in"]) {
				t.Errorf("ingress ports %v, the README says %v", in, readme["in"])
			}
			if !slices.Equal(out, readme["out"]) {
				t.Errorf("egress ports %v, the README says %v", out, readme["out"])
			}
			var wantRedis []string
			if env["SEALGATE_REDIS_URL"] != "" {
				_, port := redisTarget(t, env["SEALGATE_REDIS_URL"])
				wantRedis = []string{"TCP " + port}
			}
			if !slices.Equal(redis, wantRedis) {
				t.Errorf("egress inside the cluster %v, want %v", redis, wantRedis)
			}
		})
	}
}

// TestDenySMTPEgressExample: the example lets every pod but sealgate's
// send anything except TCP 25.
func TestDenySMTPEgressExample(t *testing.T) {
	m := decodeFile(t, filepath.Join(kubeDir, "examples", "deny-smtp-egress.yaml"))
	np := one(t, "NetworkPolicy", m.netpols)
	sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
	if err != nil {
		t.Fatal(err)
	}
	gw := buildOverlay(t, "single").gateway(t).Spec.Template.Labels
	if sel.Matches(labels.Set(gw)) {
		t.Error("the example selects the sealgate pods")
	}
	if !sel.Matches(labels.Set{"app.kubernetes.io/name": "legacy-mta"}) || !sel.Matches(labels.Set{}) {
		t.Error("the example does not select other pods")
	}
	if !slices.Equal(np.Spec.PolicyTypes, []networkingv1.PolicyType{"Egress"}) {
		t.Errorf("policy types %v, want Egress only", np.Spec.PolicyTypes)
	}
	allowed := func(proto string, port int) bool {
		for _, r := range np.Spec.Egress {
			if len(r.To) > 0 {
				continue // only rules to everywhere count here
			}
			if len(r.Ports) == 0 {
				return true
			}
			for _, p := range r.Ports {
				pp := "TCP"
				if p.Protocol != nil {
					pp = string(*p.Protocol)
				}
				if pp != proto {
					continue
				}
				if p.Port == nil {
					return true
				}
				end := int32(p.Port.IntValue())
				if p.EndPort != nil {
					end = *p.EndPort
				}
				if port >= p.Port.IntValue() && int32(port) <= end {
					return true
				}
			}
		}
		return false
	}
	for port := 1; port <= 65535; port++ {
		if got, want := allowed("TCP", port), port != 25; got != want {
			t.Fatalf("TCP %d allowed: %v, want %v", port, got, want)
		}
	}
	for _, port := range []int{25, 53, 443} {
		if !allowed("UDP", port) {
			t.Errorf("UDP %d denied", port)
		}
	}
}
