package localpolicy

import (
	"errors"
	"testing"
)

func TestLevelString(t *testing.T) {
	tests := []struct {
		name  string
		level Level
		want  string
		valid bool
	}{
		{name: "encrypt", level: LevelEncrypt, want: "encrypt", valid: true},
		{name: "fingerprint", level: LevelFingerprint, want: "fingerprint", valid: true},
		{name: "dane", level: LevelDANE, want: "dane", valid: true},
		{name: "dane-only", level: LevelDANEOnly, want: "dane-only", valid: true},
		{name: "verify", level: LevelVerify, want: "verify", valid: true},
		{name: "secure", level: LevelSecure, want: "secure", valid: true},
		{name: "zero", level: 0, want: "unknown(0)"},
		{name: "stray", level: 42, want: "unknown(42)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.level.String(); got != tc.want {
				t.Errorf("String() = %q, want %q", got, tc.want)
			}
			if got := tc.level.Valid(); got != tc.valid {
				t.Errorf("Valid() = %v, want %v", got, tc.valid)
			}
			text, err := tc.level.MarshalText()
			if tc.valid != (err == nil) {
				t.Fatalf("MarshalText() error = %v, valid %v", err, tc.valid)
			}
			if tc.valid && string(text) != tc.want {
				t.Errorf("MarshalText() = %q, want %q", text, tc.want)
			}
		})
	}
}

func TestLevelOrderIsPostfixs(t *testing.T) {
	order := []Level{LevelEncrypt, LevelFingerprint, LevelDANE, LevelDANEOnly, LevelVerify, LevelSecure}
	for i := 1; i < len(order); i++ {
		if order[i-1] >= order[i] {
			t.Errorf("%s >= %s; want Postfix's order", order[i-1], order[i])
		}
	}
}

func TestParseLevel(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Level
		wantErr error
	}{
		{name: "lower", in: "secure", want: LevelSecure},
		{name: "mixed case", in: "Dane-Only", want: LevelDANEOnly},
		{name: "may", in: "may", wantErr: ErrCleartext},
		{name: "none upper", in: "NONE", wantErr: ErrCleartext},
		{name: "unknown", in: "verfy", wantErr: ErrUnknownLevel},
		{name: "half-dane is internal to Postfix", in: "half-dane", wantErr: ErrUnknownLevel},
		{name: "empty", in: "", wantErr: ErrUnknownLevel},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseLevel(tc.in, "x.test")
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("parseLevel(%q) error = %v, want %v", tc.in, err, tc.wantErr)
			}
			if got != tc.want {
				t.Errorf("parseLevel(%q) = %s, want %s", tc.in, got, tc.want)
			}
		})
	}
}
