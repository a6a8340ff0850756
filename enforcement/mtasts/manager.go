package mtasts

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"sealgate/enforcement/store"
)

// Status says where the policy handed out by Manager.Policy came from.
type Status int

// Statuses.
const (
	StatusNone    Status = iota // the domain has no policy
	StatusCached                // an unexpired cached policy, TXT id unchanged
	StatusFetched               // fetched now (first contact or a new id)
	StatusStale                 // cached and unexpired, kept although the TXT or the fetch failed
)

func (s Status) String() string {
	switch s {
	case StatusNone:
		return "none"
	case StatusCached:
		return "cached"
	case StatusFetched:
		return "fetched"
	case StatusStale:
		return "cached (refresh failed)"
	}
	return fmt.Sprintf("unknown(%d)", int(s))
}

// Lookup is the outcome of Manager.Policy.
type Lookup struct {
	Policy *Policy // nil: no policy in force
	ID     string
	Status Status
	// Problem is a failure worth reporting (TLS-RPT
	// sts-policy-fetch-error or sts-policy-invalid) even when a cached
	// policy stays in force.
	Problem error
}

// PolicyFetcher fetches the policy of a domain over HTTPS (*Fetcher).
type PolicyFetcher interface {
	Fetch(ctx context.Context, domain string) (*Policy, error)
}

var _ PolicyFetcher = (*Fetcher)(nil)

// Defaults of the Manager's failure memory.
const (
	DefaultFailureTTL    = 5 * time.Minute
	DefaultRetryInterval = time.Minute
	DefaultMaxFailures   = 10000
)

// Manager keeps the MTA-STS policy cache (RFC 8461 §5.1): a cached,
// unexpired policy stays in force when the TXT record disappears or the
// policy host is down or serves garbage; a new id in the TXT record
// triggers a fetch; mode "none" removes protection only through a
// successful fetch.
//
// A message waits (at most FetchTimeout) for the fetch of a policy it
// does not have: at first contact, after expiry, or for a new id. When
// that fetch fails, the failure is remembered for the domain and that id
// during FailureTTL: later messages proceed at once as the failure
// dictates (no policy, or the cached one; RFC 8461 §3.3, §5.1) instead of
// waiting again, while a background fetch is tried at most once per
// RetryInterval. Any successful fetch (background, refresh, operator)
// replaces the failure; a failed background fetch renews it; a new id is
// fetched at once.
//
// The Manager keeps in memory what it last read from or wrote to the
// store for each domain (the policy, parsed, or that there is none), so
// that a message to a domain whose policy is current reads nothing from
// the store. Its own writes (fetches, refreshes, Purge) update that
// memory at once. A copy older than MemoryMaxAge is read again, and so is
// the store entry before any fetch, so that a policy that another replica
// sharing the store fetched or purged is seen: before fetching at once,
// otherwise within MemoryMaxAge. Fields must be set before use.
type Manager struct {
	Store     store.Store
	Fetcher   PolicyFetcher
	LookupTXT TXTLookup
	// Now is the clock; time.Now if nil.
	Now func() time.Time
	// FetchTimeout bounds the fetch a message waits for; 30s if 0.
	FetchTimeout time.Duration
	// FailureTTL is how long a failed fetch is remembered;
	// DefaultFailureTTL if 0.
	FailureTTL time.Duration
	// RetryInterval spaces the background fetches of a remembered
	// failure; DefaultRetryInterval if 0.
	RetryInterval time.Duration
	// MaxFailures bounds the failures remembered; the one closest to
	// being forgotten makes room. DefaultMaxFailures if 0.
	MaxFailures int
	// RefreshConcurrency bounds background refreshes; 4 if 0.
	RefreshConcurrency int
	// MemoryMaxAge is how long a store entry kept in memory answers for
	// the store; DefaultMemoryMaxAge if 0; a negative value keeps
	// nothing (every message reads the store).
	MemoryMaxAge time.Duration
	// MaxMemory bounds the domains kept in memory; DefaultMaxMemory if 0.
	MaxMemory int
	Log       *slog.Logger

	mu sync.Mutex // one RefreshDue at a time

	fmu      sync.Mutex
	failures map[string]*fetchFailure // by domain
	bg       sync.WaitGroup           // background fetches

	mmu    sync.Mutex
	memory map[string]*memEntry // by domain
}

