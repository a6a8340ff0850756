package resolver_test

import (
	"testing"
	"time"

	"sealgate/upstream/upstreamtest"
)

// TestMain fails the run if goroutines of the resolver, the fake server or
// miekg/dns outlive the tests.
func TestMain(m *testing.M) {
	upstreamtest.RunWithLeakCheck(m, 2*time.Second, "sealgate/enforcement/resolver", "github.com/miekg/dns")
}
