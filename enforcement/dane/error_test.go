package dane

import (
	"crypto/x509"
	"errors"
	"fmt"
	"testing"
)

func TestKindString(t *testing.T) {
	tests := []struct {
		kind Kind
		want string
	}{
		{kind: NoUsable, want: "no usable TLSA records"},
		{kind: NoMatch, want: "no TLSA record matched the certificate chain"},
		{kind: ChainInvalid, want: "certificate chain invalid"},
		{kind: NameMismatch, want: "certificate not valid for name"},
		{kind: 0, want: "unknown(0)"},
		{kind: 9, want: "unknown(9)"},
	}
	for _, tc := range tests {
		t.Run(tc.want, func(t *testing.T) {
			if got := tc.kind.String(); got != tc.want {
				t.Errorf("String = %q, want %q", got, tc.want)
			}
		})
	}
}

func TestErrorIsAs(t *testing.T) {
	cause := x509.CertificateInvalidError{Reason: x509.Expired}
	err := fmt.Errorf("mx1.example.test: %w", &Error{Kind: ChainInvalid, Detail: "DANE-TA 2 1 1 ab at depth 1", Err: cause})
	tests := []struct {
		name   string
		target error
		want   bool
	}{
		{name: "own kind", target: ErrChainInvalid, want: true},
		{name: "other kind", target: ErrNoMatch, want: false},
		{name: "name mismatch", target: ErrNameMismatch, want: false},
		{name: "no usable", target: ErrNoUsable, want: false},
		{name: "non-sentinel of same kind", target: &Error{Kind: ChainInvalid, Detail: "x"}, want: false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := errors.Is(err, tc.target); got != tc.want {
				t.Errorf("errors.Is(%v, %v) = %v, want %v", err, tc.target, got, tc.want)
			}
		})
	}
	var de *Error
	if !errors.As(err, &de) || de.Kind != ChainInvalid {
		t.Fatalf("errors.As *Error: %v", err)
	}
	var inv x509.CertificateInvalidError
	if !errors.As(err, &inv) || inv.Reason != x509.Expired {
		t.Errorf("errors.As x509.CertificateInvalidError through Unwrap failed: %v", err)
	}
	if got, want := de.Error(), "certificate chain invalid: DANE-TA 2 1 1 ab at depth 1"; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	if got, want := ErrNoMatch.Error(), "no TLSA record matched the certificate chain"; got != want {
		t.Errorf("sentinel Error() = %q, want %q", got, want)
	}
}
