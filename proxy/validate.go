package proxy

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/emersion/go-smtp"
)

// Syntax checks of what a client puts in EHLO, MAIL FROM and RCPT TO,
// made before anything is resolved or sent upstream.
//
// go-smtp's server splits command lines at LF (a bare LF ends a command;
// what follows is a command of its own), strips the CR of CRLF and
// surrounding white space, and removes the quotes and backslashes of a
// quoted local part. Everything else reaches the session as the client
// sent it: NUL, a bare CR, other control characters, bytes that are not
// UTF-8. RFC 5321 §2.3.8 forbids CR and LF anywhere but in the line
// ending, and §4.1.2 allows no control character in an address, not even
// quoted (qtextSMTP and quoted-pairSMTP are %d32-126; RFC 6531 adds only
// UTF-8). Such a command is refused with 501 here and never forwarded.

// RFC 5321 §4.5.3.1 limits.
const (
	maxLocalPart = 64
	maxDomain    = 255
	maxPath      = 256 // including the angle brackets
)

// checkHelo returns the reply that refuses an EHLO or HELO argument, or nil
// to accept it. Legacy servers give odd but harmless names (a bare host
// name, an underscore); those pass. The name ends up in our Received
// header and logs, so control characters and bytes that are not UTF-8 do
// not.
func checkHelo(name string) *smtp.SMTPError {
	cause := ""
	switch {
	case name == "":
		cause = "empty"
	case len(name) > maxDomain:
		cause = fmt.Sprintf("longer than %d octets", maxDomain)
	default:
		cause = badBytes(name)
	}
	if cause == "" {
		return nil
	}
	return &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 5, 2}, Message: "EHLO argument: " + cause}
}

// checkSender returns the reply that refuses a MAIL FROM reverse path as
// go-smtp hands it over (without angle brackets, a quoted local part
// unquoted; "" is the null sender), or nil to accept it.
func checkSender(addr string) *smtp.SMTPError {
	if addr == "" {
		return nil
	}
	if cause := checkMailbox(addr); cause != "" {
		return &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 1, 7}, Message: "sender address: " + cause}
	}
	return nil
}

// checkRecipient is checkSender for a RCPT TO forward path. An address
// literal passes here; routing refuses it later (it cannot be
// authenticated).
func checkRecipient(addr string) *smtp.SMTPError {
	if cause := checkMailbox(addr); cause != "" {
		return &smtp.SMTPError{Code: 501, EnhancedCode: smtp.EnhancedCode{5, 1, 3}, Message: "recipient address: " + cause}
	}
	return nil
}

// checkMailbox returns why addr (local@domain, local part unquoted) is
// not a mailbox we forward, or "". The domain starts after the last "@":
// a domain cannot hold one, while a quoted local part can.
func checkMailbox(addr string) string {
	if cause := badBytes(addr); cause != "" {
		return cause
	}
	if len(addr)+2 > maxPath {
		return fmt.Sprintf("path longer than %d octets", maxPath)
	}
	i := strings.LastIndexByte(addr, '@')
	switch {
	case i < 0:
		return "no domain"
	case i == 0:
		return "empty local part"
	case i > maxLocalPart:
		return fmt.Sprintf("local part longer than %d octets", maxLocalPart)
	}
	return checkDomain(addr[i+1:])
}

// checkDomain returns why d is neither a domain (RFC 5321 §4.1.2; labels
// of letters, digits, hyphens, with underscores tolerated, and UTF-8
// U-labels as RFC 6531 allows) nor an address literal (§4.1.3), or "". A
// final dot is tolerated as it always was.
func checkDomain(d string) string {
	switch {
	case d == "":
		return "empty domain"
	case len(d) > maxDomain:
		return fmt.Sprintf("domain longer than %d octets", maxDomain)
	case d[0] == '[':
		inner, ok := strings.CutSuffix(d[1:], "]")
		if !ok || inner == "" {
			return "malformed address literal"
		}
		for i := 0; i < len(inner); i++ {
			// dcontent: %d33-90 / %d94-126
			if c := inner[i]; c < 33 || c > 126 || (c >= '[' && c <= ']') {
				return fmt.Sprintf("character %q not allowed in address literal", c)
			}
		}
		return ""
	}
	for _, label := range strings.Split(strings.TrimSuffix(d, "."), ".") {
		if label == "" {
			return "empty label in domain"
		}
		if len(label) > 63 {
			return "domain label longer than 63 octets"
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if c < utf8.RuneSelf && !isLetDig(c) && c != '-' && c != '_' {
				return fmt.Sprintf("character %q not allowed in domain", c)
			}
		}
	}
	return ""
}

// badBytes returns why s holds a byte no command argument may carry: a
// control character (C0, including NUL, CR and LF, or DEL) or a sequence
// that is not UTF-8. The cause names the byte in hex, never raw.
func badBytes(s string) string {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return fmt.Sprintf("control character 0x%02X not allowed", c)
		}
	}
	if !utf8.ValidString(s) {
		return "not valid UTF-8"
	}
	return ""
}

func isLetDig(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9'
}
