package proxy

import (
	"context"
	"crypto/tls"
	"io"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/emersion/go-smtp"

	"sealgate/enforcement"
)

// outcomeLog is an Outcomes that records every call as one line.
type outcomeLog struct {
	mu    sync.Mutex
	lines []string
}

func (o *outcomeLog) Delivered(domain, source, tlsVersion string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.lines = append(o.lines, "delivered "+domain+" "+source+" "+tlsVersion)
}

func (o *outcomeLog) Deferred(domain, reason, reply string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.lines = append(o.lines, "deferred "+domain+" "+reason+" "+reply)
}

func (o *outcomeLog) get() []string {
	o.mu.Lock()
	defer o.mu.Unlock()
	return slices.Clone(o.lines)
}

var _ Outcomes = (*outcomeLog)(nil)

// scriptedUpstream is a fakeUpstream with a peer and a final reply or
// failure for DATA.
type scriptedUpstream struct {
	*fakeUpstream
	peer    Peer
	final   *smtp.SMTPError
	dataErr error
}

func (u *scriptedUpstream) Data(_ []byte, r io.Reader) (*smtp.SMTPError, error) {
	io.Copy(io.Discard, r)
	return u.final, u.dataErr
}
func (u *scriptedUpstream) Peer() Peer { return u.peer }

// scriptedOpener opens the upstream made for the route's first host, or
// fails with the error given for it.
type scriptedOpener struct {
	fail map[string]error
	make map[string]func(*enforcement.Route) *scriptedUpstream
}

func (o scriptedOpener) Open(_ context.Context, route *enforcement.Route) (Upstream, error) {
	name := route.Hosts[0].Name
	if err := o.fail[name]; err != nil {
		return nil, err
	}
	return o.make[name](route), nil
}

func TestOutcomesRecorded(t *testing.T) {
	daneTLS13 := func(route *enforcement.Route) Peer {
		h := route.Hosts[0]
		h.Req.Source = enforcement.SourceDANE
		return Peer{Route: route, Host: h, TLS: tls.ConnectionState{Version: tls.VersionTLS13}}
	}
	opener := scriptedOpener{
		fail: map[string]error{
			"mx.nostarttls.test": &enforcement.Failure{Kind: enforcement.KindNoSTARTTLS, Domain: "nostarttls.test",
				Policy: "floor encrypt", Host: "mx.nostarttls.test", Reason: "STARTTLS not offered"},
		},
		make: map[string]func(*enforcement.Route) *scriptedUpstream{
			"mx.ok.test": func(r *enforcement.Route) *scriptedUpstream {
				return &scriptedUpstream{fakeUpstream: &fakeUpstream{route: r}, peer: daneTLS13(r), final: &smtp.SMTPError{Code: 250, Message: "queued"}}
			},
			"mx.busy.test": func(r *enforcement.Route) *scriptedUpstream {
				return &scriptedUpstream{fakeUpstream: &fakeUpstream{route: r, rcptErr: map[string]error{
					"full@busy.test":    &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: `mailbox "full" <script>`},
					"unknown@busy.test": &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"},
				}}, peer: daneTLS13(r), final: &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later"}}
			},
			"mx.lost.test": func(r *enforcement.Route) *scriptedUpstream {
				return &scriptedUpstream{fakeUpstream: &fakeUpstream{route: r}, peer: daneTLS13(r),
					dataErr: &enforcement.Failure{Kind: enforcement.KindLost, Domain: "lost.test", Host: "mx.lost.test", Reason: "connection lost"}}
			},
		},
	}
	router := &fakeRouter{resolved: map[string]int{}, routes: map[string]*enforcement.Route{
		"ok.test":         routeVia("mx.ok.test"),
		"also-ok.test":    routeVia("mx.ok.test"),
		"busy.test":       routeVia("mx.busy.test"),
		"lost.test":       routeVia("mx.lost.test"),
		"nostarttls.test": routeVia("mx.nostarttls.test"),
	}}
	const body = "Subject: x\r\n\r\nhello\r\n."
	tests := []struct {
		name  string
		rcpts []string
		data  bool
		want  []string
	}{
		{
			name:  "delivered once per domain, by source and TLS version",
			rcpts: []string{"a@ok.test", "b@ok.test", "c@also-ok.test"},
			data:  true,
			want:  []string{"delivered ok.test DANE TLS 1.3", "delivered also-ok.test DANE TLS 1.3"},
		},
		{
			name:  "recipient deferred by policy, the other delivered",
			rcpts: []string{"b@nostarttls.test", "a@ok.test"},
			data:  true,
			want: []string{
				"deferred nostarttls.test starttls 451 4.7.4 nostarttls.test: floor encrypt: mx.nostarttls.test: STARTTLS not offered",
				"delivered ok.test DANE TLS 1.3",
			},
		},
		{
			name:  "another route is no deferral",
			rcpts: []string{"a@ok.test", "b@busy.test"},
			data:  true,
			want:  []string{"delivered ok.test DANE TLS 1.3"},
		},
		{
			name:  "MX replies: 4xx to RCPT and DATA deferred, 5xx not",
			rcpts: []string{"full@busy.test", "unknown@busy.test", "x@busy.test"},
			data:  true,
			want: []string{
				`deferred busy.test mx 452 4.2.2 mailbox "full" <script>`,
				"deferred busy.test mx 451 4.3.0 try later",
			},
		},
		{
			name:  "connection lost in DATA",
			rcpts: []string{"a@lost.test"},
			data:  true,
			want:  []string{"deferred lost.test lost 451 4.4.2 lost.test: mx.lost.test: connection lost"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := &outcomeLog{}
			_, dial := newTestServer(t, Options{Router: router, Opener: opener, Outcomes: out})
			lines := []string{"EHLO legacy.test", "MAIL FROM:<s@legacy.test>"}
			for _, r := range tc.rcpts {
				lines = append(lines, "RCPT TO:<"+r+">")
			}
			if tc.data {
				lines = append(lines, "DATA", body)
			}
			replies := converse(t, dial("127.0.0.1"), append(lines, "QUIT")...)
			if got := out.get(); !slices.Equal(got, tc.want) {
				t.Errorf("recorded\n%s\nwant\n%s\nreplies %q", strings.Join(got, "\n"), strings.Join(tc.want, "\n"), replies)
			}
		})
	}
}

