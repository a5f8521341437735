package identity_test

import (
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/record/identity"
)

func TestFold(t *testing.T) {
	for in, want := range map[string]string{
		"  N'Diaye-Mbéki ": "ndiaye mbeki", "JOSÉ": "jose", "Ochien'g": "ochieng", "Łukasz Müller": "lukasz muller",
		"Straße": "strasse", "Ngũgĩ wa Thiong’o": "ngugi wa thiongo", "लक्ष्मी": "लक्ष्मी", "+254 (712)": "254 712",
		"Jose\u0301": "jose", "": "",
	} {
		assert.Equal(t, want, identity.Fold(in), "Fold(%q)", in)
	}
	assert.Equal(t, "kmg0042", identity.Compact("KMG-0042"))
}

func TestPhonetic(t *testing.T) {
	for _, same := range [][]string{
		{"Mohammed", "Muhammad", "Mohamed", "Mohammad"}, {"Lakshmi", "Laxmi", "Lakshmy"}, {"Wanjiru", "Wanjiro"},
		{"Kofi", "Coffie"}, {"Mwangi", "Muangi"}, {"Fatuma", "Fatima"}, {"Akosua", "Akossua"}, {"Esther", "Ester"},
		{"Vijay", "Bijay"}, {"Priya", "Pria"}, {"Yusuf", "Yusuph"}, {"Atieno", "Atyeno"}, {"José", "jose"},
	} {
		for _, w := range same[1:] {
			assert.Equal(t, identity.Phonetic(same[0]), identity.Phonetic(w), "%s and %s", same[0], w)
		}
	}
	for _, other := range [][2]string{{"Wanjiru", "Wanjiku"}, {"Atieno", "Akinyi"}, {"Kamau", "Kimani"}, {"Ravi", "Rafi"}} {
		assert.NotEqual(t, identity.Phonetic(other[0]), identity.Phonetic(other[1]), "%s and %s", other[0], other[1])
	}
	assert.Empty(t, identity.Phonetic("0712"), "a number has no phonetic key")
	assert.Empty(t, identity.Phonetic("लक्ष्मी"), "a word of another script has no phonetic key")
	assert.Equal(t, "712345678", identity.PhoneKey("+254 712 345678"))
	assert.Equal(t, "712345678", identity.PhoneKey("0712-345-678"))
	assert.Empty(t, identity.PhoneKey("12"))
}

var wanjiru = record.Patient{
	GivenName: "Wanjiru", FamilyName: "Mwangi", Sex: "female", EstimatedBirthYear: 1988, Village: "Kamuga",
	Phone: "+254 712 345678", HomeClinic: "kamuga",
	Identifiers: []record.Identifier{{System: record.SystemAadhaar, Value: "234123412346"}, {System: record.SystemClinic, Value: "KMG0042"}},
}

func TestKeys(t *testing.T) {
	require.Equal(t, []string{"i:234123412346", "i:kmg0042", "n:mwangi", "n:wanjiru", "s:bnjr", "s:mng", "t:712345678", "v:kamuga", "w:kmg"},
		identity.Keys(wanjiru))
}

// findsAndMatches reports whether a store answering q's lookups finds p
// (every term has a lookup matching one of p's keys) and whether Match
// accepts it.
func findsAndMatches(q identity.Query, p record.Patient) (found, matched bool) {
	keys := identity.Keys(p)
	found = len(q.Terms) > 0
	for _, term := range q.Terms {
		found = found && slices.ContainsFunc(term.Lookups, func(l identity.Lookup) bool {
			return slices.ContainsFunc(keys, l.Matches)
		})
	}
	_, matched = q.Match(p)
	return found, matched
}

