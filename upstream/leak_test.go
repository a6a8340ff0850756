package upstream

import (
	"testing"
	"time"

	"sealgate/upstream/upstreamtest"
)

// TestMain fails the run if a delivery or a fake leaves a goroutine behind.
func TestMain(m *testing.M) {
	upstreamtest.RunWithLeakCheck(m, 3*time.Second, "sealgate/upstream.", "emersion/go-smtp")
}