func TestOutcomesDefaultNone(t *testing.T) {
	// No Outcomes: recording is a no-op, not a nil dereference.
	_, dial := newTestServer(t, Options{})
	r := converse(t, dial("127.0.0.1"), "EHLO legacy.test", "MAIL FROM:<s@legacy.test>", "RCPT TO:<a@x.test>")
	if !strings.HasPrefix(r[3], "451 4.7.4") {
		t.Fatalf("RCPT: %q", r[3])
	}
}

// relaxedRouter fails Resolve for the domains in fail and answers
// RelaxedRoute from relaxed.
type relaxedRouter struct {
	*fakeRouter
	relaxed map[string]*enforcement.Route
}

func (r relaxedRouter) RelaxedRoute(_ context.Context, domain string) (*enforcement.Route, error) {
	route := *r.relaxed[domain]
	route.Domain = domain
	return &route, nil
}

// TestOutcomesConditionalRecipients: recipients accepted on condition of
// "TLS-Required: No" are decided at DATA; the status page counts that
// decision like any other: the original deferral when the message does
// not waive it, the relaxed route's delivery or its MX's refusal when it
// does, and nothing for a message our client sent malformed.
func TestOutcomesConditionalRecipients(t *testing.T) {
	tlsFailure := func(domain string) error {
		return &enforcement.Failure{Kind: enforcement.KindTLS, Domain: domain, Policy: "floor verify",
			Host: "mx." + domain, Reason: "certificate not trusted"}
	}
	opener := scriptedOpener{make: map[string]func(*enforcement.Route) *scriptedUpstream{
		"mx.weak.test": func(r *enforcement.Route) *scriptedUpstream {
			return &scriptedUpstream{fakeUpstream: &fakeUpstream{route: r},
				peer:  Peer{Route: r, Host: r.Hosts[0], TLS: tls.ConnectionState{Version: tls.VersionTLS12}},
				final: &smtp.SMTPError{Code: 250, Message: "queued"}}
		},
		"mx.picky.test": func(r *enforcement.Route) *scriptedUpstream {
			return &scriptedUpstream{fakeUpstream: &fakeUpstream{route: r, rcptErr: map[string]error{
				"a@picky.test": &smtp.SMTPError{Code: 450, EnhancedCode: smtp.EnhancedCode{4, 2, 0}, Message: "greylisted"},
			}}, peer: Peer{Route: r, Host: r.Hosts[0]}}
		},
	}}
	router := relaxedRouter{
		fakeRouter: &fakeRouter{resolved: map[string]int{}, fail: map[string]error{
			"weak.test": tlsFailure("weak.test"), "picky.test": tlsFailure("picky.test"),
		}},
		relaxed: map[string]*enforcement.Route{"weak.test": routeVia("mx.weak.test"), "picky.test": routeVia("mx.picky.test")},
	}
	tests := []struct {
		name      string
		rcpt      string
		body      string
		wantReply string
		want      []string
	}{
		{
			name: "no TLS-Required: No: the original deferral", rcpt: "a@weak.test",
			body:      "Subject: x\r\n\r\nhello\r\n.",
			wantReply: "451 4.7.5",
			want:      []string{"deferred weak.test tls 451 4.7.5 weak.test: floor verify: mx.weak.test: certificate not trusted (the message has no TLS-Required: No header field)"},
		},
		{
			name: "TLS-Required: No: delivered on the relaxed route", rcpt: "a@weak.test",
			body:      "TLS-Required: No\r\nSubject: x\r\n\r\nhello\r\n.",
			wantReply: "250",
			want:      []string{"delivered weak.test floor TLS 1.2"},
		},
		{
			name: "TLS-Required: No, the MX refuses the recipient", rcpt: "a@picky.test",
			body:      "TLS-Required: No\r\nSubject: x\r\n\r\nhello\r\n.",
			wantReply: "451 4.5.0",
			want:      []string{"deferred picky.test mx 451 4.5.0 <a@picky.test> refused at delivery under TLS-Required: No: greylisted"},
		},
		{
			name: "a header with a bare LF: the client's fault, not counted", rcpt: "a@weak.test",
			body:      "Subject: x\nTLS-Required: No\r\n\r\nhello\r\n.",
			wantReply: "550 5.6.11",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := &outcomeLog{}
			_, dial := newTestServer(t, Options{Router: router, Opener: opener, Outcomes: out, HonorTLSRequiredNo: true})
			replies := converse(t, dial("127.0.0.1"), "EHLO legacy.test", "MAIL FROM:<s@legacy.test>",
				"RCPT TO:<"+tc.rcpt+">", "DATA", tc.body, "QUIT")
			if last := replies[len(replies)-2]; !strings.HasPrefix(last, tc.wantReply) {
				t.Fatalf("the message was answered %q, want %s (replies %q)", last, tc.wantReply, replies)
			}
			if got := out.get(); !slices.Equal(got, tc.want) {
				t.Errorf("recorded\n%s\nwant\n%s\nreplies %q", strings.Join(got, "\n"), strings.Join(tc.want, "\n"), replies)
			}
		})
	}
}