func TestSearch(t *testing.T) {
	for _, tc := range []struct {
		query string
		match bool
	}{
		{"Wanjiru Mwangi", true},
		{"mwangi wanjiru", true},
		{"WANJIRU", true},
		{"Wanjíru", true},
		{"wanjiro muangi", true}, // spelling variants
		{"wanj mwa", true},       // first letters
		{"wanjiru kamuga", true}, // name and village
		{"kamuga", true},
		{"+254 712 345 678", true},
		{"0712345678", true},
		{"2341 2341 2346", true},
		{"kmg-0042", true},
		{"KMG 0042", true},
		{"wanjiku", false},
		{"wanjiru otieno", false}, // every word must match
		{"wa", false},             // too short for a prefix
		{"0712345679", false},
		{"", false},
		{"  -- ", false},
	} {
		t.Run(tc.query, func(t *testing.T) {
			q := identity.ParseQuery(tc.query)
			found, matched := findsAndMatches(q, wanjiru)
			assert.Equal(t, tc.match, matched, "Match")
			if matched {
				assert.True(t, found, "a chart Match accepts is not found by the query's lookups")
			}
		})
	}
	exact, _ := identity.ParseQuery("wanjiru").Match(wanjiru)
	variant, _ := identity.ParseQuery("wanjiro").Match(wanjiru)
	prefix, _ := identity.ParseQuery("wanj").Match(wanjiru)
	village, _ := identity.ParseQuery("kamuga").Match(wanjiru)
	assert.Greater(t, exact, prefix)
	assert.Greater(t, prefix, variant)
	assert.Greater(t, exact, village, "a name outranks a village")

	hits := []identity.Hit{{"b", 0.7}, {"c", 1}, {"a", 0.7}}
	identity.Rank(hits)
	require.Equal(t, []identity.Hit{{"c", 1}, {"a", 0.7}, {"b", 0.7}}, hits)
}

// drawPatient draws a patient from a few names, villages and numbers,
// with accents and case as typed.
func drawPatient(t *rapid.T) record.Patient {
	word := rapid.SampledFrom([]string{"Wanjiru", "Mwangi", "Akosua", "N'Diaye", "José", "Lakshmi", "Ochieng", "Mohammed", "Ama", "Li", ""})
	p := record.Patient{GivenName: word.Draw(t, "given"), FamilyName: word.Draw(t, "family"), Sex: "female",
		Village: rapid.SampledFrom([]string{"Kamuga", "Asafo", "Rampur Khas", ""}).Draw(t, "village"),
		Phone:   rapid.SampledFrom([]string{"", "+254 712 345678", "0700 111 222"}).Draw(t, "phone")}
	if rapid.Bool().Draw(t, "identifier") {
		p.Identifiers = []record.Identifier{{System: record.SystemClinic, Value: rapid.SampledFrom([]string{"KMG0042", "A1"}).Draw(t, "clinic no")}}
	}
	return p
}

// TestPropertyLookupsFindEveryMatch: for any query and patient, a patient
// Match accepts is found by the query's lookups among its Keys, so a
// store that looks up only the keys misses no match.
func TestPropertyLookupsFindEveryMatch(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		p := drawPatient(t)
		words := append(identity.Words(p.GivenName+" "+p.FamilyName+" "+p.Village), "kamu", "wanjiro", "0712345678", "kmg-0042", "zz", "ñ")
		n := rapid.IntRange(1, 3).Draw(t, "words")
		q := ""
		for i := range n {
			w := rapid.SampledFrom(words).Draw(t, "word")
			if rapid.Bool().Draw(t, "cut") && len(w) > 3 {
				w = w[:rapid.IntRange(3, len(w)).Draw(t, "prefix")]
			}
			if i > 0 {
				q += rapid.SampledFrom([]string{" ", ", ", "  "}).Draw(t, "space")
			}
			q += w
		}
		found, matched := findsAndMatches(identity.ParseQuery(q), p)
		if matched {
			require.True(t, found, "%q matches %+v, but its lookups do not find it", q, p)
		}
	})
}

// FuzzParseQuery parses arbitrary text as a search: never a panic, and a
// patient Match accepts is always found by the query's lookups.
func FuzzParseQuery(f *testing.F) {
	for _, s := range []string{"Wanjiru Mwangi", "wanj mwa", "+254 712 345 678", "2341 2341 2346", "kmg-0042", "José N'Diaye", "", "ñ", "a b c d e f g"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q := identity.ParseQuery(s)
		found, matched := findsAndMatches(q, wanjiru)
		if matched {
			require.True(t, found, "%q matches, but its lookups do not find the patient", s)
		}
		_ = q.Lookups()
	})
}
