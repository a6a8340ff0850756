// Command sealgate is an SMTP egress gateway: it takes plaintext SMTP from
// legacy mail servers and delivers over TLS authenticated as each recipient
// domain requires (DANE, MTA-STS, local policy, floor), never in cleartext
// and without a queue.
//
// Usage:
//
//	sealgate [serve]          run the gateway (configured by SEALGATE_* variables)
//	sealgate check DOMAIN...  policy and live MX probe report
//	sealgate mtasts ...       inspect and manage the MTA-STS policy cache
//	sealgate policy ...       check a policy file, import the STARTTLS Everywhere list
//	sealgate tlsrpt ...       print or send the TLS reports (RFC 8460)
//	sealgate version          print the version
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	cmd := "serve"
	if len(args) > 0 {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "serve":
		if len(args) > 0 {
			fmt.Fprintf(stderr, "sealgate serve: unexpected arguments %q\n", args)
			return 2
		}
		cfg, err := parseConfig(environ())
		if err != nil {
			fmt.Fprintf(stderr, "sealgate: configuration error: %v\n", err)
			return 2
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		if err := serve(ctx, cfg, stderr); err != nil {
			fmt.Fprintf(stderr, "sealgate: %v\n", err)
			var ce *configError
			if errors.As(err, &ce) {
				return 2
			}
			return 1
		}
		return 0
	case "check":
		return runCheck(args, stdout, stderr)
	case "mtasts":
		return runMTASTS(args, stdout, stderr)
	case "policy":
		return runPolicy(args, stdout, stderr)
	case "tlsrpt":
		return runTLSRPT(args, stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintf(stdout, "sealgate %s (%s)\n", version, goVersion())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintf(stderr, "sealgate: unknown command %q\n%s", cmd, usage)
	return 2
}

const usage = `usage:
  sealgate [serve]                   run the gateway, configured by SEALGATE_* variables
  sealgate check [--json] DOMAIN...  policy and live MX probe; exit 0 when delivery would proceed
  sealgate mtasts list|show|refresh|purge [DOMAIN]
                                     inspect and manage the MTA-STS policy cache
  sealgate policy check [--json] [FILE]
                                     check a policy file and print its table
  sealgate policy import-starttls-everywhere FILE
                                     convert the STARTTLS Everywhere list into policy lines
  sealgate tlsrpt show|send [--day YYYY-MM-DD] [DOMAIN...]
                                     print or send the TLS reports (RFC 8460) of a UTC day
  sealgate version                   print the version
`

func goVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		return bi.GoVersion
	}
	return "unknown Go"
}

// configError is a configuration problem found while starting (a file that
// cannot be read, say): the process exits 2, like for a bad variable.
type configError struct{ err error }

func (e *configError) Error() string { return e.err.Error() }
func (e *configError) Unwrap() error { return e.err }
