package upstream

import (
	"context"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"sealgate/certs/certstest"
	"sealgate/enforcement"
	"sealgate/upstream/upstreamtest"
)

// TestOpenREQUIRETLS: a route for a REQUIRETLS message skips, with QUIT,
// an MX that does not advertise REQUIRETLS after STARTTLS and tries the
// next (RFC 8689 §4.2.1); only when no MX advertises it is the answer
// 550 5.7.30.
func TestOpenREQUIRETLS(t *testing.T) {
	self := certstest.SelfSigned(t, "mx.example.test")
	without := upstreamtest.MXOptions{Certificate: &self}
	with := upstreamtest.MXOptions{Certificate: &self, Extensions: upstreamtest.Extensions{REQUIRETLS: true}}
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadAddr := dead.Addr().String()
	dead.Close()
	tests := []struct {
		name     string
		mxs      []*upstreamtest.MXOptions // nil: an address nobody listens on
		flag     bool                      // Route.REQUIRETLS
		wantHost int                       // index of the host Open picks
		wantKind enforcement.Kind          // when Open fails
		wantText []string
	}{
		{name: "first MX without REQUIRETLS is skipped", mxs: []*upstreamtest.MXOptions{&without, &with}, flag: true, wantHost: 1},
		{name: "first MX with REQUIRETLS is used", mxs: []*upstreamtest.MXOptions{&with, &without}, flag: true, wantHost: 0},
		{name: "no MX with REQUIRETLS", mxs: []*upstreamtest.MXOptions{&without, &without}, flag: true, wantKind: enforcement.KindRequireTLS,
			wantText: []string{"example.test: ", "REQUIRETLS", "mx0.example.test", "mx1.example.test"}},
		{name: "one without, one unreachable: try again later", mxs: []*upstreamtest.MXOptions{&without, nil}, flag: true, wantKind: enforcement.KindUnreachable},
		{name: "no REQUIRETLS message: the first MX", mxs: []*upstreamtest.MXOptions{&without, &with}, wantHost: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := route("example.test")
			r.REQUIRETLS = tc.flag
			var mxs []*upstreamtest.MX
			for i, o := range tc.mxs {
				name := "mx" + string(rune('0'+i)) + ".example.test"
				addr := deadAddr
				if o != nil {
					opts := *o
					opts.Hostname = name
					mx := upstreamtest.NewMX(t, opts)
					mxs = append(mxs, mx)
					addr = mx.Addr()
				} else {
					mxs = append(mxs, nil)
				}
				r.Hosts = append(r.Hosts, hostAt(t, name, addr, enforcement.Requirement{}))
			}
			c, err := deliverer(nil).Open(context.Background(), r)
			if tc.wantKind != 0 {
				f, ok := enforcement.AsFailure(err)
				if !ok || f.Kind != tc.wantKind {
					t.Fatalf("Open: %v, want a failure of kind %v", err, tc.wantKind)
				}
				for _, s := range tc.wantText {
					if !strings.Contains(f.Error(), s) {
						t.Errorf("failure %q does not say %q", f.Error(), s)
					}
				}
			} else {
				if err != nil {
					t.Fatal(err)
				}
				if c.Host.Name != r.Hosts[tc.wantHost].Name {
					t.Errorf("Open picked %s, want %s", c.Host.Name, r.Hosts[tc.wantHost].Name)
				}
				if err := c.Mail("a@example.test", &smtp.MailOptions{RequireTLS: tc.flag}); err != nil {
					t.Fatalf("MAIL: %v", err)
				}
				c.Close()
			}
			for i, mx := range mxs {
				if mx == nil || (tc.wantKind == 0 && i == tc.wantHost) {
					continue
				}
				if mx.SawMailFrom() {
					t.Errorf("%s saw MAIL FROM", r.Hosts[i].Name)
				}
				if mx.Connections() > 0 {
					waitFor(t, func() bool { return slices.Contains(mx.Commands(), "QUIT") }, r.Hosts[i].Name+" sent no QUIT")
				}
			}
		})
	}
}

// TestMailRefusesREQUIRETLSOnAnUnvettedRoute: a REQUIRETLS message never
// goes out on a route that Route.RequireTLS did not restrict.
func TestMailRefusesREQUIRETLSOnAnUnvettedRoute(t *testing.T) {
	self := certstest.SelfSigned(t, "mx.example.test")
	mx := upstreamtest.NewMX(t, upstreamtest.MXOptions{Hostname: "mx.example.test", Certificate: &self, Extensions: upstreamtest.Extensions{REQUIRETLS: true}})
	c, err := deliverer(nil).Open(context.Background(), route("example.test", hostAt(t, "mx.example.test", mx.Addr(), enforcement.Requirement{})))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	err = c.Mail("a@example.test", &smtp.MailOptions{RequireTLS: true})
	if f, ok := enforcement.AsFailure(err); !ok || f.Kind != enforcement.KindRequireTLS {
		t.Fatalf("MAIL REQUIRETLS on a floor route: %v, want a REQUIRETLS failure (550 5.7.30)", err)
	}
	if mx.SawMailFrom() {
		t.Fatal("the MX saw MAIL FROM")
	}
}

func waitFor(t *testing.T, cond func() bool, msg string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(msg)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
