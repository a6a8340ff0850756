package e2e

import (
	"bytes"
	"context"
	"crypto/tls"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"sealgate/certs/certstest"
	"sealgate/enforcement/dane"
	"sealgate/upstream/upstreamtest"
)

var updateScreenshot = flag.Bool("statuspage.update", false, "copy TestStatusPageInBrowser's screenshot to docs/status-page.png")

// chromium runs headless Chromium from Debian's packages with args and
// the page at url, and returns its standard output. Everything that could
// reach beyond loopback (updates, sync, QUIC, background fetches) is off.
func chromium(t *testing.T, url string, args ...string) []byte {
	t.Helper()
	bin, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("chromium (Debian package chromium, installed by make deps) is needed: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	home := t.TempDir()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--user-data-dir=" + filepath.Join(home, "profile")}
	cmd := exec.CommandContext(ctx, bin, append(append(base, args...), url)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return out
}

// domText is the text a reader sees in a DOM dump: the tags and titles
// removed, entities decoded, white space folded.
func domText(dom string) string {
	dom = regexp.MustCompile(`(?s)<title>.*?</title>|<style>.*?</style>`).ReplaceAllString(dom, " ")
	dom = regexp.MustCompile(`<[^>]*>`).ReplaceAllString(dom, " ")
	for _, r := range [][2]string{{"&lt;", "<"}, {"&gt;", ">"}, {"&quot;", `"`}, {"&#39;", "'"}, {"&nbsp;", " "}, {"&amp;", "&"}} {
		dom = strings.ReplaceAll(dom, r[0], r[1])
	}
	return strings.Join(strings.Fields(dom), " ")
}

// TestStatusPageInBrowser: after deliveries under DANE, the floor and
// the local policy, and deferrals (an MX without STARTTLS, an MX's 4xx
// with markup in its text), headless Chromium renders the admin
// listener's status page: the domains in trouble first with their
// reasons and replies, the deliveries by source and TLS version, the
// markup shown as text. Its screenshot is kept in the test's artifact
// directory.
func TestStatusPageInBrowser(t *testing.T) {
	w := newWorld(t)
	daneCert := certstest.SelfSigned(t, "mx.dane.test")
	w.mx("dane.test", "mx.dane.test", 10, upstreamtest.MXOptions{Certificate: &daneCert})
	w.dns.Add(tlsaLine("mx.dane.test", dane.Expect(daneCert.Leaf, 3, 1, 1)))
	w.dns.SetSecureZone("dane.test.", true)
	w.mx("floor.test", "mx.floor.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx.floor.test"), MaxVersion: tls.VersionTLS12})
	w.mx("local.test", "mx.local.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx.local.test")})
	w.mx("plain.test", "mx.plain.test", 10, upstreamtest.MXOptions{})
	const busyText = `<b>"busy"</b> try later`
	w.mx("busy.test", "mx.busy.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx.busy.test"),
		RcptReply: &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 2, 1}, Message: busyText}})
	g := w.start(map[string]string{"SEALGATE_POLICY_FILE": writePolicy(t, "local.test secure")})

	deliver := func(rcpt string) {
		t.Helper()
		if res := g.send("a@legacy.sealgate.test", []string{rcpt}, message("status")); res.Rcpt[0] != nil || res.Data != nil {
			t.Fatalf("%s not delivered: %+v", rcpt, res)
		}
	}
	deliver("a@dane.test")
	deliver("b@dane.test")
	deliver("a@floor.test")
	deliver("a@local.test")
	for range 3 {
		res := g.send("a@legacy.sealgate.test", []string{"a@plain.test"}, message("status"))
		wantReply(t, "RCPT", res.Rcpt[0], 451, "4.7.4", "plain.test")
	}
	res := g.send("a@legacy.sealgate.test", []string{"a@busy.test"}, message("status"))
	wantReply(t, "RCPT", res.Rcpt[0], 450, "4.2.1", "busy")

	url := "http://" + g.adminAddr() + "/"
	dom := string(chromium(t, url, "--dump-dom"))
	if strings.Contains(dom, "<b>") || strings.Contains(strings.ToLower(dom), "<script") {
		t.Errorf("the page holds markup from a reply, or a script:\n%s", dom)
	}
	text := domText(dom)
	for _, want := range []string{
		"sealgate status", "Replica gw.sealgate.test", "this replica only",
		"Delivered: 4", "Deferred: 4", "Domains: 5",
		"plain.test 3 3 × starttls (STARTTLS not offered or refused)",
		"451 4.7.4 plain.test: floor encrypt: mx.plain.test: STARTTLS not offered",
		`busy.test 1 1 × mx (the MX replied 4xx)`,
		`450 4.2.1 ` + busyText,
		"dane.test 0 2 2 × DANE, TLS 1.3 none yes",
		"floor.test 0 1 1 × floor, TLS 1.2 none no",
		"local.test 0 1 1 × local policy, TLS 1.3 none no",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("rendered page lacks %q:\n%s", want, text)
		}
	}
	order := []string{"plain.test 3", "busy.test 1", "dane.test 0", "floor.test 0"}
	for i := 1; i < len(order); i++ {
		if a, b := strings.Index(text, order[i-1]), strings.Index(text, order[i]); a < 0 || b < 0 || a > b {
			t.Errorf("%q is not before %q:\n%s", order[i-1], order[i], text)
		}
	}

	shot := filepath.Join(t.ArtifactDir(), "status-page.png")
	chromium(t, url, "--hide-scrollbars", "--window-size=1280,900", "--screenshot="+shot)
	png, err := os.ReadFile(shot)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG\r\n\x1a\n")) || len(png) < 10000 {
		t.Fatalf("screenshot %s is no PNG of a page (%d bytes)", shot, len(png))
	}
	t.Logf("screenshot: %s", shot)
	if *updateScreenshot {
		if err := os.WriteFile(filepath.Join("..", "docs", "status-page.png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
