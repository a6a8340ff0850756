package main

import (
	"bytes"
	"log/slog"
	"sync/atomic"

	"sealgate/certs"
	"sealgate/enforcement"
	"sealgate/enforcement/localpolicy"
)

// localPolicy holds the policy table, swapped whole when the file or one
// of its tafiles changes, or on SIGHUP.
type localPolicy struct {
	p atomic.Pointer[localpolicy.Policy]
}

var _ enforcement.LocalPolicy = (*localPolicy)(nil)

// loadLocalPolicy loads the table and has w follow the file and its
// tafiles; a broken file on reload keeps the table in force and is logged.
func loadLocalPolicy(file string, w *certs.Watcher, log *slog.Logger) (*localPolicy, error) {
	p, err := localpolicy.Load(file)
	if err != nil {
		return nil, err
	}
	l := &localPolicy{}
	l.p.Store(p)
	log.Info("local policy loaded", "file", file, "entries", p.Len())
	if w == nil {
		return l, nil
	}
	files := []string{file}
	for _, e := range p.Entries() {
		if e.RootsFile != "" {
			files = append(files, e.RootsFile)
		}
	}
	watching := false // the watcher's first load repeats the one above
	err = w.WatchFiles("policy", files, func(data [][]byte) (func(), error) {
		if !watching {
			return func() {}, nil
		}
		np, err := localpolicy.Parse(file, bytes.NewReader(data[0]))
		if err != nil {
			return nil, err
		}
		return func() {
			l.p.Store(np)
			log.Info("local policy reloaded", "file", file, "entries", np.Len())
		}, nil
	})
	watching = true
	return l, err
}

func (l *localPolicy) Lookup(domain string) (*localpolicy.Entry, bool) {
	return l.p.Load().Lookup(domain)
}

func (l *localPolicy) LookupNexthop(host string, port int, mxLookup bool) (*localpolicy.Entry, bool) {
	return l.p.Load().LookupNexthop(host, port, mxLookup)
}
