package upstreamtest

import (
	"crypto/tls"
	"crypto/x509"
	"slices"

	"github.com/emersion/go-smtp"
)

// TLSInfo describes a completed TLS handshake as the server saw it.
type TLSInfo struct {
	Version     uint16 // tls.VersionTLS12, tls.VersionTLS13, ...
	CipherSuite uint16
	// ServerName is the SNI the client sent (empty when it sent none).
	ServerName string
	// PeerCertificates is the client's certificate chain, nil when the
	// client presented none.
	PeerCertificates []*x509.Certificate
	DidResume        bool
}

func tlsInfoOf(st tls.ConnectionState) *TLSInfo {
	return &TLSInfo{
		Version:          st.Version,
		CipherSuite:      st.CipherSuite,
		ServerName:       st.ServerName,
		PeerCertificates: st.PeerCertificates,
		DidResume:        st.DidResume,
	}
}

// ConnInfo is what the MX saw on one TCP connection.
type ConnInfo struct {
	RemoteAddr string
	// EHLO holds the names given in EHLO or HELO commands, in order.
	EHLO []string
	// Commands holds every line the client sent outside message bodies,
	// before and after TLS, CRLF removed, in order (AUTH exchanges
	// included). Lines the fake answered itself (STARTTLS, faults) are
	// included too.
	Commands []string
	// TLS is set once a TLS handshake completed on the connection.
	TLS *TLSInfo
	// HandshakeError is the server-side error of a failed TLS handshake.
	HandshakeError string
	// Dropped reports that DropInData closed the connection.
	Dropped bool
	// Cleartext holds the command lines that arrived before a completed
	// TLS handshake, CRLF removed, in order.
	Cleartext []string
	// BodyBytes counts the message body bytes (as sent, dot-stuffed, BDAT
	// chunks included) that arrived on the connection so far.
	BodyBytes int64
	// HungUp names the stage at which MXOptions.Hangup closed the
	// connection; empty when it did not.
	HungUp string
}

func (c ConnInfo) clone() ConnInfo {
	c.EHLO = slices.Clone(c.EHLO)
	c.Commands = slices.Clone(c.Commands)
	c.Cleartext = slices.Clone(c.Cleartext)
	return c
}

// Rcpt is one accepted recipient with its RCPT parameters.
type Rcpt struct {
	To      string
	Options smtp.RcptOptions
}

// Message is one transaction that reached the message body.
type Message struct {
	// Conn is the index of the connection in (*MX).Conns.
	Conn int
	// EHLO is the name the client gave in the EHLO in effect.
	EHLO string
	// From is the reverse path of MAIL FROM, without angle brackets.
	From        string
	MailOptions smtp.MailOptions
	// Rcpts holds the accepted recipients only; rejected RCPT commands
	// appear in ConnInfo.Commands.
	Rcpts []Rcpt
	// Data is the body exactly as received after dot-unstuffing,
	// including CRLF line endings (for BDAT, the chunks concatenated).
	Data []byte
	// TLS describes the session's TLS, nil for a cleartext transaction.
	TLS *TLSInfo
	// AuthUser is the user authenticated with AUTH, if any.
	AuthUser string
	// Accepted reports that the MX answered the body with 250. It is false
	// when DataReply rejected it or the body was cut short.
	Accepted bool
	// Dropped reports that the body did not arrive whole (DropInData, or
	// the client went away).
	Dropped bool
}

func (m Message) clone() Message {
	m.Rcpts = slices.Clone(m.Rcpts)
	m.Data = slices.Clone(m.Data)
	return m
}
