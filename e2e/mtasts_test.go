package e2e

import (
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/miekg/dns"

	"sealgate/certs/certstest"
	"sealgate/enforcement/dane"
	"sealgate/enforcement/store/storetest"
	"sealgate/upstream/upstreamtest"
)

// stsHost is a fake https://mta-sts.<domain>/ on <ip>:443.
type stsHost struct {
	mu     sync.Mutex
	policy string
	hits   atomic.Int32
	srv    *http.Server
	l      net.Listener
}

// sts publishes an MTA-STS policy for domain: TXT record with id, and the
// policy host with a certificate of the world's WebPKI.
func (w *world) sts(domain, id, policy string) *stsHost {
	w.t.Helper()
	return w.stsWithCert(domain, id, policy, w.ca.Leaf("mta-sts."+domain))
}

// stsWithCert is sts with the policy host presenting cert.
func (w *world) stsWithCert(domain, id, policy string, cert tls.Certificate) *stsHost {
	w.t.Helper()
	ip := w.host("mta-sts." + domain)
	w.stsID(domain, id)
	l, err := tls.Listen("tcp", ip+":443", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		w.t.Fatalf("binding %s:443 (needs root): %v", ip, err)
	}
	h := &stsHost{policy: policy, l: l}
	h.srv = &http.Server{Handler: http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		h.hits.Add(1)
		if r.URL.Path != "/.well-known/mta-sts.txt" || r.Host != "mta-sts."+domain {
			http.NotFound(rw, r)
			return
		}
		h.mu.Lock()
		defer h.mu.Unlock()
		rw.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(rw, h.policy)
	})}
	go h.srv.Serve(l)
	w.t.Cleanup(h.down)
	return h
}

func (w *world) stsID(domain, id string) {
	w.dns.Remove("_mta-sts."+domain+".", dns.TypeTXT)
	if id != "" {
		w.dns.Add(fmt.Sprintf(`_mta-sts.%s. 300 IN TXT "v=STSv1; id=%s;"`, domain, id))
	}
}

func (h *stsHost) set(policy string) {
	h.mu.Lock()
	h.policy = policy
	h.mu.Unlock()
}

func (h *stsHost) down() { h.srv.Close() }

func enforce(mx ...string) string {
	p := "version: STSv1\r\nmode: enforce\r\nmax_age: 86400\r\n"
	for _, m := range mx {
		p += "mx: " + m + "\r\n"
	}
	return p
}

func TestMTASTSEnforce(t *testing.T) {
	w := newWorld(t)
	good := w.mx("good.test", "mx.good.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx.good.test")})
	w.sts("good.test", "1", enforce("*.good.test"))

	self := certstest.SelfSigned(t, "mx.self.test")
	bad := w.mx("self.test", "mx.self.test", 10, upstreamtest.MXOptions{Certificate: &self})
	w.sts("self.test", "1", enforce("mx.self.test"))

	// outside.test: mx1 is not in the policy, mx2 is.
	outside := w.mx("outside.test", "mx1.outside.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx1.outside.test")})
	inside := w.mx("outside.test", "mx2.outside.test", 20, upstreamtest.MXOptions{Certificate: w.cert("mx2.outside.test")})
	w.sts("outside.test", "1", enforce("mx2.outside.test"))

	nomatch := w.mx("nomatch.test", "mx.nomatch.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx.nomatch.test")})
	w.sts("nomatch.test", "1", enforce("mail.nomatch.test"))

	g := w.start(nil)
	t.Run("valid certificate delivers", func(t *testing.T) {
		res := g.send("a@legacy.sealgate.test", []string{"b@good.test"}, message("x"))
		if res.Rcpt[0] != nil || res.Data != nil {
			t.Fatalf("%+v", res)
		}
		if len(good.Messages()) != 1 {
			t.Fatal("no message at the MX")
		}
		if !strings.Contains(g.logs.String(), `policy="MTA-STS enforce"`) {
			t.Error("delivery log does not name the MTA-STS policy")
		}
	})
	t.Run("self-signed defers", func(t *testing.T) {
		res := g.send("a@legacy.sealgate.test", []string{"b@self.test"}, message("x"))
		wantReply(t, "RCPT", res.Rcpt[0], 451, "4.7.5", "self.test: MTA-STS enforce: mx.self.test")
		if bad.SawMailFrom() {
			t.Fatal("MX with an invalid certificate saw MAIL FROM")
		}
	})
	t.Run("MX outside the policy never gets a connection", func(t *testing.T) {
		res := g.send("a@legacy.sealgate.test", []string{"b@outside.test"}, message("x"))
		if res.Rcpt[0] != nil || res.Data != nil {
			t.Fatalf("%+v", res)
		}
		if outside.Connections() != 0 {
			t.Fatal("an MX not listed in the policy got a connection")
		}
		if len(inside.Messages()) != 1 {
			t.Fatal("the listed MX got no message")
		}
	})
	t.Run("no MX matches", func(t *testing.T) {
		res := g.send("a@legacy.sealgate.test", []string{"b@nomatch.test"}, message("x"))
		wantReply(t, "RCPT", res.Rcpt[0], 451, "4.7.5", "nomatch.test: MTA-STS enforce", "no MX host matches")
		if nomatch.Connections() != 0 {
			t.Fatal("an MX not listed in the policy got a connection")
		}
	})
}

