package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Bolt is a Store in one bbolt file, for a single instance. Values are
// JSON (policies) and 8-byte big-endian integers (counters).
type Bolt struct {
	db *bolt.DB
}

var _ Store = (*Bolt)(nil)

var (
	policyBucket  = []byte("mtasts-policies")
	counterBucket = []byte("counters")
	lockBucket    = []byte("locks")
)

// boltLockTimeout bounds the wait for the file lock held by another
// process using the same file.
const boltLockTimeout = time.Second

// OpenBolt opens (creating if needed) the bbolt file at path; its directory
// is created with mode 0700. A file in use by another process is an error
// after about a second.
func OpenBolt(path string) (*Bolt, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: boltLockTimeout})
	if err != nil {
		return nil, fmt.Errorf("store: opening %s: %w", path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{policyBucket, counterBucket, lockBucket} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("store: initialising %s: %w", path, err)
	}
	return &Bolt{db: db}, nil
}

// GetPolicy implements Store.
func (b *Bolt) GetPolicy(ctx context.Context, domain string) (*CachedPolicy, error) {
	d, err := checkDomain(domain)
	if err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var p *CachedPolicy
	err = b.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(policyBucket).Get([]byte(d))
		if v == nil {
			return fmt.Errorf("policy for %s: %w", d, ErrNotFound)
		}
		p, err = decodePolicy(v)
		return err
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// PutPolicy implements Store.
func (b *Bolt) PutPolicy(ctx context.Context, p *CachedPolicy) error {
	c, err := normalizePolicy(p)
	if err != nil {
		return err
	}
	v, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return b.update(func(tx *bolt.Tx) error {
		return tx.Bucket(policyBucket).Put([]byte(c.Domain), v)
	})
}

// DeletePolicy implements Store.
func (b *Bolt) DeletePolicy(ctx context.Context, domain string) error {
	d, err := checkDomain(domain)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return b.update(func(tx *bolt.Tx) error {
		return tx.Bucket(policyBucket).Delete([]byte(d))
	})
}

// ListPolicies implements Store; bbolt keeps keys sorted.
func (b *Bolt) ListPolicies(ctx context.Context) ([]*CachedPolicy, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var list []*CachedPolicy
	err := b.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(policyBucket).ForEach(func(_, v []byte) error {
			p, err := decodePolicy(v)
			if err != nil {
				return err
			}
			list = append(list, p)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return list, nil
}

// PrunePolicies implements Store in one transaction.
func (b *Bolt) PrunePolicies(ctx context.Context, cutoff time.Time) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	n := 0
	err := b.update(func(tx *bolt.Tx) error {
		bk := tx.Bucket(policyBucket)
		var dead [][]byte
		err := bk.ForEach(func(k, v []byte) error {
			p, err := decodePolicy(v)
			if err != nil {
				return err
			}
			if !p.ExpiresAt.IsZero() && p.ExpiresAt.Before(cutoff) {
				dead = append(dead, k)
			}
			return nil
		})
		if err != nil {
			return err
		}
		for _, k := range dead {
			if err := bk.Delete(k); err != nil {
				return err
			}
		}
		n = len(dead)
		return nil
	})
	return n, err
}

// IncrCounter implements Store.
func (b *Bolt) IncrCounter(ctx context.Context, bucket, field string, delta int64) error {
	if err := checkCounterKey(bucket, field); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	return b.update(func(tx *bolt.Tx) error {
		bk, err := tx.Bucket(counterBucket).CreateBucketIfNotExists([]byte(bucket))
		if err != nil {
			return err
		}
		var cur int64
		if v := bk.Get([]byte(field)); len(v) == 8 {
			cur = int64(binary.BigEndian.Uint64(v))
		}
		return bk.Put([]byte(field), binary.BigEndian.AppendUint64(nil, uint64(cur+delta)))
	})
}

// Counters implements Store.
func (b *Bolt) Counters(ctx context.Context, bucket string) (map[string]int64, error) {
	return b.counters(ctx, bucket, false)
}

// TakeCounters implements Store in one transaction.
func (b *Bolt) TakeCounters(ctx context.Context, bucket string) (map[string]int64, error) {
	return b.counters(ctx, bucket, true)
}

func (b *Bolt) counters(ctx context.Context, bucket string, take bool) (map[string]int64, error) {
	if bucket == "" {
		return nil, fmt.Errorf("%w: empty counter bucket", ErrInvalid)
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m := map[string]int64{}
	read := func(tx *bolt.Tx) error {
		bk := tx.Bucket(counterBucket).Bucket([]byte(bucket))
		if bk == nil {
			return nil
		}
		err := bk.ForEach(func(k, v []byte) error {
			if len(v) != 8 {
				return fmt.Errorf("store: counter %s/%s has %d bytes", bucket, k, len(v))
			}
			m[string(k)] = int64(binary.BigEndian.Uint64(v))
			return nil
		})
		if err != nil || !take {
			return err
		}
		return tx.Bucket(counterBucket).DeleteBucket([]byte(bucket))
	}
	var err error
	if take {
		err = b.update(read)
	} else {
		err = b.db.View(read)
	}
	if err != nil {
		return nil, err
	}
	return m, nil
}

// CounterBuckets implements Store.
func (b *Bolt) CounterBuckets(ctx context.Context) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	var names []string
	err := b.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(counterBucket).ForEachBucket(func(k []byte) error {
			names = append(names, string(k))
			return nil
		})
	})
	return names, err
}

// Ping implements Store: it runs an empty read transaction.
func (b *Bolt) Ping(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return b.db.View(func(*bolt.Tx) error { return nil })
}

// Close implements Store.
func (b *Bolt) Close() error { return b.db.Close() }

func (b *Bolt) update(fn func(*bolt.Tx) error) error {
	if err := b.db.Update(fn); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

func decodePolicy(v []byte) (*CachedPolicy, error) {
	var p CachedPolicy
	if err := json.Unmarshal(v, &p); err != nil {
		return nil, fmt.Errorf("store: decoding policy: %w", err)
	}
	return &p, nil
}
