// Package outcome keeps, in memory, what became of messages per recipient
// domain over the last 24 hours: deliveries by policy source and TLS
// version, deferrals by reason with the last reply. It feeds the status
// page. Counts are hourly buckets; the number of domains is bounded, the
// quietest making room for a new one.
package outcome

import (
	"cmp"
	"slices"
	"sync"
	"time"
	"unicode/utf8"
)

// Hours is the window: the current hour and the 23 before it.
const Hours = 24

// DefaultMaxDomains bounds the domains tracked when Recorder.MaxDomains
// is 0.
const DefaultMaxDomains = 10000

// maxReply bounds a kept reply text, in bytes.
const maxReply = 512

// Recorder counts outcomes. The zero value is not usable: make it with
// New.
type Recorder struct {
	now func() time.Time
	max int

	mu      sync.Mutex
	domains map[string]*domain
}

// New makes a recorder that keeps at most maxDomains domains
// (DefaultMaxDomains if 0) and reads the time from now (time.Now if nil).
func New(maxDomains int, now func() time.Time) *Recorder {
	if maxDomains <= 0 {
		maxDomains = DefaultMaxDomains
	}
	if now == nil {
		now = time.Now
	}
	return &Recorder{now: now, max: maxDomains, domains: map[string]*domain{}}
}

// Delivery is how a message was delivered.
type Delivery struct {
	Source     string `json:"source"`
	TLSVersion string `json:"tls_version"`
}

// bucket is one hour of one domain.
type bucket struct {
	hour      int64 // Unix time / 3600 of the hour counted
	delivered map[Delivery]int
	deferred  map[string]int
}

// last is the last deferral of one reason.
type last struct {
	reply string
	at    time.Time
}

type domain struct {
	hours    [Hours]bucket
	last     map[string]last
	lastSeen time.Time
}

// bucketAt returns the bucket of hour h, emptied if it held an older one.
func (d *domain) bucketAt(h int64) *bucket {
	b := &d.hours[h%Hours]
	if b.hour != h {
		*b = bucket{hour: h}
	}
	return b
}

// total is how many outcomes d has in the window ending at hour h.
func (d *domain) total(h int64) int {
	n := 0
	for i := range d.hours {
		b := &d.hours[i]
		if inWindow(b.hour, h) {
			for _, c := range b.delivered {
				n += c
			}
			for _, c := range b.deferred {
				n += c
			}
		}
	}
	return n
}

func inWindow(bucketHour, now int64) bool { return bucketHour > now-Hours && bucketHour <= now }

func hourOf(t time.Time) int64 { return t.Unix() / 3600 }

// Delivered counts a delivered message (proxy.Outcomes).
func (r *Recorder) Delivered(name, source, tlsVersion string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	d := r.domain(name, now)
	b := d.bucketAt(hourOf(now))
	if b.delivered == nil {
		b.delivered = map[Delivery]int{}
	}
	b.delivered[Delivery{Source: source, TLSVersion: tlsVersion}]++
}

// Deferred counts a deferral (proxy.Outcomes).
func (r *Recorder) Deferred(name, reason, reply string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	d := r.domain(name, now)
	b := d.bucketAt(hourOf(now))
	if b.deferred == nil {
		b.deferred = map[string]int{}
	}
	b.deferred[reason]++
	if d.last == nil {
		d.last = map[string]last{}
	}
	d.last[reason] = last{reply: truncate(reply, maxReply), at: now}
}

// domain returns the domain's record, making room for a new one.
func (r *Recorder) domain(name string, now time.Time) *domain {
	d := r.domains[name]
	if d == nil {
		if len(r.domains) >= r.max {
			r.evict(hourOf(now))
		}
		d = &domain{}
		r.domains[name] = d
	}
	d.lastSeen = now
	return d
}

// evict drops the quietest domain: the fewest outcomes in the window,
// then the longest unseen.
func (r *Recorder) evict(h int64) {
	var victim string
	var vd *domain
	vn := 0
	for name, d := range r.domains {
		n := d.total(h)
		if vd == nil || n < vn || (n == vn && d.lastSeen.Before(vd.lastSeen)) {
			victim, vd, vn = name, d, n
		}
	}
	delete(r.domains, victim)
}

