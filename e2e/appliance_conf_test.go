package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestApplianceConfiguration runs the appliance's boot-time configuration
// script on a scratch root. A configuration whose ruleset nftables would
// not load (a bad prefix, an unquoted word, a misspelled NFT_ variable)
// must stop the script before it turns forwarding on: an appliance that
// forwards with no ruleset sends the legacy servers' port 25 out in
// cleartext.
func TestApplianceConfiguration(t *testing.T) {
	for _, tool := range []string{"nft", "awk"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed: %v", tool, err)
		}
	}
	repo, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		conf string
		ok   bool
	}{
		{name: "good", conf: "HOSTNAME=gw.appliance.test\nALLOWED_NETWORKS=10.0.0.0/24,fd00:1::/64\n", ok: true},
		{name: "v4-mapped IPv6 prefix goes with IPv6", conf: "ALLOWED_NETWORKS=10.0.0.0/24,::ffff:10.0.0.0/120\n", ok: true},
		{name: "bad prefix", conf: "ALLOWED_NETWORKS=10.0.0.0/33\n"},
		{name: "unquoted policy word", conf: "ALLOWED_NETWORKS=10.0.0.0/24\nNFT_FORWARD_POLICY=drop\n"},
		{name: "misspelled variable", conf: "ALLOWED_NETWORKS=10.0.0.0/24\nNFT_FORWARD_POLICYY=\"drop\"\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			share := filepath.Join(root, "usr/share/sealgate")
			if err := os.MkdirAll(share, 0o755); err != nil {
				t.Fatal(err)
			}
			for src, dst := range map[string]string{"deploy/nftables/router.nft": "router.nft", "deploy/systemd/sealgate.env": "sealgate.env"} {
				data, err := os.ReadFile(filepath.Join(repo, src))
				if err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(share, dst), data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			conf := filepath.Join(root, "appliance.conf")
			if err := os.WriteFile(conf, []byte(tc.conf), 0o644); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command("sh", filepath.Join(repo, "deploy/appliance/sealgate-appliance"), conf)
			cmd.Env = append(os.Environ(), "ROOT="+root)
			out, err := cmd.CombinedOutput()
			network, nerr := os.ReadFile(filepath.Join(root, "etc/systemd/network/50-sealgate.network"))
			if !tc.ok {
				if err == nil {
					t.Fatalf("accepted a configuration whose ruleset does not load:\n%s", out)
				}
				if nerr == nil {
					t.Fatalf("forwarding configured although the ruleset failed:\n%s", network)
				}
				return
			}
			if err != nil {
				t.Fatalf("%v:\n%s", err, out)
			}
			if !strings.Contains(string(network), "IPForward=yes") {
				t.Fatalf("network file: %q", network)
			}
			if check, err := exec.Command("nft", "-c", "-f", filepath.Join(root, "etc/nftables.conf")).CombinedOutput(); err != nil {
				t.Fatalf("the written ruleset does not load: %v\n%s", err, check)
			}
		})
	}
}
