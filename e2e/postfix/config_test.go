package postfix

import (
	"crypto/tls"
	"errors"
	"strings"
	"testing"
)

func TestOptionsValidate(t *testing.T) {
	tests := []struct {
		name     string
		opts     Options
		wantErr  bool
		wantHost string
	}{
		{name: "defaults", opts: Options{RelayHost: "127.0.0.1:2525"}, wantHost: DefaultMyHostname},
		{name: "own hostname", opts: Options{RelayHost: "127.0.0.1:2525", MyHostname: "mx.legacy.test"}, wantHost: "mx.legacy.test"},
		{name: "smtp listen", opts: Options{RelayHost: "127.0.0.1:2525", SMTPListen: "127.0.0.7:10025"}, wantHost: DefaultMyHostname},
		{name: "no relay", opts: Options{}, wantErr: true},
		{name: "relay not loopback", opts: Options{RelayHost: "192.0.2.1:25"}, wantErr: true},
		{name: "relay hostname", opts: Options{RelayHost: "mx.dest.test:25"}, wantErr: true},
		{name: "relay ipv6", opts: Options{RelayHost: "[::1]:25"}, wantErr: true},
		{name: "relay port zero", opts: Options{RelayHost: "127.0.0.1:0"}, wantErr: true},
		{name: "relay port name", opts: Options{RelayHost: "127.0.0.1:smtp"}, wantErr: true},
		{name: "listen not loopback", opts: Options{RelayHost: "127.0.0.1:25", SMTPListen: "0.0.0.0:25"}, wantErr: true},
		{name: "hostname with space", opts: Options{RelayHost: "127.0.0.1:25", MyHostname: "a b"}, wantErr: true},
		{name: "main.cf newline", opts: Options{RelayHost: "127.0.0.1:25", MainCF: map[string]string{"x": "1\ny = 2"}}, wantErr: true},
		{name: "main.cf key with equals", opts: Options{RelayHost: "127.0.0.1:25", MainCF: map[string]string{"x=": "1"}}, wantErr: true},
		{name: "mx", opts: Options{SMTPListen: "127.0.0.7:2525", MX: &MXOptions{Domains: []string{"dest.test"}}}, wantHost: DefaultMyHostname},
		{name: "mx no listen", opts: Options{MX: &MXOptions{Domains: []string{"dest.test"}}}, wantErr: true},
		{name: "mx bad relay", opts: Options{RelayHost: "192.0.2.1:25", SMTPListen: "127.0.0.7:2525", MX: &MXOptions{Domains: []string{"dest.test"}}}, wantErr: true},
		{name: "mx no domain", opts: Options{SMTPListen: "127.0.0.7:2525", MX: &MXOptions{}}, wantErr: true},
		{name: "mx domain list", opts: Options{SMTPListen: "127.0.0.7:2525", MX: &MXOptions{Domains: []string{"a.test,b.test"}}}, wantErr: true},
		{name: "mx reject newline", opts: Options{SMTPListen: "127.0.0.7:2525", MX: &MXOptions{Domains: []string{"a.test"}, RejectRcpt: map[string]string{"x@a.test": "550\nOK"}}}, wantErr: true},
		{name: "mx reject key space", opts: Options{SMTPListen: "127.0.0.7:2525", MX: &MXOptions{Domains: []string{"a.test"}, RejectRcpt: map[string]string{"x @a.test": "550 no"}}}, wantErr: true},
		{name: "mx certificate without key", opts: Options{SMTPListen: "127.0.0.7:2525", MX: &MXOptions{Domains: []string{"a.test"}, Certificate: &tls.Certificate{Certificate: [][]byte{{1}}}}}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.opts.validate()
			if tt.wantErr {
				if !errors.Is(err, ErrBadOption) {
					t.Fatalf("validate() error = %v, want ErrBadOption", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("validate() error = %v", err)
			}
			if got.MyHostname != tt.wantHost {
				t.Errorf("MyHostname = %q, want %q", got.MyHostname, tt.wantHost)
			}
		})
	}
}

func TestMainCF(t *testing.T) {
	p := paths{root: "/tmp/pfx-1", config: "/tmp/pfx-1/etc", queue: "/tmp/pfx-1/q", data: "/tmp/pfx-1/data", maillog: "/tmp/pfx-1/maillog"}
	opts, err := Options{RelayHost: "127.0.0.1:2525", MainCF: map[string]string{"queue_run_delay": "2s", "message_size_limit": "1000"}}.validate()
	if err != nil {
		t.Fatal(err)
	}
	got := mainCF(opts, p)
	for _, want := range []string{
		"\nrelayhost = [127.0.0.1]:2525\n",
		"\nmyhostname = " + DefaultMyHostname + "\n",
		"\nqueue_directory = /tmp/pfx-1/q\n",
		"\nmaillog_file = /tmp/pfx-1/maillog\n",
		"\nmaillog_file_prefixes = /tmp/pfx-1\n",
		"\nsmtp_dns_support_level = disabled\n",
		"\nsmtp_tls_security_level = none\n",
		"\nmydestination = \n",
		"\nqueue_run_delay = 2s\n", // MainCF overrides the harness
		"\nmessage_size_limit = 1000\n",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("main.cf lacks %q:\n%s", want, got)
		}
	}
	if n := strings.Count(got, "\nqueue_run_delay = "); n != 1 {
		t.Errorf("queue_run_delay set %d times, want once", n)
	}
}

