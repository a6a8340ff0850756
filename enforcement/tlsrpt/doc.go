// Package tlsrpt implements SMTP TLS Reporting (RFC 8460) for sealgate:
// the recording of every upstream attempt (Recorder, an
// enforcement.AttemptRecorder that never blocks delivery), its aggregation
// per UTC day and policy domain in the state store, the JSON report of
// RFC 8460 §4.4 (Build), the _smtp._tls TXT record of §3 (ParseRecord),
// and the delivery of gzip'd reports to every rua, by HTTPS POST (§5.4)
// or as the multipart/report message of §5.3 (Reporter, Scheduler).
//
// Reports are never sent in cleartext: https URIs are verified against
// the WebPKI, and mail goes through the caller's MailFunc, which sealgate
// wires to its own delivery path with mandatory encryption.
package tlsrpt
