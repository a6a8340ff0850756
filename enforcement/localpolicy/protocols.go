package localpolicy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// tlsProtocols are the names of Postfix's protocols syntax, oldest first,
// with their wire versions. Go speaks TLS 1.0 and later only.
var tlsProtocols = []struct {
	name string
	code uint16
}{
	{"SSLv2", 0x0002},
	{"SSLv3", 0x0300},
	{"TLSv1", tls.VersionTLS10},
	{"TLSv1.1", tls.VersionTLS11},
	{"TLSv1.2", tls.VersionTLS12},
	{"TLSv1.3", tls.VersionTLS13},
}

const protocolNames = "SSLv2, SSLv3, TLSv1, TLSv1.1, TLSv1.2 or TLSv1.3"

var errNoProtocol = errors.New("no TLS version that sealgate can speak (TLSv1 to TLSv1.3) remains")

func protocolIndex(name string) (int, bool) {
	for i, p := range tlsProtocols {
		if strings.EqualFold(name, p.name) {
			return i, true
		}
	}
	return 0, false
}

// parseVersionBound reads the version of ">=V" or "<=V": a protocol name or
// Postfix's hexadecimal form ("0303", "0x0303", "303").
func parseVersionBound(v string) (uint16, error) {
	if i, ok := protocolIndex(v); ok {
		return tlsProtocols[i].code, nil
	}
	h := strings.TrimPrefix(strings.TrimPrefix(v, "0x"), "0X")
	if h != "" && len(h) <= 4 {
		if n, err := strconv.ParseUint(h, 16, 16); err == nil {
			return uint16(n), nil
		}
	}
	return 0, fmt.Errorf("version %q is neither %s nor a hexadecimal version such as 0303", v, protocolNames)
}

// parseProtocols evaluates a policy-table protocols value (colon-separated:
// "NAME" includes, "!NAME" excludes, ">=V" and "<=V" bound), the way
// Postfix and OpenSSL do: a non-empty include list excludes every protocol
// not on it, and the usable range is the contiguous run of enabled versions
// upwards from the lowest one. It returns the Go bounds (0: none; the upper
// bound stays 0 when TLS 1.3 is in the range). An empty value allows all.
func parseProtocols(val string) (uint16, uint16, error) {
	n := len(tlsProtocols)
	include, exclude := make([]bool, n), make([]bool, n)
	anyInclude := false
	lo, hi := uint16(0), uint16(0xffff)
	loSet, hiSet := false, false
	for tok := range strings.SplitSeq(val, ":") {
		switch {
		case tok == "":
		case strings.HasPrefix(tok, ">="), strings.HasPrefix(tok, "<="):
			v, err := parseVersionBound(tok[2:])
			if err != nil {
				return 0, 0, err
			}
			if tok[0] == '>' {
				if loSet {
					return 0, 0, errors.New("lower bound >= given twice")
				}
				lo, loSet = v, true
			} else {
				if hiSet {
					return 0, 0, errors.New("upper bound <= given twice")
				}
				hi, hiSet = v, true
			}
		case strings.HasPrefix(tok, "!"):
			i, ok := protocolIndex(tok[1:])
			if !ok {
				return 0, 0, fmt.Errorf("unknown protocol %q; want %s", tok[1:], protocolNames)
			}
			exclude[i] = true
		default:
			i, ok := protocolIndex(tok)
			if !ok {
				return 0, 0, fmt.Errorf("unknown protocol %q; want %s", tok, protocolNames)
			}
			include[i], anyInclude = true, true
		}
	}
	if !anyInclude && !loSet && !hiSet && !slices.Contains(exclude, true) {
		return 0, 0, nil
	}
	enabled := make([]bool, n)
	for i, p := range tlsProtocols {
		enabled[i] = (!anyInclude || include[i]) && !exclude[i] && p.code >= lo && p.code <= hi
	}
	first := -1
	for i, on := range enabled {
		if on {
			first = i
			break
		}
	}
	if first < 0 {
		return 0, 0, errNoProtocol
	}
	last := first
	for last+1 < n && enabled[last+1] {
		last++
	}
	goMin := 2 // index of TLSv1, the oldest version Go speaks
	if last < goMin {
		return 0, 0, errNoProtocol
	}
	minV := tlsProtocols[max(first, goMin)].code
	maxV := uint16(0)
	if last < n-1 {
		maxV = tlsProtocols[last].code
	}
	return minV, maxV, nil
}

// Protocols returns the TLS versions that protocols= leaves e, in the
// bounds form of Postfix's syntax (">=TLSv1.2", ">=TLSv1:<=TLSv1.2"), or
// "" when the entry has no protocols attribute that bounds them.
func (e *Entry) Protocols() string {
	var parts []string
	if e.MinVersion != 0 {
		parts = append(parts, ">="+protocolName(e.MinVersion))
	}
	if e.MaxVersion != 0 {
		parts = append(parts, "<="+protocolName(e.MaxVersion))
	}
	return strings.Join(parts, ":")
}

// protocolName is the Postfix name of a wire version, or its hexadecimal
// form.
func protocolName(v uint16) string {
	for _, p := range tlsProtocols {
		if p.code == v {
			return p.name
		}
	}
	return fmt.Sprintf("%04x", v)
}
