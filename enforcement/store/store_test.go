package store_test

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"sealgate/enforcement/store"
	"sealgate/enforcement/store/storetest"
)

func TestBolt(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Opener {
		path := filepath.Join(t.TempDir(), "state", "sealgate.db")
		return func() (store.Store, error) { return store.OpenBolt(path) }
	})
}

func TestBoltLockedByAnotherOpener(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sealgate.db")
	b, err := store.OpenBolt(path)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if second, err := store.OpenBolt(path); err == nil {
		second.Close()
		t.Fatal("a second OpenBolt of a file in use succeeded")
	}
}

func TestRedis(t *testing.T) {
	url := storetest.StartRedis(t)
	admin := redisClient(t, url)
	storetest.Run(t, func(t *testing.T) storetest.Opener {
		if err := admin.FlushAll(context.Background()).Err(); err != nil {
			t.Fatalf("FLUSHALL: %v", err)
		}
		return func() (store.Store, error) { return store.OpenRedis(url) }
	})
}

func redisClient(t *testing.T, url string) *redis.Client {
	t.Helper()
	opts, err := redis.ParseURL(url)
	if err != nil {
		t.Fatal(err)
	}
	c := redis.NewClient(opts)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func TestRedisKeysAndTTL(t *testing.T) {
	url := storetest.StartRedis(t)
	admin := redisClient(t, url)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	r, err := store.OpenRedisWith(url, store.RedisOptions{Grace: time.Hour, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx := context.Background()

	tests := []struct {
		name    string
		domain  string
		expires time.Time
		wantTTL time.Duration // 0: no TTL
	}{
		{name: "TTL is ExpiresAt plus grace", domain: "a.test", expires: now.Add(24 * time.Hour), wantTTL: 25 * time.Hour},
		{name: "expired within grace", domain: "b.test", expires: now.Add(-30 * time.Minute), wantTTL: 30 * time.Minute},
		{name: "no expiry, no TTL", domain: "c.test"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := &store.CachedPolicy{Domain: tc.domain, ID: "1", Policy: "x", FetchedAt: now, ExpiresAt: tc.expires}
			if err := r.PutPolicy(ctx, p); err != nil {
				t.Fatal(err)
			}
			key := "sealgate:mtasts:policy:" + tc.domain
			ttl, err := admin.TTL(ctx, key).Result()
			if err != nil {
				t.Fatal(err)
			}
			if tc.wantTTL == 0 {
				if ttl != -1 {
					t.Fatalf("TTL of %s = %v, want none", key, ttl)
				}
				return
			}
			if ttl > tc.wantTTL || ttl < tc.wantTTL-5*time.Second {
				t.Fatalf("TTL of %s = %v, want about %v", key, ttl, tc.wantTTL)
			}
		})
	}

	if err := r.IncrCounter(ctx, "day/example.test", "success", 2); err != nil {
		t.Fatal(err)
	}
	got, err := admin.HGetAll(ctx, "sealgate:counters:day/example.test").Result()
	if want := map[string]string{"success": "2"}; err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("counter hash = %v, %v; want %v", got, err, want)
	}
}

// A key whose TTL ran out is gone: dead domains do not pile up.
func TestRedisExpiredKeyDisappears(t *testing.T) {
	url := storetest.StartRedis(t)
	r, err := store.OpenRedis(url)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	ctx := context.Background()
	long := time.Now().Add(-10 * store.PruneGrace)
	p := &store.CachedPolicy{Domain: "dead.test", ID: "1", Policy: "x", FetchedAt: long, ExpiresAt: long}
	if err := r.PutPolicy(ctx, p); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := r.GetPolicy(ctx, "dead.test")
		if errors.Is(err, store.ErrNotFound) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("long-expired entry still there after 5 s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Two replicas on one Redis see each other's writes and add up counters.
func TestRedisReplicas(t *testing.T) {
	url := storetest.StartRedis(t)
	ctx := context.Background()
	var replicas []store.Store
	for range 2 {
		r, err := store.OpenRedis(url)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		replicas = append(replicas, r)
	}
	p := &store.CachedPolicy{Domain: "example.test", ID: "1", Policy: "x", FetchedAt: time.Now(), ExpiresAt: time.Now().Add(time.Hour)}
	if err := replicas[0].PutPolicy(ctx, p); err != nil {
		t.Fatal(err)
	}
	if got, err := replicas[1].GetPolicy(ctx, "example.test"); err != nil || got.ID != "1" {
		t.Fatalf("other replica read %+v, %v", got, err)
	}
	var wg sync.WaitGroup
	for _, r := range replicas {
		wg.Go(func() {
			for range 100 {
				if err := r.IncrCounter(ctx, "b", "n", 1); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	took, err := replicas[1].TakeCounters(ctx, "b")
	if err != nil || took["n"] != 200 {
		t.Fatalf("TakeCounters = %v, %v; want n=200", took, err)
	}
}

func TestRedisBadURL(t *testing.T) {
	if _, err := store.OpenRedis("http://127.0.0.1:1"); err == nil {
		t.Fatal("OpenRedis accepted an http URL")
	}
}
