package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// DefaultRedisPrefix starts every key sealgate writes to Redis.
const DefaultRedisPrefix = "sealgate:"

// RedisOptions tune a Redis store; the zero value gives the defaults.
type RedisOptions struct {
	// Prefix starts every key; "" means DefaultRedisPrefix.
	Prefix string
	// Grace is how long after ExpiresAt a policy key lives (its Redis
	// TTL); 0 means PruneGrace.
	Grace time.Duration
	// Now is the clock for TTLs; nil means time.Now.
	Now func() time.Time
}

// Redis is a Store in Redis, shared by replicas. Keys:
//
//	<prefix>mtasts:policy:<domain>  JSON CachedPolicy, TTL ExpiresAt+Grace
//	<prefix>counters:<bucket>       hash of field -> integer (HINCRBY)
type Redis struct {
	client *redis.Client
	prefix string
	grace  time.Duration
	now    func() time.Time
}

var _ Store = (*Redis)(nil)

// OpenRedis connects to the Redis server at url (redis://, rediss:// or
// unix://, as go-redis ParseURL accepts) with the default options.
// Connections are made lazily: use Ping to check the server.
func OpenRedis(url string) (*Redis, error) {
	return OpenRedisWith(url, RedisOptions{})
}

// OpenRedisWith is OpenRedis with options.
func OpenRedisWith(url string, o RedisOptions) (*Redis, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, fmt.Errorf("store: redis URL: %w", err)
	}
	r := &Redis{client: redis.NewClient(opts), prefix: o.Prefix, grace: o.Grace, now: o.Now}
	if r.prefix == "" {
		r.prefix = DefaultRedisPrefix
	}
	if r.grace <= 0 {
		r.grace = PruneGrace
	}
	if r.now == nil {
		r.now = time.Now
	}
	return r, nil
}

func (r *Redis) policyKey(domain string) string  { return r.prefix + "mtasts:policy:" + domain }
func (r *Redis) counterKey(bucket string) string { return r.prefix + "counters:" + bucket }

