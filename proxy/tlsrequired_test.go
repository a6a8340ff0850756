package proxy

import (
	"bufio"
	"strings"
	"testing"
)

func TestTLSRequiredNo(t *testing.T) {
	tests := []struct {
		name   string
		header string
		want   bool
	}{
		{name: "present", header: "From: a@x.test\r\nTLS-Required: No\r\n\r\n", want: true},
		{name: "case and spaces", header: "tls-required:   no  \r\nSubject: x\r\n\r\n", want: true},
		{name: "folded", header: "Subject: x\r\nTLS-Required:\r\n No\r\n\r\n", want: true},
		{name: "last field without body", header: "Subject: x\r\nTLS-Required: No", want: true},
		{name: "absent", header: "From: a@x.test\r\nSubject: TLS-Required: No\r\n\r\n"},
		{name: "other value", header: "TLS-Required: Yes\r\n\r\n"},
		{name: "only in the body", header: "Subject: x\r\n\r\nTLS-Required: No\r\n"},
		{name: "prefix of a longer name", header: "X-TLS-Required: No\r\n\r\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h, err := readHeader(bufio.NewReader(strings.NewReader(tc.header)))
			if err != nil {
				t.Fatal(err)
			}
			if got := tlsRequiredNo(h); got != tc.want {
				t.Errorf("tlsRequiredNo(%q) = %v, want %v", h, got, tc.want)
			}
			if !strings.HasPrefix(tc.header, string(h)) {
				t.Errorf("readHeader returned %q, not a prefix of the input", h)
			}
		})
	}
}
