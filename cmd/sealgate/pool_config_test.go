package main

import (
	"strings"
	"testing"
	"time"
)

func TestParseConfigUpstreamReuse(t *testing.T) {
	tests := []struct {
		name     string
		env      map[string]string
		idle     time.Duration
		maxIdle  int
		maxReuse int
		wantErr  string
	}{
		{name: "defaults", env: map[string]string{}, idle: 30 * time.Second, maxIdle: 8, maxReuse: 100},
		{name: "values", env: map[string]string{"SEALGATE_UPSTREAM_IDLE_TIMEOUT": "2m", "SEALGATE_UPSTREAM_MAX_IDLE": "2", "SEALGATE_UPSTREAM_MAX_REUSE": "1"},
			idle: 2 * time.Minute, maxIdle: 2, maxReuse: 1},
		{name: "idle zero", env: map[string]string{"SEALGATE_UPSTREAM_IDLE_TIMEOUT": "0s"}, wantErr: "SEALGATE_UPSTREAM_IDLE_TIMEOUT"},
		{name: "idle not a duration", env: map[string]string{"SEALGATE_UPSTREAM_IDLE_TIMEOUT": "30"}, wantErr: "SEALGATE_UPSTREAM_IDLE_TIMEOUT"},
		{name: "max idle zero", env: map[string]string{"SEALGATE_UPSTREAM_MAX_IDLE": "0"}, wantErr: "SEALGATE_UPSTREAM_MAX_IDLE"},
		{name: "max reuse zero", env: map[string]string{"SEALGATE_UPSTREAM_MAX_REUSE": "0"}, wantErr: "SEALGATE_UPSTREAM_MAX_REUSE"},
		{name: "max reuse not a number", env: map[string]string{"SEALGATE_UPSTREAM_MAX_REUSE": "lots"}, wantErr: "SEALGATE_UPSTREAM_MAX_REUSE"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.env["SEALGATE_HOSTNAME"] = "gw.example.test"
			c, err := parseConfig(tc.env)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want an error naming %s", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.UpstreamIdle != tc.idle || c.UpstreamMaxIdle != tc.maxIdle || c.UpstreamReuse != tc.maxReuse {
				t.Fatalf("got %v %d %d", c.UpstreamIdle, c.UpstreamMaxIdle, c.UpstreamReuse)
			}
		})
	}
}