func TestMTASTSTestingDelivers(t *testing.T) {
	w := newWorld(t)
	self := certstest.SelfSigned(t, "mx.t.test")
	mx := w.mx("t.test", "mx.t.test", 10, upstreamtest.MXOptions{Certificate: &self})
	w.sts("t.test", "1", "version: STSv1\nmode: testing\nmax_age: 600\nmx: mx.t.test\n")
	g := w.start(nil)
	res := g.send("a@legacy.sealgate.test", []string{"b@t.test"}, message("x"))
	if res.Rcpt[0] != nil || res.Data != nil {
		t.Fatalf("testing mode refused: %+v", res)
	}
	if len(mx.Messages()) != 1 {
		t.Fatal("no message")
	}
	if !strings.Contains(g.logs.String(), "testing policy failed") {
		t.Error("the failed testing policy is not logged")
	}
}

// TestMTASTSDowngradeDefence: a cached policy stays in force across a
// restart when the attacker removes the TXT record, takes the policy host
// down and presents a self-signed certificate.
func TestMTASTSDowngradeDefence(t *testing.T) {
	w := newWorld(t)
	mx := w.mx("victim.test", "mx.victim.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx.victim.test")})
	host := w.sts("victim.test", "20261123", enforce("mx.victim.test"))
	state := t.TempDir()
	g := w.start(map[string]string{"SEALGATE_STATE_DIR": state})
	if res := g.send("a@legacy.sealgate.test", []string{"b@victim.test"}, message("x")); res.Rcpt[0] != nil || res.Data != nil {
		t.Fatalf("first delivery: %+v", res)
	}
	g.stop()

	w.stsID("victim.test", "")
	host.down()
	addr := mx.Addr()
	mx.Close()
	self := certstest.SelfSigned(t, "mx.victim.test")
	evil := upstreamtest.NewMX(t, upstreamtest.MXOptions{Addr: addr, Hostname: "mx.victim.test", Certificate: &self})

	g = w.start(map[string]string{"SEALGATE_STATE_DIR": state})
	res := g.send("a@legacy.sealgate.test", []string{"b@victim.test"}, message("x"))
	wantReply(t, "RCPT", res.Rcpt[0], 451, "4.7.5", "MTA-STS enforce", "mx.victim.test")
	if evil.SawMailFrom() {
		t.Fatal("downgrade: the attacker's MX saw MAIL FROM")
	}
}

func TestMTASTSNewIDBringsNewPolicy(t *testing.T) {
	w := newWorld(t)
	mx1 := w.mx("d.test", "mx1.d.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx1.d.test")})
	mx2 := w.mx("d.test", "mx2.d.test", 20, upstreamtest.MXOptions{Certificate: w.cert("mx2.d.test")})
	host := w.sts("d.test", "1", enforce("mx2.d.test"))
	// The gateway keeps DNS answers for their TTL: the TXT record, which
	// changes below, is published with TTL 0.
	w.dns.Remove("_mta-sts.d.test.", dns.TypeTXT)
	w.dns.Add(`_mta-sts.d.test. 0 IN TXT "v=STSv1; id=1;"`)
	g := w.start(nil)
	if res := g.send("a@legacy.sealgate.test", []string{"b@d.test"}, message("x")); res.Rcpt[0] != nil || res.Data != nil {
		t.Fatalf("%+v", res)
	}
	if mx1.Connections() != 0 || len(mx2.Messages()) != 1 {
		t.Fatalf("policy 1: mx1 %d connections, mx2 %d messages", mx1.Connections(), len(mx2.Messages()))
	}
	// Same id, changed body: the cache stands.
	host.set(enforce("mx1.d.test"))
	g.send("a@legacy.sealgate.test", []string{"b@d.test"}, message("x"))
	if mx1.Connections() != 0 {
		t.Fatal("the policy was fetched again although the id did not change")
	}
	// New id: the new policy takes over.
	w.stsID("d.test", "2")
	if res := g.send("a@legacy.sealgate.test", []string{"b@d.test"}, message("x")); res.Rcpt[0] != nil || res.Data != nil {
		t.Fatalf("%+v", res)
	}
	if len(mx1.Messages()) != 1 {
		t.Fatal("the new policy (id 2) did not take over")
	}
}

