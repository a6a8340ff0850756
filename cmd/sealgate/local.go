package main

import (
	"log/slog"

	"sealgate/enforcement"
	"sealgate/enforcement/localpolicy"
)

var _ enforcement.LocalPolicy = (*localpolicy.Live)(nil)

// loadLocalPolicy loads the policy file into a live table. serve follows
// its changes with Run and reloads it on SIGHUP; check uses it as loaded.
func loadLocalPolicy(file string, log *slog.Logger) (*localpolicy.Live, error) {
	return localpolicy.LoadLive(file, log)
}
