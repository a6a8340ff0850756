package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"strings"

	"github.com/emersion/go-smtp"

	"sealgate/enforcement"
)

// pendingRcpt is a recipient accepted on condition that the message
// carries "TLS-Required: No" (RFC 8689 §5): its domain's TLS policy could
// not be met, and the administrator lets senders waive it.
type pendingRcpt struct {
	to   string
	opts *smtp.RcptOptions
}

// maxHeaderPeek bounds how much of the message is read to find the
// TLS-Required header field before the upstream connection exists.
const maxHeaderPeek = 1 << 20

// canWaive reports whether a refusal of a recipient may be waived by the
// message's "TLS-Required: No": only policy failures (never a missing
// STARTTLS: the encrypt floor holds), only when the administrator allows
// it, not for REQUIRETLS messages (RFC 8689 §5), and only before an
// upstream transaction started.
func (t *transaction) canWaive(err error) bool {
	if !t.waive || t.up != nil {
		return false
	}
	if t.mailOpts != nil && t.mailOpts.RequireTLS {
		return false
	}
	f, ok := enforcement.AsFailure(err)
	return ok && f.Kind == enforcement.KindTLS
}

// pend accepts a recipient on condition (see pendingRcpt).
func (t *transaction) pend(ctx context.Context, to, domain string, opts *smtp.RcptOptions, cause error) error {
	if len(t.pending) == 0 {
		route, err := t.router.RelaxedRoute(ctx, domain)
		if err != nil {
			return cause
		}
		t.pendingRoute = route
		t.pendingCause, t.pendingErr = Reply(cause), cause
	} else if domain != t.pendingRoute.Domain {
		return otherRoute(domain)
	}
	t.pending = append(t.pending, pendingRcpt{to: to, opts: opts})
	t.log.Info("recipient accepted on condition of TLS-Required: No", "rcpt", to, "cause", t.pendingCause.Message)
	return nil
}

// openPending decides the conditional recipients at DATA: it reads the
// header section, and if it holds "TLS-Required: No", opens the relaxed
// route and sends MAIL and RCPT. It returns the reader of the whole
// message. The upstream connection goes to the run, so that an abandoned
// message cuts it.
func (t *transaction) openPending(run *dataRun, r io.Reader) (io.Reader, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	header, err := readHeader(br)
	body := io.MultiReader(bytes.NewReader(header), br)
	if err != nil {
		return body, err
	}
	if !tlsRequiredNo(header) {
		c := *t.pendingCause
		c.Message += " (the message has no TLS-Required: No header field)"
		return body, &notWaived{SMTPError: &c, cause: t.pendingErr}
	}
	ctx, cancel := context.WithTimeout(run.ctx, t.timeout)
	defer cancel()
	up, err := t.open(ctx, t.pendingRoute)
	if err != nil {
		return body, err
	}
	if !run.attach(up) {
		return body, errors.New("message abandoned by the client")
	}
	t.up, t.route = up, t.pendingRoute
	for _, p := range t.pending {
		if err := up.Rcpt(p.to, p.opts); err != nil {
			// One reply answers DATA for every recipient: defer the
			// whole message rather than bounce recipients that were
			// accepted.
			r := Reply(err)
			return body, &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 5, 0},
				Message: "<" + p.to + "> refused at delivery under TLS-Required: No: " + r.Message}
		}
	}
	t.log.Info("delivering under TLS-Required: No", "domain", t.pendingRoute.Domain, "mx", up.Peer().Host.Name)
	return body, nil
}

// notWaived is the deferral of conditional recipients whose message did
// not carry "TLS-Required: No": its reply is the recipients' original
// deferral, and cause the failure behind it (what the status page
// counts).
type notWaived struct {
	*smtp.SMTPError
	cause error
}

func (n *notWaived) Unwrap() error { return n.SMTPError }

// pendingOutcome is the error the status page classifies when the
// conditional recipients are deferred at DATA with err: the original
// failure when the message did not waive it, the failure to open the
// relaxed route, or the MX's refusal of a recipient. A message our client
// did not send whole or well is not the domain's doing (false).
func pendingOutcome(err error) (error, bool) {
	var nw *notWaived
	if errors.As(err, &nw) {
		return nw.cause, true
	}
	if _, ok := enforcement.AsFailure(err); ok {
		return err, true
	}
	var se *smtp.SMTPError
	var be *bodyError
	if errors.As(err, &se) && !errors.As(err, &be) {
		return err, true
	}
	return nil, false
}

// readHeader reads the header section (through the empty line), at most
// maxHeaderPeek bytes.
func readHeader(br *bufio.Reader) ([]byte, error) {
	var buf bytes.Buffer
	for buf.Len() < maxHeaderPeek {
		line, err := br.ReadSlice('\n')
		buf.Write(line)
		if errors.Is(err, bufio.ErrBufferFull) {
			continue
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return buf.Bytes(), nil
			}
			return buf.Bytes(), err
		}
		if len(bytes.TrimRight(line, "\r\n")) == 0 {
			break
		}
	}
	return buf.Bytes(), nil
}

// tlsRequiredNo reports whether the header section has the field
// "TLS-Required: No" (RFC 8689 §5.3), folded lines unfolded.
func tlsRequiredNo(header []byte) bool {
	var field string
	check := func() bool {
		name, value, ok := strings.Cut(field, ":")
		return ok && strings.EqualFold(strings.TrimSpace(name), "TLS-Required") && strings.EqualFold(strings.TrimSpace(value), "No")
	}
	for _, line := range strings.Split(string(header), "\n") {
		line = strings.TrimRight(line, "\r")
		if line != "" && (line[0] == ' ' || line[0] == '\t') {
			field += " " + strings.TrimSpace(line)
			continue
		}
		if check() {
			return true
		}
		field = line
	}
	return check()
}
