package localpolicy

import (
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary policy files to Parse. It must not panic, and
// whatever it accepts must be usable: known levels only, the attributes
// each level needs, and entries that Lookup finds again.
func FuzzParse(f *testing.F) {
	fp := colonHex(digest("seed"))
	for _, seed := range []string{
		"",
		"example.test encrypt\n",
		"example.test may\n",
		"example.test none\n",
		".example.test secure match=.example.test:example.test\n",
		"[mail.example.test]:587 secure match=nexthop\n",
		"[thumb.example.test] fingerprint\n    match=" + fp + "\n    match=" + strings.ReplaceAll(fp, ":", "") + "\n",
		"example.test verify\n        match=hostname:dot-nexthop protocols=!SSLv2:!SSLv3:!TLSv1:!TLSv1.1\n",
		"example.test dane-only protocols=>=TLSv1.2:<=0x0304\n",
		"example.test secure { match = nexthop }, {protocols=>=TLSv1.2}\n",
		"# comment\n\n  x\nexample.test encrypt\r\n",
		"x.test secure tafile=/nonexistent.pem\n",
		"[ipv6:2001:db8::1]:25 dane\nrelay.test:2525 encrypt\n",
		"a.test encrypt\nA.TEST. secure\n",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, text string) {
		p, err := Parse("fuzz.cf", strings.NewReader(text))
		if err != nil {
			if p != nil {
				t.Fatalf("policy returned with error %v", err)
			}
			firstParseError(t, err)
			return
		}
		for _, e := range p.Entries() {
			if !e.Level.Valid() || e.Level < LevelEncrypt {
				t.Fatalf("entry %q has level %s", e.Destination, e.Level)
			}
			switch e.Level {
			case LevelFingerprint:
				if len(e.Fingerprints) == 0 {
					t.Fatalf("fingerprint entry %q has no fingerprint", e.Destination)
				}
				for _, d := range e.Fingerprints {
					if len(d) != 32 {
						t.Fatalf("fingerprint of %d bytes", len(d))
					}
				}
			case LevelVerify, LevelSecure:
				if len(e.Match) == 0 {
					t.Fatalf("%s entry %q has no match", e.Level, e.Destination)
				}
			default:
				if len(e.Match) != 0 || e.Roots != nil {
					t.Fatalf("%s entry %q has match or roots", e.Level, e.Destination)
				}
			}
			if got, ok := p.Lookup(e.Destination); !ok || got != e {
				t.Fatalf("Lookup(%q) does not find its entry", e.Destination)
			}
			_ = e.ReferenceNames(e.Destination, e.Destination)
		}
	})
}
