package upstream

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"

	"sealgate/enforcement"
)

// TestOpenTriesAtMostTenAddresses: a route with many hosts and addresses
// costs at most maxAttempts connection attempts, then fails with the
// most telling cause.
func TestOpenTriesAtMostTenAddresses(t *testing.T) {
	var dials atomic.Int32
	d := deliverer(nil)
	d.Dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
		dials.Add(1)
		return nil, errors.New("connection refused")
	}
	r := route("example.test")
	for _, name := range []string{"mx1.example.test", "mx2.example.test", "mx3.example.test"} {
		h := enforcement.Host{Name: name, Req: enforcement.Requirement{Source: enforcement.SourceFloor, Level: enforcement.LevelEncrypt}}
		for i := range 5 {
			h.Addrs = append(h.Addrs, netip.AddrFrom4([4]byte{127, 0, 0, byte(10 + i)}))
		}
		r.Hosts = append(r.Hosts, h)
	}
	_, err := d.Open(context.Background(), r)
	if f, ok := enforcement.AsFailure(err); !ok || f.Kind != enforcement.KindUnreachable {
		t.Fatalf("Open = %v, want an unreachable failure", err)
	}
	if got := dials.Load(); got != maxAttempts {
		t.Errorf("%d connection attempts, want %d", got, maxAttempts)
	}
}