func TestMainCFForMX(t *testing.T) {
	p := paths{root: "/tmp/pfx-1", config: "/tmp/pfx-1/etc", queue: "/tmp/pfx-1/q", data: "/tmp/pfx-1/data", maillog: "/tmp/pfx-1/maillog"}
	cert := tls.Certificate{Certificate: [][]byte{{1}}, PrivateKey: struct{}{}}
	tests := []struct {
		name   string
		mx     MXOptions
		want   []string
		absent []string
	}{
		{
			name: "no STARTTLS",
			mx:   MXOptions{Domains: []string{"a.test", "b.test"}},
			want: []string{
				"\nrelay_domains = a.test b.test\n",
				"\nsmtpd_relay_restrictions = reject_unauth_destination\n",
				"\nsmtpd_data_restrictions = check_client_access static:HOLD\n",
				"\nsmtpd_tls_security_level = none\n",
				"\nlocal_header_rewrite_clients = \n",
			},
			absent: []string{"relayhost", "smtpd_tls_chain_files", "smtpd_recipient_restrictions"},
		},
		{
			name: "STARTTLS and a refused recipient",
			mx:   MXOptions{Domains: []string{"a.test"}, Certificate: &cert, RejectRcpt: map[string]string{"x@a.test": "550 5.1.1 no"}},
			want: []string{
				"\nsmtpd_tls_security_level = may\n",
				"\nsmtpd_tls_chain_files = /tmp/pfx-1/etc/smtpd.pem\n",
				"\nsmtpd_recipient_restrictions = check_recipient_access texthash:/tmp/pfx-1/etc/recipient_access\n",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts, err := Options{SMTPListen: "127.0.0.7:2525", MX: &tt.mx}.validate()
			if err != nil {
				t.Fatal(err)
			}
			got := mainCF(opts, p)
			for _, want := range tt.want {
				if !strings.Contains(got, want) {
					t.Errorf("main.cf lacks %q:\n%s", want, got)
				}
			}
			for _, absent := range tt.absent {
				if strings.Contains(got, "\n"+absent+" = ") {
					t.Errorf("main.cf sets %s:\n%s", absent, got)
				}
			}
		})
	}
}

func TestAccessMap(t *testing.T) {
	got := accessMap(map[string]string{"z@a.test": "550 5.1.1 gone", "b@a.test": "450 4.2.1 later"})
	if want := "b@a.test 450 4.2.1 later\nz@a.test 550 5.1.1 gone\n"; got != want {
		t.Errorf("accessMap() = %q, want %q", got, want)
	}
}

