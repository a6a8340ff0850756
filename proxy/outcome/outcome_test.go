package outcome

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// clock is a settable time.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

var start = time.Date(2026, 3, 1, 10, 30, 0, 0, time.UTC)

func names(s Snapshot) string {
	var out []string
	for _, d := range s.Domains {
		out = append(out, d.Name)
	}
	return strings.Join(out, " ")
}

func TestWindowSlides(t *testing.T) {
	tests := []struct {
		name      string
		after     time.Duration
		wantTotal int
		wantSlot  int // index in Hours of the recorded hour
	}{
		{name: "same hour", after: 20 * time.Minute, wantTotal: 2, wantSlot: Hours - 1},
		{name: "next hour", after: 40 * time.Minute, wantTotal: 2, wantSlot: Hours - 2},
		{name: "23 hours later", after: 23 * time.Hour, wantTotal: 2, wantSlot: 0},
		{name: "24 hours later", after: 24 * time.Hour, wantTotal: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := &clock{t: start}
			r := New(0, c.now)
			r.Delivered("a.test", "DANE", "TLS 1.3")
			r.Deferred("a.test", "starttls", "451 4.7.4 a.test: floor encrypt: mx.a.test: STARTTLS not offered")
			c.add(tc.after)
			s := r.Snapshot()
			if len(s.Hours) != Hours {
				t.Fatalf("%d hours, want %d", len(s.Hours), Hours)
			}
			if got := s.Hours[Hours-1].Start; got != c.now().Truncate(time.Hour) {
				t.Errorf("last hour starts %v, want the current hour", got)
			}
			total := 0
			for _, h := range s.Hours {
				total += h.Delivered + h.Deferred
			}
			if total != tc.wantTotal {
				t.Fatalf("total %d, want %d", total, tc.wantTotal)
			}
			if tc.wantTotal == 0 {
				if len(s.Domains) != 0 || len(r.domains) != 0 {
					t.Fatalf("domain kept after its window: %+v", s.Domains)
				}
				return
			}
			if h := s.Hours[tc.wantSlot]; h.Delivered != 1 || h.Deferred != 1 {
				t.Errorf("slot %d = %+v, want 1 and 1", tc.wantSlot, h)
			}
			if h := s.Domains[0].Hours[tc.wantSlot]; h.Delivered != 1 || h.Deferred != 1 {
				t.Errorf("domain slot %d = %+v, want 1 and 1", tc.wantSlot, h)
			}
		})
	}
}

func TestBucketReusedAfterADay(t *testing.T) {
	c := &clock{t: start}
	r := New(0, c.now)
	r.Delivered("a.test", "floor", "TLS 1.2")
	c.add(24 * time.Hour) // same ring slot, next day
	r.Delivered("a.test", "floor", "TLS 1.3")
	d := r.Snapshot().Domains[0]
	if d.Delivered != 1 || len(d.DeliveredBy) != 1 || d.DeliveredBy[0].TLSVersion != "TLS 1.3" {
		t.Fatalf("yesterday's count survived in the reused hour: %+v", d)
	}
}

