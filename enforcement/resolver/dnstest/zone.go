package dnstest

import (
	"net"
	"strings"

	"github.com/miekg/dns"
)

// maxChain bounds the CNAME chain the server follows in its own data.
const maxChain = 16

// Add parses records in zone-file syntax with dns.NewRR and adds them, e.g.
// s.Add("example.test. 300 IN MX 10 mx1.example.test."). A record that does
// not parse fails the test; call it from the test goroutine.
func (s *Server) Add(records ...string) {
	s.tb.Helper()
	rrs := make([]dns.RR, 0, len(records))
	for _, text := range records {
		rr, err := dns.NewRR(text)
		if err != nil {
			s.tb.Fatalf("dnstest: record %q: %v", text, err)
		}
		if rr == nil {
			s.tb.Fatalf("dnstest: record %q: empty", text)
		}
		rrs = append(rrs, rr)
	}
	s.AddRR(rrs...)
}

// AddRR adds records; exact duplicates are ignored.
func (s *Server) AddRR(rrs ...dns.RR) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, rr := range rrs {
		rr = dns.Copy(rr)
		k := key{dns.CanonicalName(rr.Header().Name), rr.Header().Rrtype}
		dup := false
		for _, have := range s.rrsets[k] {
			if dns.IsDuplicate(have, rr) {
				dup = true
				break
			}
		}
		if !dup {
			s.rrsets[k] = append(s.rrsets[k], rr)
		}
	}
}

// Remove deletes the RRset name/qtype, or every record at name for
// dns.TypeANY.
func (s *Server) Remove(name string, qtype uint16) {
	s.mu.Lock()
	defer s.mu.Unlock()
	name = dns.CanonicalName(name)
	for k := range s.rrsets {
		if k.name == name && (qtype == dns.TypeANY || k.qtype == qtype) {
			delete(s.rrsets, k)
		}
	}
}

// SetSecure marks the RRset name/qtype (dns.TypeANY: every type at name,
// including its denial) as DNSSEC-secure or not. It overrides the zone
// default of SetSecureZone; the per-type setting wins over TypeANY.
func (s *Server) SetSecure(name string, qtype uint16, secure bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.secure[key{dns.CanonicalName(name), qtype}] = secure
}

// SetSecureZone sets the default security of every RRset (and denial) at or
// below zone; the closest enclosing zone wins. Without any setting, answers
// are insecure.
func (s *Server) SetSecureZone(zone string, secure bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.secureZones[dns.CanonicalName(zone)] = secure
}

// SetRcode makes queries for name/qtype (dns.TypeANY: any type) answer with
// rcode and no records, e.g. dns.RcodeServerFailure, dns.RcodeRefused,
// dns.RcodeNameError. dns.RcodeSuccess removes the switch.
func (s *Server) SetRcode(name string, qtype uint16, rcode int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := key{dns.CanonicalName(name), qtype}
	if rcode == dns.RcodeSuccess {
		delete(s.rcodes, k)
		return
	}
	s.rcodes[k] = rcode
}

// SetTruncate makes UDP answers for name/qtype (dns.TypeANY: any type) carry
// TC and no records; TCP answers stay complete.
func (s *Server) SetTruncate(name string, qtype uint16, truncate bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.truncate[key{dns.CanonicalName(name), qtype}] = truncate
}

// SetDrop makes the server ignore queries for name/qtype (dns.TypeANY: any
// type), over both transports, so that clients time out.
func (s *Server) SetDrop(name string, qtype uint16, drop bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drop[key{dns.CanonicalName(name), qtype}] = drop
}

// SetFollowCNAME says whether answers follow CNAMEs within the server's
// data (the default, like a recursive resolver) or stop at the first CNAME
// (like an authoritative server whose target lives in another zone).
func (s *Server) SetFollowCNAME(follow bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.noFollow = !follow
}

// lookupSwitch finds the switch for name/qtype, the exact type first.
func lookupSwitch[V any](m map[key]V, name string, qtype uint16) (V, bool) {
	if v, ok := m[key{name, qtype}]; ok {
		return v, true
	}
	v, ok := m[key{name, dns.TypeANY}]
	return v, ok
}

// isSecure says whether name/qtype is marked secure. Callers hold s.mu.
func (s *Server) isSecure(name string, qtype uint16) bool {
	if v, ok := lookupSwitch(s.secure, name, qtype); ok {
		return v
	}
	best, secure := -1, false
	for zone, v := range s.secureZones {
		if n := dns.CountLabel(zone); dns.IsSubDomain(zone, name) && n > best {
			best, secure = n, v
		}
	}
	return secure
}

// exists says whether name owns records or has a descendant that does (an
// empty non-terminal). Callers hold s.mu.
func (s *Server) exists(name string) bool {
	for k := range s.rrsets {
		if dns.IsSubDomain(name, k.name) {
			return true
		}
	}
	return false
}

