package localpolicy

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"sealgate/enforcement/dnsname"
)

// normalizeDestination checks a table key and returns it lower-cased,
// without a trailing dot.
func normalizeDestination(raw string) (string, error) {
	bad := func(why string) error { return fmt.Errorf("%w %q: %s", ErrBadDestination, raw, why) }
	s := strings.ToLower(raw)
	switch {
	case strings.HasPrefix(s, "["):
		end := strings.IndexByte(s, ']')
		if end < 0 {
			return "", bad("no closing bracket")
		}
		host, rest := s[1:end], s[end+1:]
		host, ok := nexthopHost(host)
		if !ok {
			return "", bad("want a host name or IP address inside the brackets")
		}
		if rest != "" && (!strings.HasPrefix(rest, ":") || !validPort(rest[1:])) {
			return "", bad("want [host] or [host]:port")
		}
		return "[" + host + "]" + rest, nil
	case strings.Contains(s, ":"):
		host, port, _ := strings.Cut(s, ":")
		host = strings.TrimSuffix(host, ".")
		if !dnsname.ValidPostfixName(host) || !validPort(port) {
			return "", bad("want domain, .domain, [host], [host]:port or host:port")
		}
		return host + ":" + port, nil
	case strings.HasPrefix(s, "."):
		d := strings.TrimSuffix(s[1:], ".")
		if !dnsname.ValidPostfixName(d) {
			return "", bad("not a domain name after the leading dot")
		}
		return "." + d, nil
	default:
		d := strings.TrimSuffix(s, ".")
		if !dnsname.ValidPostfixName(d) {
			return "", bad("not a domain name (write internationalized names in xn-- form)")
		}
		return d, nil
	}
}

// nexthopHost accepts what Postfix allows inside brackets: a host name, an
// IPv4 address, or an IPv6 address with or without the "ipv6:" prefix.
func nexthopHost(h string) (string, bool) {
	if a, err := netip.ParseAddr(strings.TrimPrefix(h, "ipv6:")); err == nil {
		if a.Zone() != "" || (strings.HasPrefix(h, "ipv6:") && !a.Is6()) {
			return "", false
		}
		return h, true
	}
	h = strings.TrimSuffix(h, ".")
	return h, dnsname.ValidPostfixName(h)
}

func validPort(s string) bool {
	if s == "" || len(s) > 5 || strings.TrimLeft(s, "0123456789") != "" {
		return false
	}
	n, err := strconv.Atoi(s)
	return err == nil && n >= 1 && n <= 65535
}