// fetchFailure is a remembered failed fetch of a domain's policy.
type fetchFailure struct {
	id        string // the TXT id whose policy failed
	err       error
	until     time.Time // forgotten from then on
	nextRetry time.Time // no background fetch before
	retrying  bool
}

func (m *Manager) now() time.Time {
	if m.Now != nil {
		return m.Now()
	}
	return time.Now()
}

func (m *Manager) log() *slog.Logger {
	if m.Log != nil {
		return m.Log
	}
	return slog.Default()
}

// Policy returns the policy in force for domain. A store failure is an
// error (the caller defers rather than deliver without a policy that may
// exist); everything else is expressed in the Lookup.
func (m *Manager) Policy(ctx context.Context, domain string) (Lookup, error) {
	domain = store.NormalizeDomain(domain)
	cached, valid, fromMemory, err := m.cached(ctx, domain, false)
	if err != nil {
		return Lookup{}, err
	}
	id, txtErr := m.lookupID(ctx, domain)
	if txtErr != nil && !errors.Is(txtErr, ErrNoRecord) && valid == nil && fromMemory {
		// Memory says nothing is stored, but another replica may have
		// stored a policy since: with no TXT record to go by, only the
		// store can tell. (Not for a plain "no record": every message to
		// the many domains without MTA-STS would read the store. A
		// record another replica saw and this one is told is absent
		// stays unseen here for at most MemoryMaxAge.)
		if cached, valid, _, err = m.cached(ctx, domain, true); err != nil {
			return Lookup{}, err
		}
	}
	if txtErr != nil {
		// No TXT record, several, or a failed lookup: a valid cached
		// policy stays in force (§5.1); otherwise there is none.
		if valid != nil {
			status := StatusCached
			var problem error
			if !errors.Is(txtErr, ErrNoRecord) {
				status, problem = StatusStale, txtErr
			}
			return Lookup{Policy: valid, ID: cached.ID, Status: status, Problem: problem}, nil
		}
		if errors.Is(txtErr, ErrNoRecord) {
			return Lookup{Status: StatusNone}, nil
		}
		return Lookup{Status: StatusNone, Problem: txtErr}, nil
	}
	if valid != nil && cached.ID == id {
		return Lookup{Policy: valid, ID: id, Status: StatusCached}, nil
	}
	if fromMemory {
		// Another replica may have stored the policy of this id.
		if cached, valid, _, err = m.cached(ctx, domain, true); err != nil {
			return Lookup{}, err
		}
		if valid != nil && cached.ID == id {
			return Lookup{Policy: valid, ID: id, Status: StatusCached}, nil
		}
	}
	if err := m.recentFailure(ctx, domain, id); err != nil {
		if valid != nil {
			return Lookup{Policy: valid, ID: cached.ID, Status: StatusStale, Problem: err}, nil
		}
		return Lookup{Status: StatusNone, Problem: err}, nil
	}
	fctx, cancel := context.WithTimeout(ctx, m.fetchTimeout())
	defer cancel()
	p, err := m.fetchAndStore(fctx, domain, id)
	if errors.Is(err, ErrStore) {
		// The domain's policy was fetched: it must be in force, and
		// cannot be without its durable copy. Defer, never go on as
		// if the domain had none.
		return Lookup{}, err
	}
	if err != nil {
		m.log().Warn("MTA-STS policy fetch failed", "domain", domain, "id", id, "error", err)
		m.rememberFailure(domain, id, err)
		if valid != nil {
			return Lookup{Policy: valid, ID: cached.ID, Status: StatusStale, Problem: err}, nil
		}
		return Lookup{Status: StatusNone, Problem: err}, nil
	}
	return Lookup{Policy: p, ID: id, Status: StatusFetched}, nil
}

func (m *Manager) fetchTimeout() time.Duration {
	if m.FetchTimeout > 0 {
		return m.FetchTimeout
	}
	return 30 * time.Second
}

