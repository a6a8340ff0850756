package postfix

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
)

// ErrQueueFormat reports a line of "postqueue -j" output that is not a
// queue entry.
var ErrQueueFormat = errors.New("postfix: bad postqueue -j output")

// QueueEntry is one message in the queue, as "postqueue -j" prints it.
type QueueEntry struct {
	// Queue is the queue's name: maildrop, incoming, active, deferred or
	// hold.
	Queue string `json:"queue_name"`
	// ID is the queue ID. A message submitted with sendmail changes ID
	// when pickup moves it from maildrop into the queue.
	ID          string `json:"queue_id"`
	ArrivalTime int64  `json:"arrival_time"`
	Size        int64  `json:"message_size"`
	// Sender is the envelope sender; showq prints the null sender as
	// "MAILER-DAEMON".
	Sender     string           `json:"sender"`
	Recipients []QueueRecipient `json:"recipients"`
}

// QueueRecipient is one recipient of a queued message.
type QueueRecipient struct {
	Address string `json:"address"`
	// DelayReason is why delivery was deferred, e.g. "host
	// 127.0.0.1[127.0.0.1] said: 451 4.7.5 ... (in reply to RCPT TO
	// command)"; empty before the first attempt.
	DelayReason string `json:"delay_reason"`
}

// parseQueue parses "postqueue -j" output: one JSON object per line.
func parseQueue(out []byte) ([]QueueEntry, error) {
	var entries []QueueEntry
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(nil, 16<<20)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 {
			continue
		}
		var e QueueEntry
		if err := json.Unmarshal(line, &e); err != nil {
			return nil, fmt.Errorf("%w: line %d: %w", ErrQueueFormat, n, err)
		}
		if e.ID == "" || e.Queue == "" {
			return nil, fmt.Errorf("%w: line %d: no queue_id or queue_name", ErrQueueFormat, n)
		}
		entries = append(entries, e)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrQueueFormat, err)
	}
	return entries, nil
}

// Sendmail submits msg (a whole message, headers and body, LF or CRLF line
// ends) with Postfix's sendmail(1): "sendmail -C DIR -i -f from -- to...".
// -i keeps a line holding a single dot from ending the message. An empty
// from is the null sender. It returns once the message is in the maildrop
// queue, not when it has been relayed.
func (in *Instance) Sendmail(from string, to []string, msg []byte) error {
	if len(to) == 0 {
		return fmt.Errorf("%w: sendmail: no recipient", ErrBadOption)
	}
	args := append([]string{"-C", in.paths.config, "-i", "-f", from, "--"}, to...)
	_, err := in.run(msg, in.bins.sendmail, args...)
	return err
}

// Flush asks the queue manager to attempt every queued message now
// ("postqueue -c DIR -f").
func (in *Instance) Flush() error {
	_, err := in.run(nil, in.bins.postqueue, "-c", in.paths.config, "-f")
	return err
}

// Queue lists the queued messages ("postqueue -c DIR -j").
func (in *Instance) Queue() ([]QueueEntry, error) {
	out, err := in.run(nil, in.bins.postqueue, "-c", in.paths.config, "-j")
	if err != nil {
		return nil, err
	}
	return parseQueue(out)
}

// QueueIDs lists the IDs of the queued messages.
func (in *Instance) QueueIDs() ([]string, error) {
	entries, err := in.Queue()
	if err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(entries))
	for _, e := range entries {
		ids = append(ids, e.ID)
	}
	return ids, nil
}

// QueueEmpty reports whether no message is queued. If the queue cannot be
// listed it marks the test failed and returns false.
func (in *Instance) QueueEmpty() bool {
	in.t.Helper()
	entries, err := in.Queue()
	if err != nil {
		in.t.Errorf("postfix: %v", err)
		return false
	}
	return len(entries) == 0
}

// WaitQueue polls the queue until cond holds and returns the entries that
// satisfied it. On timeout the error lists the queue and its delay reasons.
func (in *Instance) WaitQueue(cond func([]QueueEntry) bool, timeout time.Duration) ([]QueueEntry, error) {
	deadline := time.Now().Add(timeout)
	for {
		entries, err := in.Queue()
		if err == nil && cond(entries) {
			return entries, nil
		}
		if time.Now().After(deadline) {
			if err != nil {
				return entries, fmt.Errorf("%w after %v: %w", ErrTimeout, timeout, err)
			}
			return entries, fmt.Errorf("%w after %v; queue: %s", ErrTimeout, timeout, describe(entries))
		}
		time.Sleep(pollInterval)
	}
}

// WaitQueueEmpty waits until no message is queued.
func (in *Instance) WaitQueueEmpty(timeout time.Duration) error {
	_, err := in.WaitQueue(func(e []QueueEntry) bool { return len(e) == 0 }, timeout)
	return err
}

// describe prints entries for error messages.
func describe(entries []QueueEntry) string {
	if len(entries) == 0 {
		return "empty"
	}
	var b strings.Builder
	for _, e := range entries {
		fmt.Fprintf(&b, "\n  %s %s from=<%s>", e.Queue, e.ID, e.Sender)
		for _, r := range e.Recipients {
			fmt.Fprintf(&b, " to=<%s>", r.Address)
			if r.DelayReason != "" {
				fmt.Fprintf(&b, " (%s)", r.DelayReason)
			}
		}
	}
	return b.String()
}

// Log returns the mail log so far (empty if nothing was logged yet).
func (in *Instance) Log() string {
	b, err := os.ReadFile(in.paths.maillog)
	if err != nil {
		return ""
	}
	return string(b)
}

// WaitLog waits until the mail log contains substr. Postfix logs through
// postlogd, so a line appears shortly after the event.
func (in *Instance) WaitLog(substr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for !strings.Contains(in.Log(), substr) {
		if time.Now().After(deadline) {
			return fmt.Errorf("%w after %v waiting for %q in the mail log:\n%s", ErrTimeout, timeout, substr, tail(in.Log(), 20))
		}
		time.Sleep(pollInterval)
	}
	return nil
}
