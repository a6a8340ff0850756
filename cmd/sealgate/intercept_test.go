package main

import (
	"log/slog"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"sealgate/upstream"
)

func TestParseInterceptionConfig(t *testing.T) {
	tests := []struct {
		name     string
		env      map[string]string
		wantMark int
		wantTP   []string
		wantErr  []string
	}{
		{name: "defaults", env: map[string]string{}, wantMark: 0},
		{name: "decimal mark", env: map[string]string{"SEALGATE_UPSTREAM_MARK": "37"}, wantMark: 37},
		{name: "hexadecimal mark", env: map[string]string{"SEALGATE_UPSTREAM_MARK": "0x25"}, wantMark: 0x25},
		{name: "leading zero is decimal, not octal", env: map[string]string{"SEALGATE_UPSTREAM_MARK": "010"}, wantMark: 10},
		{name: "binary prefix refused", env: map[string]string{"SEALGATE_UPSTREAM_MARK": "0b11"}, wantErr: []string{"SEALGATE_UPSTREAM_MARK"}},
		{name: "largest mark", env: map[string]string{"SEALGATE_UPSTREAM_MARK": "4294967295"}, wantMark: 4294967295},
		{name: "mark too large", env: map[string]string{"SEALGATE_UPSTREAM_MARK": "4294967296"}, wantErr: []string{"SEALGATE_UPSTREAM_MARK", "4294967296", "0x"}},
		{name: "mark negative", env: map[string]string{"SEALGATE_UPSTREAM_MARK": "-1"}, wantErr: []string{"SEALGATE_UPSTREAM_MARK"}},
		{name: "mark not a number", env: map[string]string{"SEALGATE_UPSTREAM_MARK": "sealgate"}, wantErr: []string{"SEALGATE_UPSTREAM_MARK"}},
		{name: "tproxy listeners", env: map[string]string{"SEALGATE_TPROXY_LISTEN": "[::]:2526, 0.0.0.0:2527"}, wantTP: []string{"[::]:2526", "0.0.0.0:2527"}},
		{name: "tproxy listener without port", env: map[string]string{"SEALGATE_TPROXY_LISTEN": "[::]"}, wantErr: []string{"SEALGATE_TPROXY_LISTEN", "host:port"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.env["SEALGATE_HOSTNAME"] = "gw.example.test"
			c, err := parseConfig(tc.env)
			if tc.wantErr != nil {
				if err == nil {
					t.Fatal("no error")
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not say %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.mark != tc.wantMark || strings.Join(c.tproxy, ",") != strings.Join(tc.wantTP, ",") {
				t.Errorf("mark %#x, tproxy %q; want %#x, %q", c.mark, c.tproxy, tc.wantMark, tc.wantTP)
			}
		})
	}
}

func TestWireInterception(t *testing.T) {
	c, err := parseConfig(map[string]string{"SEALGATE_HOSTNAME": "gw.example.test", "SEALGATE_UPSTREAM_MARK": "0x25"})
	if err != nil {
		t.Fatal(err)
	}
	d := &upstream.Deliverer{Mark: c.mark}
	if err := wireInterception(c, d); err != nil {
		t.Fatalf("wireInterception: %v (SO_MARK needs CAP_NET_ADMIN)", err)
	}
	if d.Sockets == nil || d.Mark != 0x25 {
		t.Errorf("deliverer not wired: mark %#x, sockets %v", d.Mark, d.Sockets)
	}
}

func TestTransparentListener(t *testing.T) {
	c, err := parseConfig(map[string]string{"SEALGATE_HOSTNAME": "gw.example.test", "SEALGATE_LISTEN": "127.0.0.1:0", "SEALGATE_TPROXY_LISTEN": "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	ls, err := listenAll(c, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("listenAll: %v (IP_TRANSPARENT needs CAP_NET_ADMIN)", err)
	}
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	if len(ls) != 2 {
		t.Fatalf("%d listeners, want 2", len(ls))
	}
	for i, want := range []int{0, 1} {
		rc, err := ls[i].(syscall.Conn).SyscallConn()
		if err != nil {
			t.Fatal(err)
		}
		var got int
		var serr error
		rc.Control(func(fd uintptr) { got, serr = unix.GetsockoptInt(int(fd), unix.SOL_IP, unix.IP_TRANSPARENT) })
		if serr != nil || got != want {
			t.Errorf("listener %d: IP_TRANSPARENT = %d, %v; want %d", i, got, serr, want)
		}
	}
}