// ErrStore marks a policy that was fetched but could not be stored: our
// state store failed, not the domain.
var ErrStore = errors.New("mta-sts: state store")

// fetchAndStore fetches the policy and stores it durably before returning
// it.
func (m *Manager) fetchAndStore(ctx context.Context, domain, id string) (*Policy, error) {
	p, err := m.Fetcher.Fetch(ctx, domain)
	if err != nil {
		return nil, err
	}
	now := m.now()
	entry := &store.CachedPolicy{Domain: domain, ID: id, Policy: p.String(), FetchedAt: now, ExpiresAt: now.Add(p.MaxAge)}
	if err := m.Store.PutPolicy(ctx, entry); err != nil {
		return nil, fmt.Errorf("%w: storing policy of %s: %w", ErrStore, domain, err)
	}
	m.stored(entry, p)
	m.forgetFailure(domain)
	m.log().Info("MTA-STS policy stored", "domain", domain, "id", id, "mode", p.Mode.String(), "max_age", p.MaxAge.String(), "mx", p.MX)
	return p, nil
}

// lookupID is LookupID with a log line for a discarded MTA-STS record.
func (m *Manager) lookupID(ctx context.Context, domain string) (string, error) {
	id, err := LookupID(ctx, m.LookupTXT, domain)
	if errors.Is(err, ErrInvalidRecord) || errors.Is(err, ErrMultipleRecords) {
		m.log().Info("MTA-STS TXT record discarded: no policy announced", "domain", domain, "reason", err)
	}
	return id, err
}

// Refresh checks the TXT record of domain and fetches its policy now, as
// the operator command "sealgate mtasts refresh" does. Unlike Policy, it
// fetches even when the cached id is current.
func (m *Manager) Refresh(ctx context.Context, domain string) (Lookup, error) {
	domain = store.NormalizeDomain(domain)
	id, err := m.lookupID(ctx, domain)
	if err != nil {
		return Lookup{}, err
	}
	p, err := m.fetchAndStore(ctx, domain, id)
	if err != nil {
		return Lookup{}, err
	}
	return Lookup{Policy: p, ID: id, Status: StatusFetched}, nil
}

// RefreshDue refreshes, with bounded concurrency, every cached policy that
// expires within the given margin (RFC 8461 §5.1 suggests refreshing
// before expiry), and prunes entries long expired. It returns how many
// policies it refreshed.
func (m *Manager) RefreshDue(ctx context.Context, margin time.Duration) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	m.pruneFailures(now)
	if _, err := m.Store.PrunePolicies(ctx, now.Add(-store.PruneGrace)); err != nil {
		return 0, err
	}
	all, err := m.Store.ListPolicies(ctx)
	if err != nil {
		return 0, err
	}
	n := m.RefreshConcurrency
	if n <= 0 {
		n = 4
	}
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	var mu sync.Mutex
	refreshed := 0
	for _, c := range all {
		if c.ExpiresAt.IsZero() || c.ExpiresAt.Sub(now) > margin || !c.ExpiresAt.After(now) {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			id, err := m.lookupID(ctx, c.Domain)
			if err != nil {
				m.log().Warn("MTA-STS refresh: TXT lookup failed; cached policy kept", "domain", c.Domain, "error", err)
				return
			}
			fctx, cancel := context.WithTimeout(ctx, m.fetchTimeout())
			defer cancel()
			if _, err := m.fetchAndStore(fctx, c.Domain, id); err != nil {
				m.log().Warn("MTA-STS refresh failed; cached policy kept", "domain", c.Domain, "error", err)
				return
			}
			mu.Lock()
			refreshed++
			mu.Unlock()
		}()
	}
	wg.Wait()
	return refreshed, nil
}

// Run refreshes due policies every interval until ctx ends.
func (m *Manager) Run(ctx context.Context, interval, margin time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if _, err := m.RefreshDue(ctx, margin); err != nil && ctx.Err() == nil {
				m.log().Error("MTA-STS background refresh", "error", err)
			}
		}
	}
}
