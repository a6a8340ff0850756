package upstreamtest

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/emersion/go-smtp"
)

// parseReplyLine splits one reply line (CRLF removed) into its three-digit
// code, whether more lines of the reply follow ("250-"), and its text. ok is
// false for a line that is not an SMTP reply line (RFC 5321 §4.2).
func parseReplyLine(line string) (code string, more bool, text string, ok bool) {
	if len(line) < 3 || !isDigits(line[:3]) {
		return "", false, "", false
	}
	code = line[:3]
	switch {
	case len(line) == 3:
		return code, false, "", true
	case line[3] == '-':
		return code, true, line[4:], true
	case line[3] == ' ':
		return code, false, line[4:], true
	}
	return "", false, "", false
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// joinReply formats a reply of one or more lines, with "-" after the code
// on every line but the last.
func joinReply(code string, texts []string) []byte {
	var b bytes.Buffer
	for i, t := range texts {
		sep := byte('-')
		if i == len(texts)-1 {
			sep = ' '
		}
		b.WriteString(code)
		b.WriteByte(sep)
		b.WriteString(t)
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

// formatError formats e as go-smtp's server would: a missing enhanced code
// becomes X.0.0 for 2xx, 4xx and 5xx replies; smtp.NoEnhancedCode leaves it
// out. Unlike go-smtp, every line of a multi-line text carries the enhanced
// code (RFC 2034 §4).
func formatError(e *smtp.SMTPError) []byte {
	ec := e.EnhancedCode
	if ec == smtp.EnhancedCodeNotSet {
		switch cat := e.Code / 100; cat {
		case 2, 4, 5:
			ec = smtp.EnhancedCode{cat, 0, 0}
		default:
			ec = smtp.NoEnhancedCode
		}
	}
	texts := strings.Split(e.Message, "\n")
	if ec != smtp.NoEnhancedCode {
		for i, t := range texts {
			texts[i] = fmt.Sprintf("%d.%d.%d %s", ec[0], ec[1], ec[2], t)
		}
	}
	return joinReply(fmt.Sprintf("%03d", e.Code), texts)
}

// keyword returns the EHLO keyword of a capability line ("SIZE 1000" gives
// "SIZE"), upper-cased.
func keyword(capLine string) string {
	kw, _, _ := strings.Cut(strings.TrimSpace(capLine), " ")
	return strings.ToUpper(kw)
}

// stripCapability removes every capability line whose keyword is kw from a
// complete 250 EHLO reply given as raw lines, and re-emits the continuation
// markers so the reply stays valid. The first line (the greeting text) is
// never removed. It returns reply unchanged and false when reply is not a
// well-formed multi-line 250 reply or holds no such capability.
func stripCapability(reply []byte, kw string) ([]byte, bool) {
	raw := strings.Split(strings.TrimSuffix(string(reply), "\n"), "\n")
	if len(raw) < 2 {
		return reply, false
	}
	texts := make([]string, 0, len(raw))
	removed := false
	for i, l := range raw {
		code, more, text, ok := parseReplyLine(strings.TrimSuffix(l, "\r"))
		if !ok || code != "250" || more != (i < len(raw)-1) {
			return reply, false
		}
		if i > 0 && keyword(text) == kw {
			removed = true
			continue
		}
		texts = append(texts, text)
	}
	if !removed {
		return reply, false
	}
	return joinReply("250", texts), true
}
