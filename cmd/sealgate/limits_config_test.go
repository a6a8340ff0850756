package main

import (
	"strings"
	"testing"
	"time"

	"sealgate/proxy"
)

func TestParseConfigInboundLimits(t *testing.T) {
	tests := []struct {
		name    string
		env     map[string]string
		want    proxy.Limits
		wantErr []string
	}{
		{name: "defaults", env: map[string]string{},
			want: proxy.Limits{MaxConnectionsPerIP: 20, SessionIdleTimeout: 5 * time.Minute, MinDataRate: 500, AuthMaxFailures: 3, AuthFailureDelay: time.Second, AuthLockout: 5 * time.Minute}},
		{name: "values", env: map[string]string{"SEALGATE_MAX_CONNECTIONS_PER_IP": "5", "SEALGATE_RESERVED_CONNECTIONS": "30", "SEALGATE_SESSION_IDLE_TIMEOUT": "90s",
			"SEALGATE_MIN_DATA_RATE": "1000", "SEALGATE_AUTH_MAX_FAILURES": "5", "SEALGATE_AUTH_FAILURE_DELAY": "2s", "SEALGATE_AUTH_LOCKOUT": "1h"},
			want: proxy.Limits{MaxConnectionsPerIP: 5, ReservedConnections: 30, SessionIdleTimeout: 90 * time.Second, MinDataRate: 1000, AuthMaxFailures: 5, AuthFailureDelay: 2 * time.Second, AuthLockout: time.Hour}},
		{name: "no reserve when set to 0", env: map[string]string{"SEALGATE_RESERVED_CONNECTIONS": "0"},
			want: proxy.Limits{MaxConnectionsPerIP: 20, ReservedConnections: -1, SessionIdleTimeout: 5 * time.Minute, MinDataRate: 500, AuthMaxFailures: 3, AuthFailureDelay: time.Second, AuthLockout: 5 * time.Minute}},
		{name: "reserve not below the maximum", env: map[string]string{"SEALGATE_MAX_CONNECTIONS": "10", "SEALGATE_RESERVED_CONNECTIONS": "10"}, wantErr: []string{"SEALGATE_RESERVED_CONNECTIONS", "MAX_CONNECTIONS-1"}},
		{name: "negative reserve", env: map[string]string{"SEALGATE_RESERVED_CONNECTIONS": "-1"}, wantErr: []string{"SEALGATE_RESERVED_CONNECTIONS"}},
		{name: "per address zero", env: map[string]string{"SEALGATE_MAX_CONNECTIONS_PER_IP": "0"}, wantErr: []string{"SEALGATE_MAX_CONNECTIONS_PER_IP", "positive"}},
		{name: "per address not a number", env: map[string]string{"SEALGATE_MAX_CONNECTIONS_PER_IP": "many"}, wantErr: []string{"SEALGATE_MAX_CONNECTIONS_PER_IP"}},
		{name: "idle not a duration", env: map[string]string{"SEALGATE_SESSION_IDLE_TIMEOUT": "5"}, wantErr: []string{"SEALGATE_SESSION_IDLE_TIMEOUT", "duration"}},
		{name: "idle negative", env: map[string]string{"SEALGATE_SESSION_IDLE_TIMEOUT": "-5m"}, wantErr: []string{"SEALGATE_SESSION_IDLE_TIMEOUT"}},
		{name: "rate zero", env: map[string]string{"SEALGATE_MIN_DATA_RATE": "0"}, wantErr: []string{"SEALGATE_MIN_DATA_RATE", "bytes per second"}},
		{name: "failures zero", env: map[string]string{"SEALGATE_AUTH_MAX_FAILURES": "0"}, wantErr: []string{"SEALGATE_AUTH_MAX_FAILURES"}},
		{name: "delay zero", env: map[string]string{"SEALGATE_AUTH_FAILURE_DELAY": "0s"}, wantErr: []string{"SEALGATE_AUTH_FAILURE_DELAY"}},
		{name: "lockout bad", env: map[string]string{"SEALGATE_AUTH_LOCKOUT": "forever"}, wantErr: []string{"SEALGATE_AUTH_LOCKOUT"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.env["SEALGATE_HOSTNAME"] = "gw.example.test"
			c, err := parseConfig(tc.env)
			if tc.wantErr != nil {
				if err == nil {
					t.Fatal("parseConfig accepted a bad value")
				}
				for _, w := range tc.wantErr {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not mention %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if c.limits != tc.want {
				t.Errorf("limits %+v, want %+v", c.limits, tc.want)
			}
		})
	}
}
