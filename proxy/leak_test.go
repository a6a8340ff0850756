package proxy

import (
	"testing"
	"time"

	"sealgate/upstream/upstreamtest"
)

// TestMain fails the run if a session leaves a goroutine behind.
func TestMain(m *testing.M) {
	upstreamtest.RunWithLeakCheck(m, 3*time.Second, "sealgate/proxy.(*session)", "emersion/go-smtp.(*Conn)")
}