func TestDomainView(t *testing.T) {
	c := &clock{t: start}
	r := New(0, c.now)
	r.Delivered("a.test", "DANE", "TLS 1.3")
	r.Delivered("a.test", "DANE", "TLS 1.3")
	r.Delivered("a.test", "MTA-STS", "TLS 1.2")
	r.Deferred("a.test", "tls", "451 4.7.5 first")
	c.add(time.Hour)
	r.Deferred("a.test", "tls", "451 4.7.5 second")
	r.Deferred("a.test", "mx", "451 4.3.0 busy")
	d := r.Snapshot().Domains[0]
	if d.Delivered != 3 || d.Deferred != 3 {
		t.Fatalf("delivered %d deferred %d, want 3 and 3", d.Delivered, d.Deferred)
	}
	want := []Delivered{
		{Delivery{"DANE", "TLS 1.3"}, 2},
		{Delivery{"MTA-STS", "TLS 1.2"}, 1},
	}
	if fmt.Sprint(d.DeliveredBy) != fmt.Sprint(want) {
		t.Errorf("delivered by %v, want %v", d.DeliveredBy, want)
	}
	if len(d.DeferredBy) != 2 {
		t.Fatalf("deferred by %+v", d.DeferredBy)
	}
	if g := d.DeferredBy[0]; g.Reason != "tls" || g.Count != 2 || g.LastReply != "451 4.7.5 second" || !g.LastAt.Equal(c.now()) {
		t.Errorf("first reason %+v, want tls twice, the last reply", g)
	}
	if g := d.DeferredBy[1]; g.Reason != "mx" || g.Count != 1 || g.LastReply != "451 4.3.0 busy" {
		t.Errorf("second reason %+v", g)
	}
	if !d.LastDeferral.Equal(c.now()) {
		t.Errorf("last deferral %v, want %v", d.LastDeferral, c.now())
	}
}

func TestTroubleFirst(t *testing.T) {
	c := &clock{t: start}
	r := New(0, c.now)
	for range 5 {
		r.Delivered("busy.test", "floor", "TLS 1.3")
	}
	r.Delivered("quiet.test", "floor", "TLS 1.3")
	r.Deferred("old-trouble.test", "dns", "451 4.4.3 x")
	r.Deferred("big-trouble.test", "tls", "451 4.7.5 x")
	r.Deferred("big-trouble.test", "tls", "451 4.7.5 x")
	c.add(time.Minute)
	r.Deferred("new-trouble.test", "dns", "451 4.4.3 x")
	want := "big-trouble.test new-trouble.test old-trouble.test busy.test quiet.test"
	if got := names(r.Snapshot()); got != want {
		t.Fatalf("order %q, want %q", got, want)
	}
}

func TestEvictsQuietest(t *testing.T) {
	c := &clock{t: start}
	r := New(3, c.now)
	r.Deferred("loud.test", "tls", "x")
	r.Deferred("loud.test", "tls", "x")
	r.Delivered("quiet-old.test", "floor", "TLS 1.3")
	c.add(time.Second)
	r.Delivered("quiet-new.test", "floor", "TLS 1.3")
	r.Delivered("quiet-new.test", "floor", "TLS 1.3")
	c.add(time.Second)
	r.Delivered("newcomer.test", "floor", "TLS 1.3")
	want := "loud.test quiet-new.test newcomer.test"
	if got := names(r.Snapshot()); got != want {
		t.Fatalf("kept %q, want %q (the quietest evicted)", got, want)
	}
	if len(r.domains) != 3 {
		t.Fatalf("%d domains kept, want 3", len(r.domains))
	}
}

func TestReplyTruncated(t *testing.T) {
	r := New(0, func() time.Time { return start })
	long := "451 4.3.0 " + strings.Repeat("é", 400)
	r.Deferred("a.test", "mx", long)
	got := r.Snapshot().Domains[0].DeferredBy[0].LastReply
	if len(got) > maxReply+len("…") || !utf8.ValidString(got) || !strings.HasSuffix(got, "…") {
		t.Fatalf("kept %d bytes, valid UTF-8 %v: %q", len(got), utf8.ValidString(got), got)
	}
}

func TestConcurrentUse(t *testing.T) {
	r := New(50, nil)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 200 {
				d := fmt.Sprintf("d%d.test", (i*200+j)%80)
				r.Delivered(d, "floor", "TLS 1.3")
				r.Deferred(d, "tls", "451 4.7.5 x")
				if j%50 == 0 {
					r.Snapshot()
				}
			}
		})
	}
	wg.Wait()
	if n := len(r.Snapshot().Domains); n > 50 {
		t.Fatalf("%d domains kept, the bound is 50", n)
	}
}