// truncate cuts s to at most n bytes, at a rune boundary.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for len(s) > 0 && !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s + "…"
}

// Hour is the counts of one hour.
type Hour struct {
	Start     time.Time `json:"start"`
	Delivered int       `json:"delivered"`
	Deferred  int       `json:"deferred"`
}

// Delivered is a count of deliveries of one kind.
type Delivered struct {
	Delivery
	Count int `json:"count"`
}

// Deferred is a count of deferrals of one reason, with the last reply.
type Deferred struct {
	Reason    string    `json:"reason"`
	Count     int       `json:"count"`
	LastReply string    `json:"last_reply"`
	LastAt    time.Time `json:"last_at"`
}

// Domain is the window of one domain.
type Domain struct {
	Name         string      `json:"domain"`
	Delivered    int         `json:"delivered"`
	Deferred     int         `json:"deferred"`
	DeliveredBy  []Delivered `json:"delivered_by"`
	DeferredBy   []Deferred  `json:"deferred_by"`
	LastDeferral time.Time   `json:"last_deferral,omitzero"`
	// Hours are the domain's counts per hour, oldest first.
	Hours []Hour `json:"hours"`
}

// Snapshot is the window as of a time.
type Snapshot struct {
	// Hours are the counts of all domains per hour, oldest first; the
	// last one is the current, partial hour.
	Hours []Hour
	// Domains are those with outcomes in the window, in trouble first:
	// most deferrals, then latest deferral, then most deliveries, then
	// by name.
	Domains []Domain
}

// Snapshot returns the window ending now.
func (r *Recorder) Snapshot() Snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	h := hourOf(r.now())
	s := Snapshot{Hours: hours(h)}
	for name, d := range r.domains {
		if d.total(h) == 0 {
			// Nothing left in the window: forget it.
			delete(r.domains, name)
			continue
		}
		v := d.view(name, h)
		for i, hv := range v.Hours {
			s.Hours[i].Delivered += hv.Delivered
			s.Hours[i].Deferred += hv.Deferred
		}
		s.Domains = append(s.Domains, v)
	}
	slices.SortFunc(s.Domains, func(a, b Domain) int {
		return cmp.Or(
			cmp.Compare(b.Deferred, a.Deferred),
			b.LastDeferral.Compare(a.LastDeferral),
			cmp.Compare(b.Delivered, a.Delivered),
			cmp.Compare(a.Name, b.Name),
		)
	})
	return s
}

// hours returns the window's empty hours, oldest first.
func hours(h int64) []Hour {
	out := make([]Hour, Hours)
	for i := range out {
		out[i].Start = time.Unix((h-Hours+1+int64(i))*3600, 0).UTC()
	}
	return out
}

func (d *domain) view(name string, h int64) Domain {
	v := Domain{Name: name, Hours: hours(h), DeliveredBy: []Delivered{}, DeferredBy: []Deferred{}}
	delivered := map[Delivery]int{}
	deferred := map[string]int{}
	for i := range d.hours {
		b := &d.hours[i]
		if !inWindow(b.hour, h) {
			continue
		}
		slot := &v.Hours[b.hour-(h-Hours+1)]
		for k, c := range b.delivered {
			delivered[k] += c
			slot.Delivered += c
		}
		for k, c := range b.deferred {
			deferred[k] += c
			slot.Deferred += c
		}
	}
	for k, c := range delivered {
		v.Delivered += c
		v.DeliveredBy = append(v.DeliveredBy, Delivered{Delivery: k, Count: c})
	}
	for k, c := range deferred {
		v.Deferred += c
		l := d.last[k]
		v.DeferredBy = append(v.DeferredBy, Deferred{Reason: k, Count: c, LastReply: l.reply, LastAt: l.at})
		if l.at.After(v.LastDeferral) {
			v.LastDeferral = l.at
		}
	}
	slices.SortFunc(v.DeliveredBy, func(a, b Delivered) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Source, b.Source), cmp.Compare(a.TLSVersion, b.TLSVersion))
	})
	slices.SortFunc(v.DeferredBy, func(a, b Deferred) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), b.LastAt.Compare(a.LastAt), cmp.Compare(a.Reason, b.Reason))
	})
	return v
}
