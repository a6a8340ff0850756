package main

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"sealgate/enforcement"
)

func TestParseConfigDefaults(t *testing.T) {
	c, err := parseConfig(map[string]string{"SEALGATE_HOSTNAME": "gw.example.test"})
	if err != nil {
		t.Fatal(err)
	}
	if got := c.listen; len(got) != 1 || got[0] != ":2525" {
		t.Errorf("listen = %q, want [:2525]", got)
	}
	if c.MXPort != 25 || c.floor != enforcement.LevelEncrypt || c.StateDir != "./sealgate-data" || c.AdminListen != "127.0.0.1:9025" {
		t.Errorf("defaults wrong: %+v", c)
	}
	if len(c.networks) != 2 || c.networks[0].String() != "127.0.0.0/8" || c.networks[1].String() != "::1/128" {
		t.Errorf("networks = %v", c.networks)
	}
	if c.CommandTimeout != 5*time.Minute || c.MaxMessageSize != 50<<20 {
		t.Errorf("limits wrong: %v %d", c.CommandTimeout, c.MaxMessageSize)
	}
}

func TestParseConfigValues(t *testing.T) {
	c, err := parseConfig(map[string]string{
		"SEALGATE_HOSTNAME":         "gw.example.test",
		"SEALGATE_LISTEN":           "127.0.0.1:2525, [::1]:2525",
		"SEALGATE_ALLOWED_NETWORKS": "10.1.2.3/8 , fd00::/8",
		"SEALGATE_DNS_RESOLVER":     "127.0.0.1:53,[::1]:53",
		"SEALGATE_MIN_TLS":          "verify",
		"SEALGATE_TLS_MIN_VERSION":  "1.3",
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(c.listen) != 2 || c.listen[1] != "[::1]:2525" {
		t.Errorf("listen = %q", c.listen)
	}
	if c.networks[0].String() != "10.0.0.0/8" {
		t.Errorf("networks not masked: %v", c.networks)
	}
	if len(c.resolvers) != 2 || c.floor != enforcement.LevelVerify || c.minTLS != 0x0304 {
		t.Errorf("got %+v", c)
	}
}

func TestParseConfigErrorsNameTheVariable(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want []string
	}{
		{name: "port not a number", env: map[string]string{"SEALGATE_MX_PORT": "twenty-five"}, want: []string{"SEALGATE_MX_PORT", "port number"}},
		{name: "misspelt variable", env: map[string]string{"SEALGATE_MINTLS": "verify"}, want: []string{"SEALGATE_MINTLS", "not a variable"}},
		{name: "port out of range", env: map[string]string{"SEALGATE_MX_PORT": "70000"}, want: []string{"SEALGATE_MX_PORT", "1 to 65535"}},
		{name: "floor may", env: map[string]string{"SEALGATE_MIN_TLS": "may"}, want: []string{"SEALGATE_MIN_TLS", "encrypt or verify"}},
		{name: "floor none", env: map[string]string{"SEALGATE_MIN_TLS": "none"}, want: []string{"SEALGATE_MIN_TLS"}},
		{name: "bad network", env: map[string]string{"SEALGATE_ALLOWED_NETWORKS": "10.0.0.0/33"}, want: []string{"SEALGATE_ALLOWED_NETWORKS", "CIDR"}},
		{name: "bad listen", env: map[string]string{"SEALGATE_LISTEN": "2525"}, want: []string{"SEALGATE_LISTEN", "host:port"}},
		{name: "bad resolver", env: map[string]string{"SEALGATE_DNS_RESOLVER": "127.0.0.1"}, want: []string{"SEALGATE_DNS_RESOLVER"}},
		{name: "negative DNS cache size", env: map[string]string{"SEALGATE_DNS_CACHE_SIZE": "-1"}, want: []string{"SEALGATE_DNS_CACHE_SIZE", "0 for no cache"}},
		{name: "DNS cache size not a number", env: map[string]string{"SEALGATE_DNS_CACHE_SIZE": "many"}, want: []string{"SEALGATE_DNS_CACHE_SIZE"}},
		{name: "bad log format", env: map[string]string{"SEALGATE_LOG_FORMAT": "xml"}, want: []string{"SEALGATE_LOG_FORMAT", "text or json"}},
		{name: "bad duration", env: map[string]string{"SEALGATE_COMMAND_TIMEOUT": "5 minutes"}, want: []string{"SEALGATE_COMMAND_TIMEOUT", "duration"}},
		{name: "negative duration", env: map[string]string{"SEALGATE_DATA_TIMEOUT": "-1s"}, want: []string{"SEALGATE_DATA_TIMEOUT"}},
		{name: "bad size", env: map[string]string{"SEALGATE_MAX_MESSAGE_SIZE": "10MB"}, want: []string{"SEALGATE_MAX_MESSAGE_SIZE"}},
		{name: "tls version", env: map[string]string{"SEALGATE_TLS_MIN_VERSION": "1.4"}, want: []string{"SEALGATE_TLS_MIN_VERSION"}},
		{name: "cert without key", env: map[string]string{"SEALGATE_TLS_CERT_FILE": "/x.pem"}, want: []string{"SEALGATE_TLS_KEY_FILE"}},
		{name: "client cert without key", env: map[string]string{"SEALGATE_CLIENT_CERT_FILE": "/x.pem"}, want: []string{"SEALGATE_CLIENT_KEY_FILE"}},
		// Values that would start a gateway that defers or bounces
		// every message.
		{name: "resolver port not a number", env: map[string]string{"SEALGATE_DNS_RESOLVER": "127.0.0.1:abc"}, want: []string{"SEALGATE_DNS_RESOLVER", "1 to 65535"}},
		{name: "resolver port 0", env: map[string]string{"SEALGATE_DNS_RESOLVER": "127.0.0.1:0"}, want: []string{"SEALGATE_DNS_RESOLVER", "1 to 65535"}},
		{name: "resolver port too large", env: map[string]string{"SEALGATE_DNS_RESOLVER": "127.0.0.1:99999"}, want: []string{"SEALGATE_DNS_RESOLVER"}},
		{name: "resolver list without an address", env: map[string]string{"SEALGATE_DNS_RESOLVER": ","}, want: []string{"SEALGATE_DNS_RESOLVER", "no address"}},
		{name: "networks list without a prefix", env: map[string]string{"SEALGATE_ALLOWED_NETWORKS": " , "}, want: []string{"SEALGATE_ALLOWED_NETWORKS", "no prefix"}},
		{name: "host name with bad bytes", env: map[string]string{"SEALGATE_HOSTNAME": "gw@x;y"}, want: []string{"SEALGATE_HOSTNAME", "not a host name"}},
		{name: "report sender with two @", env: map[string]string{"SEALGATE_TLSRPT_FROM": "a@b@c"}, want: []string{"SEALGATE_TLSRPT_FROM"}},
		{name: "DNS timeout of a nanosecond", env: map[string]string{"SEALGATE_DNS_TIMEOUT": "1ns"}, want: []string{"SEALGATE_DNS_TIMEOUT", "at least 100ms"}},
		{name: "admin host with a space", env: map[string]string{"SEALGATE_ADMIN_HOSTS": "a b"}, want: []string{"SEALGATE_ADMIN_HOSTS", "not a host name"}},
		{name: "tproxy port not a number", env: map[string]string{"SEALGATE_TPROXY_LISTEN": ":abc"}, want: []string{"SEALGATE_TPROXY_LISTEN", "0 to 65535"}},
		{name: "tproxy list without an address", env: map[string]string{"SEALGATE_TPROXY_LISTEN": ","}, want: []string{"SEALGATE_TPROXY_LISTEN", "no address"}},
		{name: "listen port too large", env: map[string]string{"SEALGATE_LISTEN": ":99999"}, want: []string{"SEALGATE_LISTEN", "0 to 65535"}},
		{name: "idle timeout of a nanosecond", env: map[string]string{"SEALGATE_SESSION_IDLE_TIMEOUT": "1ns"}, want: []string{"SEALGATE_SESSION_IDLE_TIMEOUT"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, ok := tc.env["SEALGATE_HOSTNAME"]; !ok {
				tc.env["SEALGATE_HOSTNAME"] = "gw.example.test"
			}
			_, err := parseConfig(tc.env)
			if err == nil {
				t.Fatal("parseConfig accepted a bad value")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestRunVersionAndUnknownCommand(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"version"}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "sealgate ") {
		t.Errorf("version: code %d, output %q", code, out.String())
	}
	out.Reset()
	if code := run([]string{"frobnicate"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "unknown command") {
		t.Errorf("unknown command: code %d, stderr %q", code, errb.String())
	}
}
