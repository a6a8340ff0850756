package storetest

import (
	"context"
	"errors"
	"reflect"
	"sync"
	"testing"
	"time"

	"sealgate/enforcement/store"
)

// testAddCounters: a batch adds to what IncrCounter counted, zero deltas
// create nothing, and concurrent batches lose no increment.
func testAddCounters(t *testing.T, open Opener) {
	s := mustOpen(t, open)
	ctx := context.Background()
	const bucket = "tlsrpt/2026-03-01/example.test"
	if err := s.IncrCounter(ctx, bucket, "a", 2); err != nil {
		t.Fatal(err)
	}
	if err := s.AddCounters(ctx, bucket, map[string]int64{"a": 3, "b": 1, "zero": 0}); err != nil {
		t.Fatalf("AddCounters: %v", err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				if err := s.AddCounters(ctx, bucket, map[string]int64{"b": 1, "c": 2}); err != nil {
					t.Errorf("AddCounters: %v", err)
					return
				}
			}
		}()
	}
	wg.Wait()
	want := map[string]int64{"a": 5, "b": 81, "c": 160}
	if m, err := s.Counters(ctx, bucket); err != nil || !reflect.DeepEqual(m, want) {
		t.Fatalf("Counters = %v, %v; want %v", m, err, want)
	}
	if err := s.AddCounters(ctx, "empty", nil); err != nil {
		t.Fatalf("AddCounters(nil): %v", err)
	}
	if b, _ := s.CounterBuckets(ctx); !reflect.DeepEqual(b, []string{bucket}) {
		t.Fatalf("CounterBuckets = %v; an empty batch created a bucket", b)
	}
	for _, bad := range []struct {
		name   string
		bucket string
		deltas map[string]int64
	}{
		{name: "empty bucket", bucket: "", deltas: map[string]int64{"a": 1}},
		{name: "empty field", bucket: bucket, deltas: map[string]int64{"": 1}},
	} {
		if err := s.AddCounters(ctx, bad.bucket, bad.deltas); !errors.Is(err, store.ErrInvalid) {
			t.Errorf("%s: AddCounters = %v; want ErrInvalid", bad.name, err)
		}
	}
}

// testLock: one owner at a time, renewal by the owner, release only by
// the owner, and a lock free again after its time.
func testLock(t *testing.T, open Opener) {
	s := mustOpen(t, open)
	ctx := context.Background()
	steps := []struct {
		name  string
		do    func() (bool, error)
		want  bool
		sleep time.Duration
	}{
		{name: "a takes", do: func() (bool, error) { return s.TryLock(ctx, "send", "a", time.Minute) }, want: true},
		{name: "b refused", do: func() (bool, error) { return s.TryLock(ctx, "send", "b", time.Minute) }, want: false},
		{name: "a renews", do: func() (bool, error) { return s.TryLock(ctx, "send", "a", time.Minute) }, want: true},
		{name: "other lock free", do: func() (bool, error) { return s.TryLock(ctx, "other", "b", time.Minute) }, want: true},
		{name: "b cannot unlock a's", do: func() (bool, error) {
			return s.TryLock(ctx, "send", "b", time.Minute)
		}, want: false},
		{name: "a unlocks, b takes", do: func() (bool, error) {
			if err := s.Unlock(ctx, "send", "a"); err != nil {
				return false, err
			}
			return s.TryLock(ctx, "send", "b", 300*time.Millisecond)
		}, want: true, sleep: 700 * time.Millisecond},
		{name: "expired: a takes", do: func() (bool, error) { return s.TryLock(ctx, "send", "a", time.Minute) }, want: true},
	}
	if err := s.Unlock(ctx, "send", "nobody"); err != nil {
		t.Fatalf("Unlock of a free lock: %v", err)
	}
	for _, st := range steps {
		got, err := st.do()
		if err != nil || got != st.want {
			t.Fatalf("%s: got %t, %v; want %t", st.name, got, err, st.want)
		}
		if st.name == "b cannot unlock a's" {
			if err := s.Unlock(ctx, "send", "b"); err != nil {
				t.Fatal(err)
			}
			if ok, _ := s.TryLock(ctx, "send", "b", time.Minute); ok {
				t.Fatal("Unlock by a non-owner released the lock")
			}
		}
		time.Sleep(st.sleep)
	}
	if _, err := s.TryLock(ctx, "", "a", time.Minute); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("TryLock without name = %v; want ErrInvalid", err)
	}
	if _, err := s.TryLock(ctx, "x", "", time.Minute); !errors.Is(err, store.ErrInvalid) {
		t.Errorf("TryLock without owner = %v; want ErrInvalid", err)
	}
}

// testLockRestart: a held lock is still held after the store reopens.
func testLockRestart(t *testing.T, open Opener) {
	ctx := context.Background()
	s, err := open()
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := s.TryLock(ctx, "send", "a", time.Minute); !ok || err != nil {
		t.Fatalf("TryLock = %t, %v", ok, err)
	}
	s.Close()
	s = mustOpen(t, open)
	if ok, err := s.TryLock(ctx, "send", "b", time.Minute); ok || err != nil {
		t.Fatalf("TryLock by b after restart = %t, %v; want false", ok, err)
	}
}
