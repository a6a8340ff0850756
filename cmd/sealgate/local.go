package main

import (
	"log/slog"
	"sync/atomic"

	"sealgate/enforcement"
	"sealgate/enforcement/localpolicy"
)

// localPolicy holds the policy table, swapped whole on reload.
type localPolicy struct {
	file string
	p    atomic.Pointer[localpolicy.Policy]
	log  *slog.Logger
}

var _ enforcement.LocalPolicy = (*localPolicy)(nil)

func loadLocalPolicy(file string, log *slog.Logger) (*localPolicy, error) {
	p, err := localpolicy.Load(file)
	if err != nil {
		return nil, err
	}
	l := &localPolicy{file: file, log: log}
	l.p.Store(p)
	log.Info("local policy loaded", "file", file, "entries", p.Len())
	return l, nil
}

// reload reads the file again; a broken file keeps the table in force.
func (l *localPolicy) reload() {
	p, err := localpolicy.Load(l.file)
	if err != nil {
		l.log.Error("local policy reload failed; keeping the table in force", "file", l.file, "error", err)
		return
	}
	l.p.Store(p)
	l.log.Info("local policy reloaded", "file", l.file, "entries", p.Len())
}

func (l *localPolicy) Lookup(domain string) (*localpolicy.Entry, bool) {
	return l.p.Load().Lookup(domain)
}

func (l *localPolicy) LookupNexthop(host string, port int, mxLookup bool) (*localpolicy.Entry, bool) {
	return l.p.Load().LookupNexthop(host, port, mxLookup)
}
