package store

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

func (r *Redis) lockKey(name string) string { return r.prefix + "lock:" + name }

// AddCounters implements Store with HINCRBY in one MULTI.
func (r *Redis) AddCounters(ctx context.Context, bucket string, deltas map[string]int64) error {
	for f := range deltas {
		if err := checkCounterKey(bucket, f); err != nil {
			return err
		}
	}
	if len(deltas) == 0 {
		return nil
	}
	key := r.counterKey(bucket)
	_, err := r.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		for f, d := range deltas {
			if d != 0 {
				p.HIncrBy(ctx, key, f, d)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: redis: %w", err)
	}
	return nil
}

// tryLock sets the lock when it is free, or extends it for its owner.
var tryLock = redis.NewScript(`
local cur = redis.call("GET", KEYS[1])
if cur == false then
  redis.call("SET", KEYS[1], ARGV[1], "PX", ARGV[2])
  return 1
end
if cur == ARGV[1] then
  redis.call("PEXPIRE", KEYS[1], ARGV[2])
  return 1
end
return 0
`)

var unlock = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
  return redis.call("DEL", KEYS[1])
end
return 0
`)

// TryLock implements Store with a key that expires after ttl.
func (r *Redis) TryLock(ctx context.Context, name, owner string, ttl time.Duration) (bool, error) {
	if err := checkLock(name, owner); err != nil {
		return false, err
	}
	ms := ttl.Milliseconds()
	if ms < 1 {
		ms = 1
	}
	n, err := tryLock.Run(ctx, r.client, []string{r.lockKey(name)}, owner, ms).Int()
	if err != nil {
		return false, fmt.Errorf("store: redis: %w", err)
	}
	return n == 1, nil
}

// Unlock implements Store.
func (r *Redis) Unlock(ctx context.Context, name, owner string) error {
	if err := checkLock(name, owner); err != nil {
		return err
	}
	if err := unlock.Run(ctx, r.client, []string{r.lockKey(name)}, owner).Err(); err != nil {
		return fmt.Errorf("store: redis: %w", err)
	}
	return nil
}
