package certs

// Expiry of watched certificates: a warning in the log when a leaf's
// NotAfter (RFC 5280 §4.1.2.5) comes within a threshold, and the times
// themselves for a metrics gauge, which the caller sets (this package does
// not know Prometheus).

import (
	"crypto/x509"
	"log/slog"
	"time"
)

// Defaults of the Watcher's expiry fields.
const (
	DefaultExpiryThreshold = 21 * 24 * time.Hour
	DefaultExpiryInterval  = 24 * time.Hour
)

// ExpiryWarning logs a warning naming the certificate name when leaf
// expires within threshold of now, and an error when it has expired. It
// reports whether it logged.
func ExpiryWarning(log *slog.Logger, name string, leaf *x509.Certificate, now time.Time, threshold time.Duration) bool {
	left := leaf.NotAfter.Sub(now)
	attrs := []any{
		"name", name,
		"subject", leaf.Subject.String(),
		"not_after", leaf.NotAfter,
		"days_left", int(left.Hours() / 24),
	}
	switch {
	case left <= 0:
		log.Error("certs: certificate expired", attrs...)
	case left <= threshold:
		log.Warn("certs: certificate expires soon", attrs...)
	default:
		return false
	}
	return true
}

// Expiries returns the NotAfter of the leaf certificate in force for each
// watched key pair, by name (CA bundles are not included), e.g. to set a
// gauge of seconds until expiry.
func (w *Watcher) Expiries() map[string]time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]time.Time, len(w.entries))
	for _, e := range w.entries {
		if e.leaf != nil {
			out[e.name] = e.leaf.NotAfter
		}
	}
	return out
}

// CheckExpiry runs ExpiryWarning on every watched key pair. Loading does
// it for new material and Run repeats it every ExpiryInterval.
func (w *Watcher) CheckExpiry() {
	w.mu.Lock()
	defer w.mu.Unlock()
	now, threshold := w.now(), w.expiryThreshold()
	for _, e := range w.entries {
		if e.leaf != nil {
			ExpiryWarning(w.log(), e.name, e.leaf, now, threshold)
		}
	}
}

func (w *Watcher) now() time.Time {
	if w.Now == nil {
		return time.Now()
	}
	return w.Now()
}

func (w *Watcher) expiryThreshold() time.Duration {
	if w.ExpiryThreshold <= 0 {
		return DefaultExpiryThreshold
	}
	return w.ExpiryThreshold
}

func (w *Watcher) expiryInterval() time.Duration {
	if w.ExpiryInterval <= 0 {
		return DefaultExpiryInterval
	}
	return w.ExpiryInterval
}