func TestDANEWinsOverMTASTS(t *testing.T) {
	w := newWorld(t)
	self := certstest.SelfSigned(t, "mx.both.test")
	mx := w.mx("both.test", "mx.both.test", 10, upstreamtest.MXOptions{Certificate: &self})
	w.dns.Add(tlsaLine("mx.both.test", dane.Expect(self.Leaf, 3, 1, 1)))
	w.dns.SetSecureZone("both.test.", true)
	// The MTA-STS policy would refuse the self-signed certificate.
	w.sts("both.test", "1", enforce("mx.both.test"))
	g := w.start(nil)
	res := g.send("a@legacy.sealgate.test", []string{"b@both.test"}, message("x"))
	if res.Rcpt[0] != nil || res.Data != nil {
		t.Fatalf("DANE did not take precedence: %+v", res)
	}
	if len(mx.Messages()) != 1 || !strings.Contains(g.logs.String(), "policy=DANE") {
		t.Fatal("not delivered under DANE")
	}
}

// TestMTASTSSharedRedisCache: two replicas share the policy cache in a real
// Redis.
func TestMTASTSSharedRedisCache(t *testing.T) {
	w := newWorld(t)
	url := storetest.StartRedis(t)
	mx := w.mx("r.test", "mx.r.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx.r.test")})
	host := w.sts("r.test", "7", enforce("mx.r.test"))
	first := w.start(map[string]string{"SEALGATE_REDIS_URL": url})
	if res := first.send("a@legacy.sealgate.test", []string{"b@r.test"}, message("x")); res.Rcpt[0] != nil || res.Data != nil {
		t.Fatalf("%+v", res)
	}
	w.stsID("r.test", "")
	host.down()
	addr := mx.Addr()
	mx.Close()
	self := certstest.SelfSigned(t, "mx.r.test")
	evil := upstreamtest.NewMX(t, upstreamtest.MXOptions{Addr: addr, Hostname: "mx.r.test", Certificate: &self})
	second := w.start(map[string]string{"SEALGATE_REDIS_URL": url, "SEALGATE_STATE_DIR": t.TempDir()})
	res := second.send("a@legacy.sealgate.test", []string{"b@r.test"}, message("x"))
	wantReply(t, "RCPT", res.Rcpt[0], 451, "4.7.5", "MTA-STS enforce")
	if evil.SawMailFrom() {
		t.Fatal("the second replica did not use the shared policy")
	}
}

func TestMTASTSCommands(t *testing.T) {
	w := newWorld(t)
	w.mx("c.test", "mx.c.test", 10, upstreamtest.MXOptions{Certificate: w.cert("mx.c.test")})
	w.sts("c.test", "42", enforce("mx.c.test"))
	state := t.TempDir()
	env := map[string]string{"SEALGATE_STATE_DIR": state, "SEALGATE_ADMIN_LISTEN": freeAddr(t)}
	g := w.start(env)
	cli := func(args ...string) (string, error) {
		cmd := exec.Command(binPath, append([]string{"mtasts"}, args...)...)
		cmd.Env = envList(map[string]string{"SEALGATE_STATE_DIR": state, "SEALGATE_ADMIN_LISTEN": env["SEALGATE_ADMIN_LISTEN"],
			"SEALGATE_DNS_RESOLVER": w.dns.Addr(), "SSL_CERT_FILE": w.caFile, "SEALGATE_HOSTNAME": "gw.sealgate.test"})
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := cli("refresh", "c.test"); err != nil || !strings.Contains(out, "id:         42") {
		t.Fatalf("refresh through the running gateway: %v\n%s", err, out)
	}
	if out, err := cli("list"); err != nil || !strings.Contains(out, "c.test") || !strings.Contains(out, "enforce") {
		t.Fatalf("list: %v\n%s", err, out)
	}
	if out, err := cli("show", "c.test"); err != nil || !strings.Contains(out, "mx: mx.c.test") {
		t.Fatalf("show: %v\n%s", err, out)
	}
	if out, err := cli("purge", "c.test"); err != nil || !strings.Contains(out, "purged c.test") {
		t.Fatalf("purge: %v\n%s", err, out)
	}
	if out, err := cli("show", "c.test"); err == nil {
		t.Fatalf("show after purge succeeded:\n%s", out)
	}
	// With the gateway stopped, the commands use the store directly.
	g.stop()
	if out, err := cli("refresh", "c.test"); err != nil || !strings.Contains(out, "id:         42") {
		t.Fatalf("offline refresh: %v\n%s", err, out)
	}
	if out, err := cli("list"); err != nil || !strings.Contains(out, "c.test") {
		t.Fatalf("offline list: %v\n%s", err, out)
	}
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}
