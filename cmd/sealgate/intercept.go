package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"

	"sealgate/proxy"
	"sealgate/upstream"
)

// listenAll opens the SEALGATE_LISTEN addresses and the transparent
// SEALGATE_TPROXY_LISTEN ones, or none of them.
func listenAll(cfg *Config, log *slog.Logger) ([]net.Listener, error) {
	var listeners []net.Listener
	fail := func(name string, err error) ([]net.Listener, error) {
		for _, l := range listeners {
			l.Close()
		}
		return nil, &configError{fmt.Errorf("%s: %w", name, err)}
	}
	for _, a := range cfg.listen {
		l, err := net.Listen("tcp", a)
		if err != nil {
			return fail(envPrefix+"LISTEN", err)
		}
		listeners = append(listeners, l)
	}
	for _, a := range cfg.tproxy {
		l, err := proxy.ListenTransparent(context.Background(), a)
		if err != nil {
			return fail(envPrefix+"TPROXY_LISTEN", fmt.Errorf("%w (a transparent listener needs CAP_NET_ADMIN)", err))
		}
		log.Info("transparent listener for nftables tproxy", "addr", l.Addr().String())
		listeners = append(listeners, l)
	}
	return listeners, nil
}

// wireInterception keeps the deliverer's sockets for the inbound loop
// check, and stops the start when SEALGATE_UPSTREAM_MARK cannot be set on
// sockets rather than failing every delivery.
func wireInterception(cfg *Config, d *upstream.Deliverer) error {
	if err := upstream.CheckMark(cfg.mark); err != nil {
		return &configError{fmt.Errorf("%sUPSTREAM_MARK=%q cannot be set on sockets: %w (SO_MARK needs CAP_NET_ADMIN)", envPrefix, cfg.UpstreamMark, err)}
	}
	d.Sockets = &upstream.Sockets{}
	return nil
}
