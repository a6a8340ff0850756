package postfix

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// MXOptions makes an instance the MX of some domains: its smtpd (on
// Options.SMTPListen) accepts mail for them from anyone, as a destination
// (RFC 5321 section 5), and keeps every message it accepts on the hold
// queue, where Held reads it back, instead of delivering it anywhere.
type MXOptions struct {
	// Domains are the recipient domains accepted (relay_domains); at
	// least one. Mail for other domains is refused with 554 5.7.1.
	Domains []string
	// Certificate, when set, is presented to clients that send STARTTLS
	// (RFC 3207; smtpd_tls_security_level = may). Nil means STARTTLS is
	// neither offered nor accepted (smtpd_tls_security_level = none).
	Certificate *tls.Certificate
	// RejectRcpt refuses the addresses it names at RCPT TO with the reply
	// it gives, written as an access(5) action, e.g. "550 5.1.1 User
	// unknown". smtpd prefixes the text with "<address>: Recipient
	// address rejected: ".
	RejectRcpt map[string]string
}

// Files of an MX instance, in its config_directory.
const (
	mxChainFile  = "smtpd.pem"        // private key, then the certificate chain
	mxAccessFile = "recipient_access" // texthash: no postmap needed
)

// validate checks MXOptions.
func (m *MXOptions) validate() error {
	if len(m.Domains) == 0 {
		return fmt.Errorf("%w: MX.Domains is empty", ErrBadOption)
	}
	for _, d := range m.Domains {
		if d == "" || strings.ContainsAny(d, " \t\r\n,") {
			return fmt.Errorf("%w: MX.Domains %q", ErrBadOption, d)
		}
	}
	if c := m.Certificate; c != nil && (len(c.Certificate) == 0 || c.PrivateKey == nil) {
		return fmt.Errorf("%w: MX.Certificate has no chain or no key", ErrBadOption)
	}
	for addr, action := range m.RejectRcpt {
		if addr == "" || strings.ContainsAny(addr, " \t\r\n#") || action == "" || strings.ContainsAny(action, "\r\n") {
			return fmt.Errorf("%w: MX.RejectRcpt %q = %q", ErrBadOption, addr, action)
		}
	}
	return nil
}

// mxMainCF returns the main.cf parameters of an MX instance.
func mxMainCF(m *MXOptions, p paths) map[string]string {
	params := map[string]string{
		"relay_domains": strings.Join(m.Domains, " "),
		// A destination: no relaying for anyone, loopback clients included.
		"smtpd_relay_restrictions": "reject_unauth_destination",
		// The client is a remote MTA: no rewriting of its headers, no
		// Message-ID or Date added, so that Held shows what it sent.
		"local_header_rewrite_clients": "",
		// Keep every accepted message; nothing is delivered.
		"smtpd_data_restrictions":  "check_client_access static:HOLD",
		"smtpd_tls_security_level": "none",
	}
	if len(m.RejectRcpt) > 0 {
		params["smtpd_recipient_restrictions"] = "check_recipient_access texthash:" + filepath.Join(p.config, mxAccessFile)
	}
	if m.Certificate != nil {
		params["smtpd_tls_security_level"] = "may"
		params["smtpd_tls_chain_files"] = filepath.Join(p.config, mxChainFile)
		params["smtpd_tls_loglevel"] = "1"
		params["smtpd_tls_received_header"] = "yes"
	}
	return params
}

// accessMap renders RejectRcpt as a texthash access table.
func accessMap(reject map[string]string) string {
	var b strings.Builder
	for _, addr := range slices.Sorted(maps.Keys(reject)) {
		fmt.Fprintf(&b, "%s %s\n", addr, reject[addr])
	}
	return b.String()
}

// chainPEM encodes the private key (PKCS #8) followed by the certificate
// chain, leaf first: the layout smtpd_tls_chain_files reads.
func chainPEM(c *tls.Certificate) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		return nil, fmt.Errorf("MX certificate key: %w", err)
	}
	out := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	for _, cert := range c.Certificate {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert})...)
	}
	return out, nil
}

// writeMXFiles writes the key and chain (mode 0600, owned by root: smtpd
// reads it before it drops privileges) and the access table.
func writeMXFiles(m *MXOptions, p paths) error {
	if m.Certificate != nil {
		b, err := chainPEM(m.Certificate)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(p.config, mxChainFile), b, 0o600); err != nil {
			return err
		}
	}
	if len(m.RejectRcpt) > 0 {
		return writeConfig(p.config, map[string]string{mxAccessFile: accessMap(m.RejectRcpt)})
	}
	return nil
}

// HeldMessage is one message an MX instance accepted and keeps on hold.
type HeldMessage struct {
	ID string
	// Sender is the envelope sender.
	Sender string
	// Recipients are the envelope recipients smtpd accepted.
	Recipients []string
	// Data is the message as stored: the Received header smtpd added, then
	// what the client sent, with LF line ends.
	Data []byte
}

// Held returns the messages on the hold queue, with their content
// ("postqueue -j", then "postcat -c DIR -bh -q ID" for each).
func (in *Instance) Held() ([]HeldMessage, error) {
	entries, err := in.Queue()
	if err != nil {
		return nil, err
	}
	var out []HeldMessage
	for _, e := range entries {
		if e.Queue != "hold" {
			continue
		}
		// With -h and -b but not -e, postcat prints the content alone,
		// with no "*** ... ***" section markers.
		data, err := in.run(nil, in.bins.postcat, "-c", in.paths.config, "-bh", "-q", e.ID)
		if err != nil {
			return nil, err
		}
		m := HeldMessage{ID: e.ID, Sender: e.Sender, Data: data}
		for _, r := range e.Recipients {
			m.Recipients = append(m.Recipients, r.Address)
		}
		out = append(out, m)
	}
	return out, nil
}

// WaitHeld waits until n messages are on hold and returns them.
func (in *Instance) WaitHeld(n int, timeout time.Duration) ([]HeldMessage, error) {
	if _, err := in.WaitQueue(func(q []QueueEntry) bool {
		return len(slices.DeleteFunc(slices.Clone(q), func(e QueueEntry) bool { return e.Queue != "hold" })) >= n
	}, timeout); err != nil {
		return nil, err
	}
	return in.Held()
}
