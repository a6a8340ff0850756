package mtasts

import (
	"context"
	"errors"
	"time"
)

func (m *Manager) failureTTL() time.Duration {
	if m.FailureTTL > 0 {
		return m.FailureTTL
	}
	return DefaultFailureTTL
}

func (m *Manager) retryInterval() time.Duration {
	if m.RetryInterval > 0 {
		return m.RetryInterval
	}
	return DefaultRetryInterval
}

func (m *Manager) maxFailures() int {
	if m.MaxFailures > 0 {
		return m.MaxFailures
	}
	return DefaultMaxFailures
}

// recentFailure returns the remembered failure of the fetch of domain's
// policy with this id, or nil when the message should fetch and wait.
// When a background fetch is due it starts one.
func (m *Manager) recentFailure(ctx context.Context, domain, id string) error {
	now := m.now()
	m.fmu.Lock()
	defer m.fmu.Unlock()
	f := m.failures[domain]
	if f == nil || f.id != id || !now.Before(f.until) {
		return nil
	}
	if !f.retrying && !now.Before(f.nextRetry) {
		f.retrying = true
		f.nextRetry = now.Add(m.retryInterval())
		m.bg.Add(1)
		go m.retry(context.WithoutCancel(ctx), domain, id)
	}
	// The failure as it was: a text that changed with every renewal
	// would make a new TLS-RPT row and a new route each time.
	m.log().Debug("MTA-STS fetch failure remembered: not waiting", "domain", domain, "until", f.until.UTC().Format(time.TimeOnly))
	return f.err
}

// retry fetches the policy in the background; its failure renews the
// remembered one.
func (m *Manager) retry(ctx context.Context, domain, id string) {
	defer m.bg.Done()
	// No message waits here: the fetch gets the fetcher's own bound
	// (DefaultTimeout, 60 s), not the 30 s a first message waits, so that
	// a policy host that answers in between is fetched and stored.
	ctx, cancel := context.WithTimeout(ctx, max(m.fetchTimeout(), DefaultTimeout))
	defer cancel()
	if _, err := m.fetchAndStore(ctx, domain, id); err != nil {
		m.log().Warn("MTA-STS background policy fetch failed", "domain", domain, "id", id, "error", err)
		if !errors.Is(err, ErrStore) {
			m.rememberFailure(domain, id, err)
		}
		return
	}
	m.log().Info("MTA-STS background policy fetch succeeded", "domain", domain, "id", id)
}

// rememberFailure records a failed fetch for FailureTTL, making room
// within MaxFailures.
func (m *Manager) rememberFailure(domain, id string, err error) {
	now := m.now()
	m.fmu.Lock()
	defer m.fmu.Unlock()
	if m.failures == nil {
		m.failures = make(map[string]*fetchFailure)
	}
	f := m.failures[domain]
	if f == nil {
		if len(m.failures) >= m.maxFailures() {
			m.pruneFailuresLocked(now)
		}
		for len(m.failures) >= m.maxFailures() {
			m.evictOneLocked()
		}
		f = &fetchFailure{}
		m.failures[domain] = f
	}
	if f.id != id {
		*f = fetchFailure{id: id}
	}
	f.err = err
	f.until = now.Add(m.failureTTL())
	f.retrying = false
	if f.nextRetry.Before(now.Add(m.retryInterval())) {
		f.nextRetry = now.Add(m.retryInterval())
	}
}

// forgetFailure drops the remembered failure of domain after a
// successful fetch.
func (m *Manager) forgetFailure(domain string) {
	m.fmu.Lock()
	delete(m.failures, domain)
	m.fmu.Unlock()
}

// pruneFailures drops the failures forgotten by now.
func (m *Manager) pruneFailures(now time.Time) {
	m.fmu.Lock()
	m.pruneFailuresLocked(now)
	m.fmu.Unlock()
}

func (m *Manager) pruneFailuresLocked(now time.Time) {
	for d, f := range m.failures {
		if !now.Before(f.until) && !f.retrying {
			delete(m.failures, d)
		}
	}
}

// evictOneLocked drops the failure closest to being forgotten.
func (m *Manager) evictOneLocked() {
	var victim string
	var first time.Time
	for d, f := range m.failures {
		if victim == "" || f.until.Before(first) {
			victim, first = d, f.until
		}
	}
	delete(m.failures, victim)
}
