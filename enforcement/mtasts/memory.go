package mtasts

import (
	"context"
	"errors"
	"fmt"
	"time"

	"sealgate/enforcement/store"
)

// Defaults of the Manager's memory of the store.
const (
	DefaultMemoryMaxAge = time.Minute
	DefaultMaxMemory    = 10000
)

// memEntry is what the store held for a domain when it was last read or
// written by this Manager.
type memEntry struct {
	entry  *store.CachedPolicy // nil: no policy stored
	policy *Policy             // entry's policy parsed; nil if it does not parse
	readAt time.Time
}

func (m *Manager) memoryMaxAge() time.Duration {
	if m.MemoryMaxAge != 0 {
		return m.MemoryMaxAge
	}
	return DefaultMemoryMaxAge
}

func (m *Manager) maxMemory() int {
	if m.MaxMemory > 0 {
		return m.MaxMemory
	}
	return DefaultMaxMemory
}

// cached returns the store entry of domain and, if it is unexpired and
// parses, its policy. It answers from memory when this Manager read or
// wrote the entry less than MemoryMaxAge ago, unless reread is set; the
// last result says whether it did.
func (m *Manager) cached(ctx context.Context, domain string, reread bool) (*store.CachedPolicy, *Policy, bool, error) {
	now := m.now()
	e, fromMemory := m.recall(domain, now)
	if reread || !fromMemory {
		c, err := m.Store.GetPolicy(ctx, domain)
		switch {
		case errors.Is(err, store.ErrNotFound):
			c = nil
		case err != nil:
			return nil, nil, false, fmt.Errorf("mta-sts: policy cache: %w", err)
		}
		e = memEntry{entry: c, readAt: now}
		if c != nil {
			p, err := ParsePolicy([]byte(c.Policy))
			if err != nil {
				m.log().Error("MTA-STS cached policy does not parse; ignoring it", "domain", domain, "error", err)
			}
			e.policy = p
		}
		m.remember(domain, e)
		fromMemory = false
	}
	if e.entry == nil {
		return nil, nil, fromMemory, nil
	}
	if e.policy == nil || !e.entry.ExpiresAt.IsZero() && !now.Before(e.entry.ExpiresAt) {
		return e.entry, nil, fromMemory, nil
	}
	return e.entry, e.policy.Clone(), fromMemory, nil
}

// recall returns the memory of domain if it is younger than MemoryMaxAge.
func (m *Manager) recall(domain string, now time.Time) (memEntry, bool) {
	maxAge := m.memoryMaxAge()
	if maxAge < 0 {
		return memEntry{}, false
	}
	m.mmu.Lock()
	defer m.mmu.Unlock()
	e, ok := m.memory[domain]
	if !ok || now.Sub(e.readAt) >= maxAge || now.Before(e.readAt) {
		return memEntry{}, false
	}
	return *e, true
}

// remember keeps e as what the store holds for domain, making room within
// MaxMemory: copies too old to answer go first, then any one.
func (m *Manager) remember(domain string, e memEntry) {
	if m.memoryMaxAge() < 0 {
		return
	}
	m.mmu.Lock()
	defer m.mmu.Unlock()
	if m.memory == nil {
		m.memory = make(map[string]*memEntry)
	}
	if _, ok := m.memory[domain]; !ok && len(m.memory) >= m.maxMemory() {
		for d, old := range m.memory {
			if e.readAt.Sub(old.readAt) >= m.memoryMaxAge() {
				delete(m.memory, d)
			}
		}
		for d := range m.memory {
			if len(m.memory) < m.maxMemory() {
				break
			}
			delete(m.memory, d)
		}
	}
	m.memory[domain] = &e
}

// stored remembers the entry just written to the store, with its policy.
func (m *Manager) stored(c *store.CachedPolicy, p *Policy) {
	m.remember(c.Domain, memEntry{entry: c, policy: p.Clone(), readAt: m.now()})
}

// Purge deletes the cached policy of domain from the store and from this
// Manager's memory, and forgets a remembered failed fetch, as the
// operator command "sealgate mtasts purge" does: the next message fetches
// the policy anew. Other replicas sharing the store see the deletion
// within MemoryMaxAge.
func (m *Manager) Purge(ctx context.Context, domain string) error {
	domain = store.NormalizeDomain(domain)
	if err := m.Store.DeletePolicy(ctx, domain); err != nil {
		return err
	}
	m.remember(domain, memEntry{readAt: m.now()})
	m.forgetFailure(domain)
	return nil
}
