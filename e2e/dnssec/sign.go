package dnssec

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// ErrNothingToBreak is returned when a zone asked to be broken has no
// signature that could be corrupted.
var ErrNothingToBreak = errors.New("dnssec: no RRSIG to corrupt")

// Signature validity: inception a day back tolerates clock skew; expiry ten
// years ahead outlives any test run yet stays well inside the 68-year window
// of RRSIG serial-number time arithmetic (RFC 4034 section 3.1.5), which a
// far-future date such as 2099 would wrap.
const (
	sigInceptionSkew = 24 * time.Hour
	sigValidity      = 10 * 365 * 24 * time.Hour
)

// signer runs the ldns tools in one directory.
type signer struct {
	keygenPath   string // ldns-keygen
	signzonePath string // ldns-signzone
	dir          string
	now          time.Time
}

// sign generates a KSK and a ZSK for p, signs p's zone file with NSEC and
// returns the name of the signed file and the KSK.
func (s signer) sign(ctx context.Context, p *zonePlan) (string, *dns.DNSKEY, error) {
	ksk, err := s.keygen(ctx, p.origin, true)
	if err != nil {
		return "", nil, err
	}
	zsk, err := s.keygen(ctx, p.origin, false)
	if err != nil {
		return "", nil, err
	}
	if zsk == ksk {
		// Same key tag: the ZSK overwrote the KSK's files. Try once more.
		if zsk, err = s.keygen(ctx, p.origin, false); err != nil {
			return "", nil, err
		}
		if zsk == ksk {
			return "", nil, fmt.Errorf("dnssec: ldns-keygen gave %s twice", ksk)
		}
	}
	key, err := readDNSKEY(filepath.Join(s.dir, ksk+".key"))
	if err != nil {
		return "", nil, err
	}
	signed := p.fileName() + ".signed"
	args := []string{
		"-i", strconv.FormatInt(s.now.Add(-sigInceptionSkew).Unix(), 10),
		"-e", strconv.FormatInt(s.now.Add(sigValidity).Unix(), 10),
		"-o", p.origin,
		"-f", signed,
		p.fileName(), ksk, zsk,
	}
	if _, err := s.run(ctx, s.signzonePath, args...); err != nil {
		return "", nil, err
	}
	return signed, key, nil
}

// keygen makes one ECDSA P-256 key and returns its base name
// (K<origin>+013+<tag>), as ldns-keygen prints it.
func (s signer) keygen(ctx context.Context, origin string, ksk bool) (string, error) {
	args := []string{"-a", "ECDSAP256SHA256"}
	if ksk {
		args = append(args, "-k")
	}
	out, err := s.run(ctx, s.keygenPath, append(args, origin)...)
	if err != nil {
		return "", err
	}
	base := strings.TrimSpace(out)
	if base == "" || strings.ContainsAny(base, "/\n") {
		return "", fmt.Errorf("dnssec: unexpected ldns-keygen output %q", out)
	}
	return base, nil
}

func (s signer) run(ctx context.Context, tool string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, tool, args...)
	cmd.Dir = s.dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("dnssec: %s %s: %w: %s", filepath.Base(tool), strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// readDNSKEY reads the DNSKEY record of an ldns .key file.
func readDNSKEY(path string) (*dns.DNSKEY, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("dnssec: %w", err)
	}
	defer f.Close()
	rr, err := dns.ReadRR(f, path)
	if err != nil {
		return nil, fmt.Errorf("dnssec: key file %s: %w", path, err)
	}
	key, ok := rr.(*dns.DNSKEY)
	if !ok {
		return nil, fmt.Errorf("dnssec: key file %s holds %s, not DNSKEY", path, dns.TypeToString[rr.Header().Rrtype])
	}
	return key, nil
}

// readZone parses a zone file written by ldns-signzone.
func readZone(path, origin string) ([]dns.RR, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("dnssec: %w", err)
	}
	defer f.Close()
	zp := dns.NewZoneParser(f, origin, path)
	var rrs []dns.RR
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		rrs = append(rrs, rr)
	}
	if err := zp.Err(); err != nil {
		return nil, fmt.Errorf("dnssec: %w", err)
	}
	return rrs, nil
}

// corruptSignatures returns rrs with the signature of every RRSIG flipped,
// except those over DNSKEY. The zone's keys still validate against the DS in
// the parent, so the zone stays provably signed, while every other answer
// (data, NSEC denial, DS of grandchildren) is bogus: a validating resolver
// answers SERVFAIL, as it must for forged records.
func corruptSignatures(rrs []dns.RR) ([]dns.RR, error) {
	out := make([]dns.RR, 0, len(rrs))
	n := 0
	for _, rr := range rrs {
		sig, ok := rr.(*dns.RRSIG)
		if !ok || sig.TypeCovered == dns.TypeDNSKEY {
			out = append(out, rr)
			continue
		}
		raw, err := base64.StdEncoding.DecodeString(sig.Signature)
		if err != nil || len(raw) == 0 {
			return nil, fmt.Errorf("dnssec: RRSIG over %s at %s: bad signature text", dns.TypeToString[sig.TypeCovered], sig.Hdr.Name)
		}
		raw[len(raw)/2] ^= 0xff
		bad := dns.Copy(sig).(*dns.RRSIG)
		bad.Signature = base64.StdEncoding.EncodeToString(raw)
		out = append(out, bad)
		n++
	}
	if n == 0 {
		return nil, ErrNothingToBreak
	}
	return out, nil
}
