package main

import (
	"errors"
	"testing"
	"time"

	"sealgate/enforcement/store"
)

func TestParseDay(t *testing.T) {
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	tests := []struct {
		name    string
		in      string
		want    time.Time
		wantErr error
	}{
		{name: "default yesterday", in: "", want: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)},
		{name: "today allowed", in: "2026-03-02", want: time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)},
		{name: "tomorrow refused", in: "2026-03-03", wantErr: store.ErrInvalid},
		{name: "garbage", in: "03/01/2026", wantErr: store.ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseDay(tc.in, now)
			if !errors.Is(err, tc.wantErr) || (err == nil && !got.Equal(tc.want)) {
				t.Fatalf("parseDay(%q) = %v, %v; want %v, %v", tc.in, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestTLSRPTConfig(t *testing.T) {
	cfg, err := parseConfig(map[string]string{"SEALGATE_HOSTNAME": "gw.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.TLSRPTOrg != "gw.example.test" || cfg.TLSRPTContact != "postmaster@gw.example.test" ||
		cfg.TLSRPTFrom != "noreply-tlsrpt@gw.example.test" || !cfg.TLSRPTSend {
		t.Fatalf("defaults %q %q %q %t", cfg.TLSRPTOrg, cfg.TLSRPTContact, cfg.TLSRPTFrom, cfg.TLSRPTSend)
	}
	for _, bad := range []map[string]string{
		{"SEALGATE_TLSRPT_FROM": "nobody"},
		{"SEALGATE_TLSRPT_SEND": "yes"},
	} {
		bad["SEALGATE_HOSTNAME"] = "gw.example.test"
		if _, err := parseConfig(bad); err == nil {
			t.Errorf("parseConfig(%v) accepted", bad)
		}
	}
}
