package mtasts

import (
	"context"
	"errors"
	"testing"

	"sealgate/enforcement/store"
)

// refusingStore refuses writes and serves reads (Redis at maxmemory with
// noeviction, a full disk).
type refusingStore struct{ store.Store }

func (refusingStore) PutPolicy(context.Context, *store.CachedPolicy) error {
	return errors.New("OOM command not allowed when used memory > 'maxmemory'")
}

// TestManagerStoreWriteFailureDefers: a policy that was fetched but could
// not be stored is an error (the message is deferred), never "no policy",
// and is not remembered as the domain's failure.
func TestManagerStoreWriteFailureDefers(t *testing.T) {
	m, n, _, st := newManager(t)
	m.Store = refusingStore{st}
	n.set("example.test", "1", enforceBody)
	ctx := context.Background()
	for i := range 2 {
		l, err := m.Policy(ctx, "example.test")
		if !errors.Is(err, ErrStore) {
			t.Fatalf("try %d: got %+v, %v; want ErrStore", i, l, err)
		}
	}
	if n.fetches.Load() != 2 {
		t.Fatalf("%d fetches, want 2: a store failure must not be remembered as the domain's", n.fetches.Load())
	}
}
