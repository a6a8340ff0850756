package proxy

import (
	"bytes"
	"crypto/tls"
	"strings"
	"testing"

	"sealgate/certs/certstest"
)

// abandonRounds repeats each case: the delivery of an abandoned message
// was a race that the gateway lost most of the time, not always.
const abandonRounds = 5

// TestAbandonedMessageNeverCompleted: a message the client does not
// finish never reaches the MX's 250, whatever ends it; a message sent
// afterwards arrives whole.
func TestAbandonedMessageNeverCompleted(t *testing.T) {
	first := op{kind: opBdat, data: bytes.Repeat([]byte("first chunk of an unfinished message\r\n"), 20000/38+1)[:20000]}
	mail := op{kind: opMail}
	next := op{kind: opBdat, last: true, data: []byte("Subject: next\r\n\r\nsent whole\r\n")}
	tests := []struct {
		name     string
		maxBytes int64
		ops      []op
		// wantLast is the prefix of the last reply the client got.
		wantLast string
	}{
		{name: "RSET after a chunk", ops: []op{mail, first, {kind: opRset}, mail, next}, wantLast: "250 2.0.0"},
		{name: "QUIT after a chunk", ops: []op{mail, first, {kind: opQuit}, mail, next}, wantLast: "250 2.0.0"},
		{name: "new MAIL after a chunk", ops: []op{mail, first, mail, {kind: opHangUp}}},
		{name: "socket closed after a chunk", ops: []op{mail, first, {kind: opHangUp}, mail, next}, wantLast: "250 2.0.0"},
		{name: "socket half-closed after a chunk", ops: []op{mail, first, {kind: opHangUp, half: true}}},
		{
			name: "second chunk over the SIZE limit", maxBytes: 30000,
			ops:      []op{mail, first, {kind: opBdat, last: true, data: first.data}},
			wantLast: "552 5.3.4",
		},
		{
			name: "LAST chunk cut short, socket closed",
			ops:  []op{mail, {kind: opCutChunk, last: true, data: first.data, cut: 10000}},
		},
		{
			name: "LAST chunk cut short, socket half-closed",
			ops:  []op{mail, {kind: opCutChunk, last: true, half: true, data: first.data, cut: 10000}},
		},
		{
			name: "second chunk cut short",
			ops:  []op{mail, first, {kind: opCutChunk, last: true, half: true, data: first.data, cut: 100}},
		},
		{
			name: "DATA body cut short",
			ops:  []op{mail, {kind: opCutData, half: true, data: first.data, cut: 15000}},
		},
	}
	ca := certstest.NewCA(t, "sealgate test root")
	cert := ca.Leaf("mx.example.test")
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for round := range abandonRounds {
				g := newGateway(t, &cert, tc.maxBytes)
				lc := &legacyClient{t: t, addr: g.addr}
				for _, o := range tc.ops {
					lc.run(o)
				}
				last := lc.last
				lc.drop()
				g.settle(t)
				if err := promiseKept(g.mx, lc.sent); err != nil {
					t.Fatalf("round %d: %v\ntranscript:\n%s", round, err, strings.Join(lc.log, "\n"))
				}
				if !strings.HasPrefix(last, tc.wantLast) {
					t.Fatalf("round %d: last reply %q, want %q\ntranscript:\n%s", round, last, tc.wantLast, strings.Join(lc.log, "\n"))
				}
			}
		})
	}
}

// TestChunkCutByCloseNotify: on a STARTTLS session, a client that ends
// its TLS stream (close_notify) inside a LAST chunk and keeps the TCP
// connection open has not finished its message. Nothing below TLS shows
// the end, and go-smtp takes it for the end of the chunk.
func TestChunkCutByCloseNotify(t *testing.T) {
	ca := certstest.NewCA(t, "sealgate test root")
	mxCert := ca.Leaf("mx.example.test")
	gwCert := ca.Leaf("gw.example.test")
	first := bytes.Repeat([]byte("0123456789abcdefghijklmnopqrstuvwxyz\r\n"), 500)
	for _, tc := range []struct {
		name string
		ops  []op
	}{
		{name: "LAST chunk", ops: []op{{kind: opMail}, {kind: opCutChunk, last: true, half: true, data: first, cut: 10000}}},
		{name: "LAST chunk after a whole one", ops: []op{{kind: opMail}, {kind: opBdat, data: first}, {kind: opCutChunk, last: true, half: true, data: first, cut: 1}}},
		{name: "LAST chunk with nothing of it sent", ops: []op{{kind: opMail}, {kind: opBdat, data: first}, {kind: opCutChunk, last: true, half: true, data: first, cut: 0}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for round := range abandonRounds {
				g := newGateway(t, &mxCert, 0, func(o *Options) {
					o.TLSConfig = &tls.Config{Certificates: []tls.Certificate{gwCert}}
				})
				lc := &legacyClient{t: t, addr: g.addr, tls: &tls.Config{RootCAs: ca.Pool(), ServerName: "gw.example.test"}}
				for _, o := range tc.ops {
					lc.run(o)
				}
				lc.drop()
				g.settle(t)
				if err := promiseKept(g.mx, lc.sent); err != nil {
					t.Fatalf("round %d: %v\ntranscript:\n%s", round, err, strings.Join(lc.log, "\n"))
				}
				// The client still listens after its close_notify.
				if !strings.HasPrefix(lc.last, "451 4.3.0") {
					t.Fatalf("round %d: last reply %q, want 451 4.3.0\ntranscript:\n%s", round, lc.last, strings.Join(lc.log, "\n"))
				}
				if !strings.Contains(strings.Join(lc.log, "\n"), "-- TLS") {
					t.Fatalf("the session never went to TLS:\n%s", strings.Join(lc.log, "\n"))
				}
			}
		})
	}
}

// TestChunkedAndDataDeliveryWhole: finished messages, by DATA and by BDAT
// in several chunks, arrive as sent after one Received header.
func TestChunkedAndDataDeliveryWhole(t *testing.T) {
	ca := certstest.NewCA(t, "sealgate test root")
	cert := ca.Leaf("mx.example.test")
	g := newGateway(t, &cert, 0)
	lc := &legacyClient{t: t, addr: g.addr}
	body := []byte("Subject: chunked\r\n\r\n.a line with a dot\r\n.\r\nend\r\n")
	for _, o := range []op{
		{kind: opMail},
		{kind: opBdat, data: body[:7]},
		{kind: opBdat, data: body[7:30]},
		{kind: opBdat, last: true, data: body[30:]},
		{kind: opMail},
		{kind: opData, data: body},
		{kind: opMail},
		{kind: opBdat, last: true},
	} {
		lc.run(o)
	}
	lc.drop()
	g.settle(t)
	if len(lc.sent) != 3 {
		t.Fatalf("%d messages accepted, want 3\ntranscript:\n%s", len(lc.sent), strings.Join(lc.log, "\n"))
	}
	if err := promiseKept(g.mx, lc.sent); err != nil {
		t.Fatal(err)
	}
}

// TestChunkCountReadable: the go-smtp in go.mod still keeps the BDAT byte
// count that the truncation check reads (see chunks.go).
func TestChunkCountReadable(t *testing.T) {
	if err := checkChunkCount(); err != nil {
		t.Fatal(err)
	}
}
