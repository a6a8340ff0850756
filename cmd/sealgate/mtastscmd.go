package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"sealgate/enforcement/dnsname"
)

const mtastsUsage = `usage:
  sealgate mtasts list              list cached MTA-STS policies
  sealgate mtasts show DOMAIN       show the cached policy of DOMAIN
  sealgate mtasts refresh DOMAIN    fetch the policy of DOMAIN now and cache it
  sealgate mtasts purge DOMAIN      remove the cached policy of DOMAIN
The commands talk to the running gateway at SEALGATE_ADMIN_LISTEN; when none
runs, they open the state store (SEALGATE_STATE_DIR or SEALGATE_REDIS_URL).
`

// runMTASTS implements "sealgate mtasts".
func runMTASTS(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, mtastsUsage)
		return 2
	}
	verb, args := args[0], args[1:]
	want := 1
	if verb == "list" {
		want = 0
	}
	switch verb {
	case "list", "show", "refresh", "purge":
	default:
		fmt.Fprintf(stderr, "sealgate mtasts: unknown command %q\n%s", verb, mtastsUsage)
		return 2
	}
	if len(args) != want {
		fmt.Fprint(stderr, mtastsUsage)
		return 2
	}
	domain := ""
	if want == 1 {
		domain = dnsname.Normalize(args[0])
	}
	cfg, err := parseConfig(environ())
	if err != nil {
		fmt.Fprintf(stderr, "sealgate: configuration error: %v\n", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := viaAdmin(ctx, cfg.AdminListen, verb, domain)
	if isNotRunning(err) {
		out, err = locally(ctx, cfg, verb, domain)
	}
	if err != nil {
		fmt.Fprintf(stderr, "sealgate mtasts %s: %v\n", verb, err)
		return 1
	}
	printPolicies(stdout, verb, out)
	return 0
}

// viaAdmin asks the running gateway.
func viaAdmin(ctx context.Context, addr, verb, domain string) ([]byte, error) {
	method, path := http.MethodGet, "/mtasts"
	switch verb {
	case "show":
		path += "/" + domain
	case "refresh":
		method, path = http.MethodPost, "/mtasts/"+domain+"/refresh"
	case "purge":
		method, path = http.MethodDelete, "/mtasts/"+domain
	}
	return adminCall(ctx, method, "http://"+addr+path, 16<<20)
}

// isNotRunning reports whether err says that no gateway listens at the
// admin address; then the command opens the store itself. A gateway that
// answers with an error, or not in time, is running and holds the store.
func isNotRunning(err error) bool {
	return errors.Is(err, syscall.ECONNREFUSED)
}

// locally runs the operation on the state store itself.
func locally(ctx context.Context, cfg *Config, verb, domain string) ([]byte, error) {
	st, _, err := openStore(cfg)
	if err != nil {
		return nil, err
	}
	defer st.Close()
	dns, err := newResolver(cfg)
	if err != nil {
		return nil, err
	}
	ops := stsOps{st: st, mgr: newSTSManager(dns, st, slog.New(slog.NewTextHandler(io.Discard, nil)))}
	var v any
	switch verb {
	case "list":
		v, err = ops.list(ctx)
	case "show":
		v, err = ops.show(ctx, domain)
	case "refresh":
		v, err = ops.refresh(ctx, domain)
	case "purge":
		err = ops.purge(ctx, domain)
		v = map[string]string{"purged": domain}
	}
	if err != nil {
		return nil, err
	}
	return json.Marshal(v)
}

func printPolicies(w io.Writer, verb string, body []byte) {
	switch verb {
	case "list":
		var all []policyView
		json.Unmarshal(body, &all)
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "DOMAIN\tID\tMODE\tEXPIRES\tMX")
		for _, p := range all {
			exp := p.ExpiresAt.UTC().Format(time.RFC3339)
			if p.Expired {
				exp += " (expired)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", p.Domain, p.ID, p.Mode, exp, strings.Join(p.MX, " "))
		}
		tw.Flush()
	case "purge":
		var m map[string]string
		json.Unmarshal(body, &m)
		fmt.Fprintf(w, "purged %s: the next message fetches its policy again\n", m["purged"])
	default:
		var p policyView
		json.Unmarshal(body, &p)
		fmt.Fprintf(w, "domain:     %s\nid:         %s\nfetched:    %s\nexpires:    %s%s\n\n%s",
			p.Domain, p.ID, p.FetchedAt.UTC().Format(time.RFC3339), p.ExpiresAt.UTC().Format(time.RFC3339),
			map[bool]string{true: " (expired)", false: ""}[p.Expired], p.Policy)
	}
}
