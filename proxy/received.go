package proxy

import (
	"crypto/tls"
	"fmt"
	"strings"
	"time"

	"sealgate/upstream"
)

// receivedInfo is what the Received header of one message records.
type receivedInfo struct {
	Helo       string
	RemoteIP   string
	By         string
	ID         string
	InboundTLS *tls.ConnectionState
	Authed     bool
	Upstream   string // MX host name
	UpTLS      tls.ConnectionState
	Verified   string // how the MX was authenticated
	For        string // the single recipient, if only one
	Date       time.Time
}

// header formats a Received header field (RFC 5321 §4.4, protocol names
// from RFC 3848), folded, ending in CRLF.
func (r receivedInfo) header() []byte {
	proto := "ESMTP"
	if r.InboundTLS != nil {
		proto += "S"
	}
	if r.Authed {
		proto += "A"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "Received: from %s ([%s])\r\n\tby %s (sealgate) with %s id %s\r\n",
		sanitize(r.Helo), r.RemoteIP, r.By, proto, r.ID)
	fmt.Fprintf(&b, "\t(upstream %s %s to %s; %s)\r\n",
		tls.VersionName(r.UpTLS.Version), tls.CipherSuiteName(r.UpTLS.CipherSuite), r.Upstream, sanitize(r.Verified))
	if r.For != "" {
		fmt.Fprintf(&b, "\tfor <%s>;", sanitize(upstream.QuoteAddress(r.For)))
	} else {
		b.WriteString("\t;")
	}
	fmt.Fprintf(&b, " %s\r\n", r.Date.Format(time.RFC1123Z))
	return []byte(b.String())
}

// sanitize keeps a client-supplied string from breaking the header.
func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '(' || r == ')' || r == '\\':
			return '_'
		case r < 0x20 || r == 0x7f:
			return -1
		}
		return r
	}, s)
}