// SetNegativeTTL makes NXDOMAIN and NODATA answers carry, in their
// authority section, an SOA record whose TTL and MINIMUM are ttl seconds,
// so that a caching client keeps them that long (RFC 2308 §5). The owner
// of the SOA is the last two labels of the name that does not exist or
// has no data. Zero (the default) sends no SOA: the answers must not be
// cached.
func (s *Server) SetNegativeTTL(ttl uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.negativeTTL = ttl
}

// negativeSOA returns the SOA for a negative answer about name, or nil.
// Callers hold s.mu.
func (s *Server) negativeSOA(name string) dns.RR {
	if s.negativeTTL == 0 {
		return nil
	}
	labels := dns.SplitDomainName(name)
	zone := dns.Fqdn(strings.Join(labels[max(0, len(labels)-2):], "."))
	return &dns.SOA{
		Hdr:     dns.RR_Header{Name: zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: s.negativeTTL},
		Ns:      "ns." + zone,
		Mbox:    "hostmaster." + zone,
		Serial:  1,
		Refresh: 3600,
		Retry:   600,
		Expire:  86400,
		Minttl:  s.negativeTTL,
	}
}

// answer resolves name/qtype in the server's data, following CNAMEs unless
// told not to, and says whether the answer ended in NXDOMAIN or NODATA at
// the returned name. Callers hold s.mu.
func (s *Server) answer(name string, qtype uint16) ([]dns.RR, int, bool, string) {
	var out []dns.RR
	secure := true
	seen := map[string]bool{name: true}
	cur := name
	for range maxChain {
		if rrs := s.rrsets[key{cur, qtype}]; len(rrs) > 0 {
			for _, rr := range rrs {
				out = append(out, dns.Copy(rr))
			}
			return out, dns.RcodeSuccess, secure && s.isSecure(cur, qtype), ""
		}
		cnames := s.rrsets[key{cur, dns.TypeCNAME}]
		if qtype == dns.TypeCNAME || len(cnames) == 0 {
			break
		}
		cname, ok := cnames[0].(*dns.CNAME)
		if !ok {
			break
		}
		out = append(out, dns.Copy(cname))
		secure = secure && s.isSecure(cur, dns.TypeCNAME)
		target := dns.CanonicalName(cname.Target)
		if s.noFollow || seen[target] {
			return out, dns.RcodeSuccess, secure, ""
		}
		seen[target] = true
		cur = target
	}
	secure = secure && s.isSecure(cur, qtype)
	if !s.exists(cur) {
		return out, dns.RcodeNameError, secure, cur
	}
	return out, dns.RcodeSuccess, secure, cur
}

// ServeDNS implements dns.Handler.
func (s *Server) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	if len(req.Question) != 1 {
		resp := new(dns.Msg)
		resp.SetRcodeFormatError(req)
		_ = w.WriteMsg(resp)
		return
	}
	q := req.Question[0]
	network := "udp"
	if _, ok := w.RemoteAddr().(*net.TCPAddr); ok {
		network = "tcp"
	}
	opt := req.IsEdns0()
	rec := Query{Name: q.Name, Type: q.Qtype, Net: network, RD: req.RecursionDesired, AD: req.AuthenticatedData}
	if opt != nil {
		rec.DO, rec.UDPSize = opt.Do(), opt.UDPSize()
	}
	name := dns.CanonicalName(q.Name)

	resp := new(dns.Msg)
	resp.SetReply(req)
	resp.RecursionAvailable = true
	if opt != nil {
		resp.SetEdns0(1232, opt.Do())
	}

	s.mu.Lock()
	s.queries = append(s.queries, rec)
	drop, _ := lookupSwitch(s.drop, name, q.Qtype)
	rcode, forced := lookupSwitch(s.rcodes, name, q.Qtype)
	truncate, _ := lookupSwitch(s.truncate, name, q.Qtype)
	var secure bool
	if !forced {
		var negative string
		resp.Answer, resp.Rcode, secure, negative = s.answer(name, q.Qtype)
		if negative != "" {
			if soa := s.negativeSOA(negative); soa != nil {
				resp.Ns = []dns.RR{soa}
			}
		}
	}
	s.mu.Unlock()

	switch {
	case drop:
		return
	case forced:
		resp.Rcode = rcode
		resp.Answer = nil
	case truncate && network == "udp":
		resp.Truncated = true
		resp.Answer = nil
	default:
		// SetReply does not copy AD; a validating resolver sets it only
		// when the client asked with DO or AD (RFC 6840 §5.8).
		resp.AuthenticatedData = secure && (rec.DO || rec.AD)
		if network == "udp" {
			size := dns.MinMsgSize
			if opt != nil {
				size = int(opt.UDPSize())
			}
			resp.Truncate(size)
		}
	}
	_ = w.WriteMsg(resp)
}
