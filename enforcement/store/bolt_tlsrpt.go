package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// AddCounters implements Store in one transaction.
func (b *Bolt) AddCounters(ctx context.Context, bucket string, deltas map[string]int64) error {
	for f := range deltas {
		if err := checkCounterKey(bucket, f); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(deltas) == 0 {
		return nil
	}
	return b.update(func(tx *bolt.Tx) error {
		bk, err := tx.Bucket(counterBucket).CreateBucketIfNotExists([]byte(bucket))
		if err != nil {
			return err
		}
		for f, d := range deltas {
			if d == 0 {
				continue
			}
			var cur int64
			if v := bk.Get([]byte(f)); len(v) == 8 {
				cur = int64(binary.BigEndian.Uint64(v))
			}
			if err := bk.Put([]byte(f), binary.BigEndian.AppendUint64(nil, uint64(cur+d))); err != nil {
				return err
			}
		}
		return nil
	})
}

// boltLock is a lock as stored: its owner and when it ends.
type boltLock struct {
	Owner string    `json:"owner"`
	Until time.Time `json:"until"`
}

// TryLock implements Store. The file is used by one process at a time,
// so the lock matters only for the processes that take turns with it.
func (b *Bolt) TryLock(ctx context.Context, name, owner string, ttl time.Duration) (bool, error) {
	if err := checkLock(name, owner); err != nil {
		return false, err
	}
	if err := ctx.Err(); err != nil {
		return false, err
	}
	held := false
	err := b.update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(lockBucket)
		now := time.Now()
		if v := bk.Get([]byte(name)); v != nil {
			var l boltLock
			if json.Unmarshal(v, &l) == nil && l.Owner != owner && now.Before(l.Until) {
				return nil
			}
		}
		v, err := json.Marshal(boltLock{Owner: owner, Until: now.Add(ttl)})
		if err != nil {
			return err
		}
		held = true
		return bk.Put([]byte(name), v)
	})
	return held, err
}

// Unlock implements Store.
func (b *Bolt) Unlock(ctx context.Context, name, owner string) error {
	if err := checkLock(name, owner); err != nil {
		return err
	}
	return b.update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(lockBucket)
		var l boltLock
		if v := bk.Get([]byte(name)); v == nil || json.Unmarshal(v, &l) != nil || l.Owner != owner {
			return nil
		}
		return bk.Delete([]byte(name))
	})
}

func checkLock(name, owner string) error {
	if name == "" || owner == "" {
		return fmt.Errorf("%w: lock without name or owner", ErrInvalid)
	}
	return nil
}
