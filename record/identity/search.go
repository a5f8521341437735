package identity

import (
	"cmp"
	"slices"
	"strings"

	"github.com/chartsync/chartsync/record"
)

// Prefixes of the index keys, by what they index.
const (
	keyName     = "n:" // a folded word of a name
	keyNameSnd  = "s:" // the phonetic key of a word of a name
	keyVillage  = "v:" // a folded word of the village
	keyVillSnd  = "w:" // the phonetic key of a word of the village
	keyPhone    = "t:" // PhoneKey of a phone (the phone field or a phone identifier)
	keyIdentity = "i:" // Compact of an identifier's value (any system), or of the national ID
)

// nameWords returns the folded words of a patient's names.
func nameWords(p record.Patient) []string {
	return append(Words(p.GivenName), Words(p.FamilyName)...)
}

// identifierValues returns the compacted values of the patient's
// identifiers that are not entered in error, and of the national ID.
func identifierValues(p record.Patient) []string {
	var out []string
	if v := Compact(p.NationalID); v != "" {
		out = append(out, v)
	}
	for _, id := range p.Identifiers {
		if v := Compact(id.Value); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// phones returns PhoneKey of the patient's phone and phone identifiers.
func phones(p record.Patient) []string {
	var out []string
	if k := PhoneKey(p.Phone); k != "" {
		out = append(out, k)
	}
	for _, id := range p.Identifiers {
		if id.System == record.SystemPhone {
			if k := PhoneKey(id.Value); k != "" {
				out = append(out, k)
			}
		}
	}
	return out
}

// Keys returns the keys a store indexes a chart under, given its patient
// (record.Chart.Patient): every folded word of the names and the
// village, their phonetic keys, the phones' last nine digits and every
// identifier's value, each with a prefix saying what it is. Sorted,
// without duplicates; about 10 keys for a patient with two names, a
// village, a phone and an identifier. A store keeps, per chart, the keys
// of its current patient (replacing them when the demographics change)
// and answers the lookups of a Query.
func Keys(p record.Patient) []string {
	var keys []string
	for _, w := range nameWords(p) {
		keys = append(keys, keyName+w)
		if s := Phonetic(w); s != "" {
			keys = append(keys, keyNameSnd+s)
		}
	}
	for _, w := range Words(p.Village) {
		keys = append(keys, keyVillage+w)
		if s := Phonetic(w); s != "" {
			keys = append(keys, keyVillSnd+s)
		}
	}
	for _, k := range phones(p) {
		keys = append(keys, keyPhone+k)
	}
	for _, v := range identifierValues(p) {
		keys = append(keys, keyIdentity+v)
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// Lookup is one key a search looks up: the charts indexed under Key, or,
// if Prefix, under any key that starts with Key (a range scan over the
// sorted keys).
type Lookup struct {
	Key    string
	Prefix bool
}

// Term is one word (or number) of a query, and the lookups any of which
// finds a chart it matches.
type Term struct {
	Text    string
	Lookups []Lookup
}

// Query is a parsed search: a chart matches when it matches every term.
type Query struct {
	Terms []Term
}

// minPrefix is the shortest word looked up as a prefix.
const minPrefix = 3

// ParseQuery parses what someone typed to find a patient: words of the
// names or the village, in any order, case and accents, with common
// spelling variants (Phonetic), the first letters of a word (three or
// more), or a phone or identifier number however it is spaced. A query
// of nothing searchable has no terms.
func ParseQuery(q string) Query {
	var out Query
	// A number (a phone, an Aadhaar number typed with spaces, a clinic
	// number such as KMG-0042) is one term, whatever its spacing.
	if c := Compact(q); len(c) >= 3 && isNumber(q) {
		t := Term{Text: strings.TrimSpace(q), Lookups: []Lookup{{Key: keyIdentity + c}}}
		if k := PhoneKey(c); k != "" {
			t.Lookups = append(t.Lookups, Lookup{Key: keyPhone + k})
		}
		out.Terms = append(out.Terms, t)
		return out
	}
	for _, w := range slices.Compact(Words(q)) {
		t := Term{Text: w}
		t.Lookups = append(t.Lookups, Lookup{Key: keyName + w, Prefix: len(w) >= minPrefix}, Lookup{Key: keyVillage + w, Prefix: len(w) >= minPrefix})
		if s := Phonetic(w); s != "" && len(w) >= minPrefix {
			t.Lookups = append(t.Lookups, Lookup{Key: keyNameSnd + s}, Lookup{Key: keyVillSnd + s})
		}
		if c := Compact(w); strings.ContainsAny(c, "0123456789") {
			t.Lookups = append(t.Lookups, Lookup{Key: keyIdentity + c})
			if k := PhoneKey(c); k != "" {
				t.Lookups = append(t.Lookups, Lookup{Key: keyPhone + k})
			}
		}
		out.Terms = append(out.Terms, t)
	}
	return out
}

// isNumber reports whether q is one number however spaced: some of its
// words hold digits, and the others are short letter groups (KMG-0042,
// +254 712 345678, 2341 2341 2346).
func isNumber(q string) bool {
	digits := false
	for _, w := range Words(q) {
		switch {
		case strings.ContainsAny(w, "0123456789"):
			digits = true
		case len(w) > 4:
			return false
		}
	}
	return digits
}

// Lookups returns every lookup of the query's terms, without duplicates:
// what a store that does not intersect per term looks up, before Match
// filters the charts found.
func (q Query) Lookups() []Lookup {
	var out []Lookup
	for _, t := range q.Terms {
		out = append(out, t.Lookups...)
	}
	slices.SortFunc(out, func(a, b Lookup) int {
		if c := strings.Compare(a.Key, b.Key); c != 0 {
			return c
		}
		if a.Prefix == b.Prefix {
			return 0
		}
		if !a.Prefix {
			return -1
		}
		return 1
	})
	return slices.Compact(out)
}

// Matches reports whether a key (as Keys makes it) answers the lookup.
func (l Lookup) Matches(key string) bool {
	if l.Prefix {
		return strings.HasPrefix(key, l.Key)
	}
	return key == l.Key
}

// How well a term matches a word of a patient.
const (
	scoreExact    = 1.0
	scorePrefix   = 0.8
	scorePhonetic = 0.7
)

// Match scores how well a patient matches the query: 0 and false unless
// every term matches something of the patient (a word of a name or the
// village exactly, as a prefix or by its phonetic key; a phone or an
// identifier); otherwise the mean of each term's best match (1 for an
// exact word, phone or identifier, 0.8 for a prefix, 0.7 for a spelling
// variant), plus 0.01 per term that matches a name rather than the
// village. A store lists the charts found by Score, highest first, ties
// by chart ID (see Rank). A query with no terms matches nothing.
func (q Query) Match(p record.Patient) (float64, bool) {
	if len(q.Terms) == 0 {
		return 0, false
	}
	names, village := nameWords(p), Words(p.Village)
	keys := Keys(p)
	total := 0.0
	for _, t := range q.Terms {
		best := 0.0
		for _, set := range []struct {
			words []string
			bonus float64
		}{{names, 0.01}, {village, 0}} {
			for _, w := range set.words {
				s := 0.0
				switch {
				case w == t.Text:
					s = scoreExact
				case len(t.Text) >= minPrefix && strings.HasPrefix(w, t.Text):
					s = scorePrefix
				case len(t.Text) >= minPrefix && Phonetic(w) != "" && Phonetic(w) == Phonetic(t.Text):
					s = scorePhonetic
				}
				if s > 0 {
					best = max(best, s+set.bonus)
				}
			}
		}
		for _, l := range t.Lookups {
			if strings.HasPrefix(l.Key, keyPhone) || strings.HasPrefix(l.Key, keyIdentity) {
				if _, found := slices.BinarySearch(keys, l.Key); found {
					best = max(best, scoreExact)
				}
			}
		}
		if best == 0 {
			return 0, false
		}
		total += best
	}
	return total / float64(len(q.Terms)), true
}

// Hit is a chart a search found, with its score.
type Hit struct {
	ChartID string
	Score   float64
}

// Rank sorts hits as a search lists them: highest score first, ties by
// chart ID, so that every replica lists the same charts alike.
func Rank(hits []Hit) {
	slices.SortFunc(hits, func(a, b Hit) int {
		return cmp.Or(cmp.Compare(b.Score, a.Score), strings.Compare(a.ChartID, b.ChartID))
	})
}
