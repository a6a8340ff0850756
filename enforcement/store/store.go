// Package store keeps the state that sealgate replicas share: the MTA-STS
// policy cache (RFC 8461 §5.1: policies persist across restarts and are
// used while unexpired) and generic counters for TLS-RPT aggregation
// (RFC 8460 §4). Two backends implement Store: Bolt, one bbolt file in the
// state directory of a single instance, and Redis, shared by several
// replicas. Both pass the suite in package storetest.
//
// The store knows nothing of MTA-STS syntax: a CachedPolicy carries the
// policy text, which the caller parses again with package mtasts.
package store

import (
	"context"
	"errors"
	"fmt"
	"time"

	"sealgate/enforcement/dnsname"
)

// Store is the state shared by replicas. Domains are compared
// case-insensitively and without a trailing dot. Implementations are safe
// for concurrent use.
type Store interface {
	// GetPolicy returns the cached policy of domain, expired or not (the
	// caller judges ExpiresAt), or an error wrapping ErrNotFound.
	GetPolicy(ctx context.Context, domain string) (*CachedPolicy, error)
	// PutPolicy stores p, replacing any entry for p.Domain.
	PutPolicy(ctx context.Context, p *CachedPolicy) error
	// DeletePolicy removes the entry of domain; a missing one is no error.
	DeletePolicy(ctx context.Context, domain string) error
	// ListPolicies returns every cached policy, sorted by domain.
	ListPolicies(ctx context.Context) ([]*CachedPolicy, error)
	// PrunePolicies deletes the entries whose ExpiresAt is before cutoff
	// (typically now minus PruneGrace) and returns how many it deleted.
	PrunePolicies(ctx context.Context, cutoff time.Time) (int, error)

	// IncrCounter adds delta to field of the counter bucket, creating
	// both as needed.
	IncrCounter(ctx context.Context, bucket, field string, delta int64) error
	// Counters returns the fields of bucket; an empty map when absent.
	Counters(ctx context.Context, bucket string) (map[string]int64, error)
	// TakeCounters returns the fields of bucket and deletes it in one
	// atomic step, so that no increment is counted twice or lost.
	TakeCounters(ctx context.Context, bucket string) (map[string]int64, error)
	// CounterBuckets returns the names of the existing buckets, sorted.
	CounterBuckets(ctx context.Context) ([]string, error)
	// AddCounters adds every delta to its field of bucket in one atomic
	// step (a batch of TLS-RPT aggregates); fields with a zero delta are
	// left alone.
	AddCounters(ctx context.Context, bucket string, deltas map[string]int64) error

	// TryLock takes the lock name for owner until ttl from now, or
	// extends it when owner already holds it, and reports whether owner
	// holds it (so that one replica sends the TLS-RPT reports). A lock
	// whose time ran out is free.
	TryLock(ctx context.Context, name, owner string, ttl time.Duration) (bool, error)
	// Unlock releases the lock name if owner holds it.
	Unlock(ctx context.Context, name, owner string) error

	// Ping checks that the store is usable (for readiness probes).
	Ping(ctx context.Context) error
	// Close releases the store.
	Close() error
}

// CachedPolicy is a cached MTA-STS policy.
type CachedPolicy struct {
	// Domain is the policy domain, lower-case without trailing dot.
	Domain string `json:"domain"`
	// ID is the id of the _mta-sts TXT record the policy was fetched for.
	ID string `json:"id"`
	// Policy is the policy text (mtasts.Policy.String() or the body as
	// fetched).
	Policy string `json:"policy"`
	// FetchedAt is when the policy was fetched or last confirmed.
	FetchedAt time.Time `json:"fetched_at"`
	// ExpiresAt is FetchedAt plus the policy's max_age. The zero time
	// means the entry never expires.
	ExpiresAt time.Time `json:"expires_at"`
}

// PruneGrace is how long an expired policy is kept before PrunePolicies
// (with cutoff now minus PruneGrace) or the Redis TTL removes it.
const PruneGrace = 24 * time.Hour

var (
	// ErrNotFound means the store has no entry for the key.
	ErrNotFound = errors.New("store: not found")
	// ErrInvalid means the caller passed an unusable entry or key.
	ErrInvalid = errors.New("store: invalid argument")
)

// NormalizeDomain returns domain as dnsname.Normalize does (lower case, no
// trailing dot), the form under which policies are stored.
func NormalizeDomain(domain string) string {
	return dnsname.Normalize(domain)
}

// normalizePolicy checks p and returns a copy with the domain normalized
// and the times in UTC without monotonic reading.
func normalizePolicy(p *CachedPolicy) (*CachedPolicy, error) {
	if p == nil {
		return nil, fmt.Errorf("%w: nil policy", ErrInvalid)
	}
	c := *p
	c.Domain = NormalizeDomain(c.Domain)
	if c.Domain == "" {
		return nil, fmt.Errorf("%w: policy without domain", ErrInvalid)
	}
	c.FetchedAt = c.FetchedAt.UTC().Round(0)
	c.ExpiresAt = c.ExpiresAt.UTC().Round(0)
	return &c, nil
}

func checkDomain(domain string) (string, error) {
	d := NormalizeDomain(domain)
	if d == "" {
		return "", fmt.Errorf("%w: empty domain", ErrInvalid)
	}
	return d, nil
}

func checkCounterKey(bucket, field string) error {
	if bucket == "" {
		return fmt.Errorf("%w: empty counter bucket", ErrInvalid)
	}
	if field == "" {
		return fmt.Errorf("%w: empty counter field", ErrInvalid)
	}
	return nil
}
