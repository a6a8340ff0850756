package k8s

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// repoRoot is the top of the source tree, seen from this module.
const repoRoot = "../.."

var kubeDir = filepath.Join(repoRoot, "deploy", "kubernetes")

// manifests is what one overlay builds to, decoded into the API types.
type manifests struct {
	deployments  map[string]*appsv1.Deployment
	statefulSets map[string]*appsv1.StatefulSet
	services     map[string]*corev1.Service
	configMaps   map[string]*corev1.ConfigMap
	secrets      map[string]*corev1.Secret
	pvcs         map[string]*corev1.PersistentVolumeClaim
	netpols      map[string]*networkingv1.NetworkPolicy
	pdbs         map[string]*policyv1.PodDisruptionBudget
	hpas         map[string]*autoscalingv2.HorizontalPodAutoscaler
}

func newManifests() *manifests {
	return &manifests{
		deployments:  map[string]*appsv1.Deployment{},
		statefulSets: map[string]*appsv1.StatefulSet{},
		services:     map[string]*corev1.Service{},
		configMaps:   map[string]*corev1.ConfigMap{},
		secrets:      map[string]*corev1.Secret{},
		pvcs:         map[string]*corev1.PersistentVolumeClaim{},
		netpols:      map[string]*networkingv1.NetworkPolicy{},
		pdbs:         map[string]*policyv1.PodDisruptionBudget{},
		hpas:         map[string]*autoscalingv2.HorizontalPodAutoscaler{},
	}
}

// buildOverlay runs kustomize on deploy/kubernetes/overlays/NAME and
// decodes every object strictly.
func buildOverlay(t testing.TB, name string) *manifests {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	rm, err := k.Run(filesys.MakeFsOnDisk(), filepath.Join(kubeDir, "overlays", name))
	if err != nil {
		t.Fatalf("kustomize build overlays/%s: %v", name, err)
	}
	out, err := rm.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	m, err := decodeAll(out)
	if err != nil {
		t.Fatalf("overlays/%s: %v", name, err)
	}
	return m
}

// decodeFile decodes a file of manifests, such as an example.
func decodeFile(t testing.TB, path string) *manifests {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	m, err := decodeAll(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return m
}

// decodeAll splits a YAML stream into documents and decodes each into the
// type of its kind, refusing unknown fields and unknown kinds.
func decodeAll(stream []byte) (*manifests, error) {
	m := newManifests()
	for i, doc := range strings.Split("\n"+string(stream), "\n---\n") {
		if strings.TrimSpace(doc) == "" {
			continue
		}
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
			Metadata   struct {
				Name string `json:"name"`
			} `json:"metadata"`
		}
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			return nil, fmt.Errorf("document %d: %w", i, err)
		}
		if err := m.add(head.APIVersion+"/"+head.Kind, head.Metadata.Name, []byte(doc)); err != nil {
			return nil, fmt.Errorf("%s %s: %w", head.Kind, head.Metadata.Name, err)
		}
	}
	return m, nil
}

func (m *manifests) add(kind, name string, doc []byte) error {
	switch kind {
	case "apps/v1/Deployment":
		return decodeInto(doc, name, m.deployments)
	case "apps/v1/StatefulSet":
		return decodeInto(doc, name, m.statefulSets)
	case "v1/Service":
		return decodeInto(doc, name, m.services)
	case "v1/ConfigMap":
		return decodeInto(doc, name, m.configMaps)
	case "v1/Secret":
		return decodeInto(doc, name, m.secrets)
	case "v1/PersistentVolumeClaim":
		return decodeInto(doc, name, m.pvcs)
	case "networking.k8s.io/v1/NetworkPolicy":
		return decodeInto(doc, name, m.netpols)
	case "policy/v1/PodDisruptionBudget":
		return decodeInto(doc, name, m.pdbs)
	case "autoscaling/v2/HorizontalPodAutoscaler":
		return decodeInto(doc, name, m.hpas)
	}
	return fmt.Errorf("unexpected kind %s", kind)
}

func decodeInto[T any](doc []byte, name string, into map[string]*T) error {
	if _, dup := into[name]; dup {
		return fmt.Errorf("defined twice")
	}
	v := new(T)
	if err := yaml.UnmarshalStrict(doc, v); err != nil {
		return err
	}
	into[name] = v
	return nil
}

// one returns the only object of a map, failing otherwise.
func one[T any](t testing.TB, what string, objs map[string]*T) *T {
	t.Helper()
	if len(objs) != 1 {
		t.Fatalf("want exactly one %s, got %d", what, len(objs))
	}
	for _, o := range objs {
		return o
	}
	return nil
}

// gatewayDeployment is the Deployment named sealgate.
func (m *manifests) gateway(t testing.TB) *appsv1.Deployment {
	t.Helper()
	d, ok := m.deployments["sealgate"]
	if !ok {
		t.Fatal("no Deployment sealgate")
	}
	return d
}

// container finds a container (or an init container) of a pod by name.
func container(t testing.TB, spec *corev1.PodSpec, name string) *corev1.Container {
	t.Helper()
	for _, list := range [][]corev1.Container{spec.Containers, spec.InitContainers} {
		for i := range list {
			if list[i].Name == name {
				return &list[i]
			}
		}
	}
	t.Fatalf("no container %s", name)
	return nil
}

// env returns the environment a container gets: envFrom ConfigMaps first,
// then env entries (which win), as the kubelet does.
func (m *manifests) env(t testing.TB, c *corev1.Container) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, from := range c.EnvFrom {
		if from.ConfigMapRef == nil {
			t.Fatalf("container %s: envFrom other than a ConfigMap", c.Name)
		}
		cm, ok := m.configMaps[from.ConfigMapRef.Name]
		if !ok {
			t.Fatalf("container %s: envFrom ConfigMap %s does not exist", c.Name, from.ConfigMapRef.Name)
		}
		for k, v := range cm.Data {
			out[from.Prefix+k] = v
		}
	}
	for _, e := range c.Env {
		if e.ValueFrom != nil {
			t.Fatalf("container %s: %s comes from elsewhere; the tests read literal values only", c.Name, e.Name)
		}
		out[e.Name] = e.Value
	}
	return out
}

// containerPort returns the port number a probe's or Service's named or
// numbered port means in c.
func containerPort(t testing.TB, c *corev1.Container, port string) int32 {
	t.Helper()
	for _, p := range c.Ports {
		if p.Name == port || fmt.Sprint(p.ContainerPort) == port {
			return p.ContainerPort
		}
	}
	t.Fatalf("container %s has no port %s", c.Name, port)
	return 0
}
