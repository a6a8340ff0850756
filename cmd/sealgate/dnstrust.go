package main

import (
	"strings"

	"sealgate/enforcement/resolver"
)

// trustAD is the resolver's decision whose AD flag to believe: only
// resolvers on loopback, or every one with SEALGATE_DNS_TRUST_AD=true.
func trustAD(cfg *Config) func(string) bool {
	if cfg.DNSTrustAD {
		return resolver.TrustAll
	}
	return resolver.TrustLoopback
}

// dnssecTrust says whether DNSSEC answers are believed (the AD flag of
// every resolver is trusted) and why, for the start log and check.
func dnssecTrust(cfg *Config, r *resolver.Resolver) (bool, string) {
	trusted, ignored := r.ADTrust()
	var why []string
	if len(trusted) > 0 {
		how := "on loopback"
		if cfg.DNSTrustAD {
			how = "trusted by " + envPrefix + "DNS_TRUST_AD=true"
		}
		why = append(why, "the AD flag of "+strings.Join(trusted, ", ")+" is believed ("+how+")")
	}
	if len(ignored) > 0 {
		why = append(why, "the AD flag of "+strings.Join(ignored, ", ")+" is ignored (not on loopback; set "+
			envPrefix+"DNS_TRUST_AD=true only if the path to it is protected): its answers count as insecure, no DANE, no DNSSEC-secure MX")
	}
	return len(ignored) == 0, strings.Join(why, "; ")
}
