package k8s

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPodSingle runs the single overlay's pod: a message goes through
// sealgate, resolved by the unbound sidecar, and the state lands on the
// volume mounted at SEALGATE_STATE_DIR.
func TestPodSingle(t *testing.T) {
	w := newWorld(t)
	mx := w.mx("single.test", "mx.single.test", 10)
	m := buildOverlay(t, "single")
	p := startPod(t, m, w, "")
	if err := send(t, p.smtp, "b@single.test"); err != nil {
		t.Fatalf("delivery through the pod: %v", err)
	}
	if n := len(mx.Messages()); n != 1 {
		t.Fatalf("the MX got %d messages", n)
	}
	if _, err := os.Stat(filepath.Join(p.dataDir, "sealgate.db")); err != nil {
		t.Errorf("no state on the data volume: %v", err)
	}
	if !strings.Contains(p.gateway.logs.String(), `"msg":"DNSSEC trusted`) {
		t.Error("sealgate does not trust the sidecar's AD flag")
	}
}

// TestPodReplicasShareMTASTS runs two pods of the replicas overlay against
// one redis-server started as the overlay's StatefulSet says. The MTA-STS
// policy the first replica fetches is the one the second uses: the policy
// host is gone by then, and the policy sends mail past the preferred MX
// (which the policy does not list) to the listed one.
func TestPodReplicasShareMTASTS(t *testing.T) {
	w := newWorld(t)
	unlisted := w.mx("shared.test", "mx1.shared.test", 10)
	listed := w.mx("shared.test", "mx2.shared.test", 20)
	host := w.sts("shared.test", "20261201", "version: STSv1\r\nmode: enforce\r\nmax_age: 86400\r\nmx: mx2.shared.test\r\n")

	m := buildOverlay(t, "replicas")
	url := startRedis(t, m)
	first := startPod(t, m, w, url)
	second := startPod(t, m, w, url)

	if err := send(t, first.smtp, "b@shared.test"); err != nil {
		t.Fatalf("delivery through the first replica: %v", err)
	}
	if host.hits.Load() != 1 {
		t.Fatalf("the policy host served %d requests, want 1", host.hits.Load())
	}
	host.srv.Close()

	if err := send(t, second.smtp, "b@shared.test"); err != nil {
		t.Fatalf("delivery through the second replica: %v", err)
	}
	if n := len(listed.Messages()); n != 2 {
		t.Errorf("the MX the policy lists got %d messages, want 2", n)
	}
	if n := unlisted.Connections(); n != 0 {
		t.Errorf("the MX outside the policy got %d connections: a replica went without the policy", n)
	}
	for i, p := range []*pod{first, second} {
		if !strings.Contains(p.gateway.logs.String(), `"policy":"MTA-STS enforce"`) {
			t.Errorf("replica %d did not deliver under the MTA-STS policy", i+1)
		}
	}
}
