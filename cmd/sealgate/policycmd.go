package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"sealgate/enforcement/localpolicy"
	"sealgate/enforcement/localpolicy/starttlslist"
)

const policyUsage = `usage:
  sealgate policy check [--json] [FILE]
        parse a policy file as the gateway does (FILE defaults to
        SEALGATE_POLICY_FILE) and print its table, or every error;
        exit 0 when it is valid, 1 when not
  sealgate policy import-starttls-everywhere FILE
        convert the STARTTLS Everywhere policy list (JSON; - for standard
        input) into policy file lines on standard output
`

// policyCmd is "sealgate policy" with its environment and clock.
type policyCmd struct {
	env            map[string]string
	now            func() time.Time
	stdin          io.Reader
	stdout, stderr io.Writer
}

// runPolicy implements "sealgate policy".
func runPolicy(args []string, stdout, stderr io.Writer) int {
	c := &policyCmd{env: environ(), now: time.Now, stdin: os.Stdin, stdout: stdout, stderr: stderr}
	return c.run(args)
}

func (c *policyCmd) run(args []string) int {
	if len(args) == 0 {
		fmt.Fprint(c.stderr, policyUsage)
		return 2
	}
	switch verb, args := args[0], args[1:]; verb {
	case "check":
		return c.check(args)
	case "import-starttls-everywhere":
		return c.importSTARTTLSEverywhere(args)
	case "help", "-h", "--help":
		fmt.Fprint(c.stdout, policyUsage)
		return 0
	default:
		fmt.Fprintf(c.stderr, "sealgate policy: unknown command %q\n%s", verb, policyUsage)
		return 2
	}
}

// check implements "sealgate policy check [--json] [FILE]".
func (c *policyCmd) check(args []string) int {
	asJSON := false
	if len(args) > 0 && args[0] == "--json" {
		asJSON, args = true, args[1:]
	}
	var file string
	switch {
	case len(args) == 1 && !strings.HasPrefix(args[0], "-"):
		file = args[0]
	case len(args) == 0 && c.env["SEALGATE_POLICY_FILE"] != "":
		file = c.env["SEALGATE_POLICY_FILE"]
	case len(args) == 0:
		fmt.Fprintf(c.stderr, "sealgate policy check: no FILE given and SEALGATE_POLICY_FILE is not set\n%s", policyUsage)
		return 2
	default:
		fmt.Fprint(c.stderr, policyUsage)
		return 2
	}
	p, err := localpolicy.Load(file)
	if asJSON {
		writeCheckJSON(c.stdout, file, p, err)
	} else if err != nil {
		errs := splitErrors(err)
		for _, e := range errs {
			fmt.Fprintln(c.stderr, e)
		}
		fmt.Fprintf(c.stderr, "%s: invalid: %d %s\n", file, len(errs), plural(len(errs), "error", "errors"))
	} else {
		writeCheckText(c.stdout, p)
	}
	if err != nil {
		return 1
	}
	return 0
}

func plural(n int, one, more string) string {
	if n == 1 {
		return one
	}
	return more
}

// splitErrors returns the errors joined in err (one per bad line), or err.
func splitErrors(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// checkedEntry is an entry as check prints it.
type checkedEntry struct {
	Destination  string   `json:"destination"`
	Level        string   `json:"level"`
	Match        []string `json:"match,omitempty"`
	Fingerprints []string `json:"fingerprints,omitempty"`
	TAFile       string   `json:"tafile,omitempty"`
	Protocols    string   `json:"protocols,omitempty"`
	Line         int      `json:"line"`
}

func describeEntry(e *localpolicy.Entry) checkedEntry {
	ce := checkedEntry{
		Destination: e.Destination, Level: e.Level.String(), Match: e.Match,
		TAFile: e.RootsFile, Protocols: e.Protocols(), Line: e.Line,
	}
	for _, d := range e.Fingerprints {
		ce.Fingerprints = append(ce.Fingerprints, localpolicy.FormatFingerprint(d))
	}
	return ce
}

func writeCheckText(w io.Writer, p *localpolicy.Policy) {
	fmt.Fprintf(w, "%s: valid: %d %s\n", p.File, p.Len(), plural(p.Len(), "entry", "entries"))
	if p.Len() == 0 {
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "LINE\tDESTINATION\tLEVEL\tMATCH\tTAFILE\tPROTOCOLS")
	orDash := func(s string) string {
		if s == "" {
			return "-"
		}
		return s
	}
	for _, e := range p.Entries() {
		ce := describeEntry(e)
		match := strings.Join(ce.Match, ":")
		if len(ce.Fingerprints) > 0 {
			match = strings.Join(ce.Fingerprints, "|")
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", ce.Line, ce.Destination, ce.Level, orDash(match), orDash(ce.TAFile), orDash(ce.Protocols))
	}
	tw.Flush()
}

// checkReport is check's JSON output.
type checkReport struct {
	File    string         `json:"file"`
	Valid   bool           `json:"valid"`
	Entries []checkedEntry `json:"entries"`
	Errors  []checkError   `json:"errors"`
}

type checkError struct {
	File  string `json:"file"`
	Line  int    `json:"line,omitempty"`
	Error string `json:"error"`
}

func writeCheckJSON(w io.Writer, file string, p *localpolicy.Policy, err error) {
	r := checkReport{File: file, Valid: err == nil, Entries: []checkedEntry{}, Errors: []checkError{}}
	for _, e := range p.Entries() {
		r.Entries = append(r.Entries, describeEntry(e))
	}
	if err != nil {
		for _, e := range splitErrors(err) {
			ce := checkError{File: file, Error: e.Error()}
			var pe *localpolicy.ParseError
			if errors.As(e, &pe) {
				ce.File, ce.Line, ce.Error = pe.File, pe.Line, pe.Err.Error()
			}
			r.Errors = append(r.Errors, ce)
		}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(r)
}

// importSTARTTLSEverywhere implements "sealgate policy
// import-starttls-everywhere FILE".
func (c *policyCmd) importSTARTTLSEverywhere(args []string) int {
	const name = "sealgate policy import-starttls-everywhere"
	if len(args) != 1 {
		fmt.Fprint(c.stderr, policyUsage)
		return 2
	}
	var data []byte
	var err error
	if args[0] == "-" {
		data, err = io.ReadAll(c.stdin)
	} else {
		data, err = os.ReadFile(args[0])
	}
	if err != nil {
		fmt.Fprintf(c.stderr, "%s: %v\n", name, err)
		return 1
	}
	l, err := starttlslist.Parse(data)
	if err != nil {
		fmt.Fprintf(c.stderr, "%s: %s: %v\n", name, args[0], err)
		return 1
	}
	for _, s := range l.Skipped {
		fmt.Fprintf(c.stderr, "%s: skipped %v\n", name, s)
	}
	if !l.ExpiresAt.IsZero() && c.now().After(l.ExpiresAt) {
		fmt.Fprintf(c.stderr, "%s: warning: the list expired at %s; fetch a current one\n", name, l.ExpiresAt.Format(time.RFC3339))
	}
	if _, err := l.WriteTo(c.stdout); err != nil {
		fmt.Fprintf(c.stderr, "%s: %v\n", name, err)
		return 1
	}
	return 0
}