func TestMasterCF(t *testing.T) {
	tests := []struct {
		name       string
		listen     string
		wantSMTPD  string
		wantInetNo bool
	}{
		{name: "no smtpd", wantInetNo: true},
		{name: "smtpd", listen: "127.0.0.3:10025", wantSMTPD: "\n127.0.0.3:10025 inet n - n - - smtpd\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := masterCF(Options{SMTPListen: tt.listen})
			for _, svc := range []string{"pickup", "cleanup", "qmgr", "rewrite", "smtp", "relay", "showq", "tlsmgr", "tlsproxy", "postlog   unix-dgram"} {
				if !strings.Contains(got, "\n"+svc+" ") {
					t.Errorf("master.cf lacks service %q", svc)
				}
			}
			if tt.wantInetNo && strings.Contains(got, " inet ") {
				t.Errorf("master.cf has an inet service:\n%s", got)
			}
			if tt.wantSMTPD != "" && !strings.Contains(got, tt.wantSMTPD) {
				t.Errorf("master.cf lacks %q:\n%s", tt.wantSMTPD, got)
			}
		})
	}
}

const queueSample = `{"queue_name": "deferred", "queue_id": "4C4A99840B3", "arrival_time": 1795450177, "message_size": 273, "forced_expire": false, "sender": "a@legacy.test", "recipients": [{"address": "b@dest.test", "delay_reason": "connect to 127.0.0.1[127.0.0.1]:2599: Connection refused"}]}
{"queue_name": "maildrop", "queue_id": "421239840B9", "arrival_time": 1795450177, "message_size": 103, "forced_expire": false, "sender": "", "recipients": [{"address": "c@dest.test"}, {"address": "d@dest.test"}]}
`

func TestParseQueue(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		wantIDs []string
		wantErr bool
	}{
		{name: "empty", in: ""},
		{name: "two entries", in: queueSample, wantIDs: []string{"4C4A99840B3", "421239840B9"}},
		{name: "not json", in: "Mail queue is empty\n", wantErr: true},
		{name: "no id", in: `{"queue_name": "active"}` + "\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseQueue([]byte(tt.in))
			if tt.wantErr {
				if !errors.Is(err, ErrQueueFormat) {
					t.Fatalf("parseQueue() error = %v, want ErrQueueFormat", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseQueue() error = %v", err)
			}
			if len(got) != len(tt.wantIDs) {
				t.Fatalf("parseQueue() = %d entries, want %d", len(got), len(tt.wantIDs))
			}
			for i, e := range got {
				if e.ID != tt.wantIDs[i] {
					t.Errorf("entry %d ID = %q, want %q", i, e.ID, tt.wantIDs[i])
				}
			}
		})
	}
	got, err := parseQueue([]byte(queueSample))
	if err != nil {
		t.Fatal(err)
	}
	if r := got[0].Recipients[0]; r.Address != "b@dest.test" || !strings.Contains(r.DelayReason, "Connection refused") {
		t.Errorf("first recipient = %+v", r)
	}
	if got[1].Queue != "maildrop" || got[1].Sender != "" || len(got[1].Recipients) != 2 {
		t.Errorf("second entry = %+v", got[1])
	}
}

func FuzzParseQueue(f *testing.F) {
	f.Add([]byte(queueSample))
	f.Add([]byte("\n\n"))
	f.Add([]byte(`{"queue_name":"hold","queue_id":"X","recipients":null}`))
	f.Fuzz(func(t *testing.T, in []byte) {
		entries, err := parseQueue(in)
		if err != nil {
			return
		}
		for _, e := range entries {
			if e.ID == "" || e.Queue == "" {
				t.Fatalf("accepted an entry without ID or queue: %+v", e)
			}
		}
	})
}

func TestTail(t *testing.T) {
	tests := []struct {
		name string
		in   string
		n    int
		want string
	}{
		{name: "short", in: "a\nb\n", n: 5, want: "a\nb"},
		{name: "cut", in: "a\nb\nc\n", n: 2, want: "b\nc"},
		{name: "empty", in: "", n: 3, want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tail(tt.in, tt.n); got != tt.want {
				t.Errorf("tail(%q, %d) = %q, want %q", tt.in, tt.n, got, tt.want)
			}
		})
	}
}