// GetPolicy implements Store.
func (r *Redis) GetPolicy(ctx context.Context, domain string) (*CachedPolicy, error) {
	d, err := checkDomain(domain)
	if err != nil {
		return nil, err
	}
	v, err := r.client.Get(ctx, r.policyKey(d)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("policy for %s: %w", d, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: redis: %w", err)
	}
	return decodePolicy(v)
}

// PutPolicy implements Store. The key expires Grace after ExpiresAt (at
// least one second from now); a zero ExpiresAt gives no TTL.
func (r *Redis) PutPolicy(ctx context.Context, p *CachedPolicy) error {
	c, err := normalizePolicy(p)
	if err != nil {
		return err
	}
	v, err := json.Marshal(c)
	if err != nil {
		return fmt.Errorf("store: %w", err)
	}
	var ttl time.Duration
	if !c.ExpiresAt.IsZero() {
		ttl = max(c.ExpiresAt.Sub(r.now())+r.grace, time.Second)
	}
	if err := r.client.Set(ctx, r.policyKey(c.Domain), v, ttl).Err(); err != nil {
		return fmt.Errorf("store: redis: %w", err)
	}
	return nil
}

// DeletePolicy implements Store.
func (r *Redis) DeletePolicy(ctx context.Context, domain string) error {
	d, err := checkDomain(domain)
	if err != nil {
		return err
	}
	if err := r.client.Del(ctx, r.policyKey(d)).Err(); err != nil {
		return fmt.Errorf("store: redis: %w", err)
	}
	return nil
}

// ListPolicies implements Store.
func (r *Redis) ListPolicies(ctx context.Context) ([]*CachedPolicy, error) {
	entries, err := r.scanPolicies(ctx)
	if err != nil {
		return nil, err
	}
	list := make([]*CachedPolicy, 0, len(entries))
	for _, e := range entries {
		list = append(list, e.policy)
	}
	return list, nil
}

type redisEntry struct {
	raw    string
	policy *CachedPolicy
}

// scanPolicies returns the policy entries sorted by domain; keys that
// expire between SCAN and MGET are left out.
func (r *Redis) scanPolicies(ctx context.Context) ([]redisEntry, error) {
	keys, err := r.scan(ctx, r.policyKey(""))
	if err != nil {
		return nil, err
	}
	var entries []redisEntry
	for chunk := range slices.Chunk(keys, 100) {
		vals, err := r.client.MGet(ctx, chunk...).Result()
		if err != nil {
			return nil, fmt.Errorf("store: redis: %w", err)
		}
		for _, v := range vals {
			s, ok := v.(string)
			if !ok {
				continue // gone since SCAN
			}
			p, err := decodePolicy([]byte(s))
			if err != nil {
				return nil, err
			}
			entries = append(entries, redisEntry{raw: s, policy: p})
		}
	}
	slices.SortFunc(entries, func(a, b redisEntry) int { return strings.Compare(a.policy.Domain, b.policy.Domain) })
	return entries, nil
}

// deleteIfUnchanged deletes KEYS[1] only if it still holds ARGV[1], so a
// prune never removes a policy another replica has just refreshed.
var deleteIfUnchanged = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
	return redis.call("DEL", KEYS[1])
end
return 0`)

// PrunePolicies implements Store.
func (r *Redis) PrunePolicies(ctx context.Context, cutoff time.Time) (int, error) {
	entries, err := r.scanPolicies(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range entries {
		if e.policy.ExpiresAt.IsZero() || !e.policy.ExpiresAt.Before(cutoff) {
			continue
		}
		d, err := deleteIfUnchanged.Run(ctx, r.client, []string{r.policyKey(e.policy.Domain)}, e.raw).Int()
		if err != nil {
			return n, fmt.Errorf("store: redis: %w", err)
		}
		n += d
	}
	return n, nil
}

// IncrCounter implements Store with HINCRBY.
func (r *Redis) IncrCounter(ctx context.Context, bucket, field string, delta int64) error {
	if err := checkCounterKey(bucket, field); err != nil {
		return err
	}
	if err := r.client.HIncrBy(ctx, r.counterKey(bucket), field, delta).Err(); err != nil {
		return fmt.Errorf("store: redis: %w", err)
	}
	return nil
}

// Counters implements Store.
func (r *Redis) Counters(ctx context.Context, bucket string) (map[string]int64, error) {
	if bucket == "" {
		return nil, fmt.Errorf("%w: empty counter bucket", ErrInvalid)
	}
	m, err := r.client.HGetAll(ctx, r.counterKey(bucket)).Result()
	if err != nil {
		return nil, fmt.Errorf("store: redis: %w", err)
	}
	return parseCounters(bucket, m)
}

// TakeCounters implements Store with HGETALL and DEL in one MULTI.
func (r *Redis) TakeCounters(ctx context.Context, bucket string) (map[string]int64, error) {
	if bucket == "" {
		return nil, fmt.Errorf("%w: empty counter bucket", ErrInvalid)
	}
	key := r.counterKey(bucket)
	var get *redis.MapStringStringCmd
	_, err := r.client.TxPipelined(ctx, func(p redis.Pipeliner) error {
		get = p.HGetAll(ctx, key)
		p.Del(ctx, key)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: redis: %w", err)
	}
	return parseCounters(bucket, get.Val())
}

func parseCounters(bucket string, m map[string]string) (map[string]int64, error) {
	out := make(map[string]int64, len(m))
	for k, v := range m {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("store: counter %s/%s: %w", bucket, k, err)
		}
		out[k] = n
	}
	return out, nil
}

// CounterBuckets implements Store.
func (r *Redis) CounterBuckets(ctx context.Context) ([]string, error) {
	prefix := r.counterKey("")
	keys, err := r.scan(ctx, prefix)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(keys))
	for i, k := range keys {
		names[i] = strings.TrimPrefix(k, prefix)
	}
	return names, nil
}

// scan returns the keys starting with prefix, sorted and without the
// duplicates SCAN may return.
func (r *Redis) scan(ctx context.Context, prefix string) ([]string, error) {
	var keys []string
	it := r.client.Scan(ctx, 0, globEscape(prefix)+"*", 1000).Iterator()
	for it.Next(ctx) {
		keys = append(keys, it.Val())
	}
	if err := it.Err(); err != nil {
		return nil, fmt.Errorf("store: redis: %w", err)
	}
	slices.Sort(keys)
	return slices.Compact(keys), nil
}

// globEscape quotes the characters special to Redis glob patterns.
func globEscape(s string) string {
	var b strings.Builder
	for _, c := range s {
		if strings.ContainsRune(`*?[]\^`, c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// Ping implements Store.
func (r *Redis) Ping(ctx context.Context) error {
	if err := r.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("store: redis: %w", err)
	}
	return nil
}

// Close implements Store.
func (r *Redis) Close() error { return r.client.Close() }
