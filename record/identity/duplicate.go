package identity

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/chartsync/chartsync/record"
)

// Reason is one piece of evidence for or against two registrations
// being one patient.
type Reason string

// Reasons.
const (
	// ReasonSameIdentifier: both carry an identifier of the same system
	// and value (the national ID counts as one).
	ReasonSameIdentifier Reason = "same-identifier"
	// ReasonOtherIdentifier: both carry an identifier of a system a
	// patient has one of (Aadhaar, ABHA, national ID), with different
	// values: evidence against.
	ReasonOtherIdentifier Reason = "different-identifier"
	// ReasonSimilarName: the names match, exactly or as spelling
	// variants, in the same order or with given and family names
	// swapped (the Detail says which).
	ReasonSimilarName Reason = "similar-name"
	// ReasonDifferentName: some word of the names has no near match.
	ReasonDifferentName Reason = "different-name"
	// ReasonBirth: the birth dates or years agree (equal, or within a
	// year where either is estimated).
	ReasonBirth Reason = "same-birth-year"
	// ReasonOtherBirth: the birth years are further apart.
	ReasonOtherBirth Reason = "different-birth-year"
	// ReasonSameVillage: the villages are equal or spelling variants.
	ReasonSameVillage Reason = "same-village"
	// ReasonOtherVillage: both villages are given and differ (weak
	// evidence: people move, and a hospital may record another place).
	ReasonOtherVillage Reason = "different-village"
	// ReasonSamePhone: a phone number is shared (weak alone: families
	// share phones).
	ReasonSamePhone Reason = "same-phone"
	// ReasonOtherSex: the recorded sexes differ (neither unknown).
	ReasonOtherSex Reason = "different-sex"
)

// Evidence is one reason with its weight (the log-odds it adds, positive
// for one patient) and the details a clerk reads.
type Evidence struct {
	Reason Reason  `json:"reason"`
	Detail string  `json:"detail"`
	Weight float64 `json:"weight"`
}

// Match is how two registrations compare.
type Match struct {
	// Score is the sum of the evidence's weights: Threshold or more
	// means likely the same patient.
	Score    float64    `json:"score"`
	Evidence []Evidence `json:"evidence"`
}

// Likely reports whether the match reaches Threshold, or the two share
// an identifier: a shared identifier is always shown, since it is either
// one patient or an identifier recorded on the wrong chart.
func (m Match) Likely() bool {
	return m.Score >= Threshold || slices.ContainsFunc(m.Evidence, func(e Evidence) bool { return e.Reason == ReasonSameIdentifier })
}

// Threshold is the score from which two registrations are shown as a
// likely duplicate. On the labelled pairs of this package's tests it
// gives a recall and a precision above 0.9 (see the package
// documentation).
const Threshold = 5.0

// Weights of the evidence (log-odds, roughly; chosen by hand and checked
// against the labelled pairs).
const (
	wSameIdentifier  = 12.0
	wOtherIdentifier = -10.0
	wNameExact       = 6.0 // every word of the shorter name matches (≥ 0.95)
	wNameClose       = 4.5 // ≥ 0.90
	wNameVariant     = 2.5 // ≥ 0.84
	wNameDifferent   = -5.0
	wBirthDate       = 4.0 // equal exact dates
	wBirthYear       = 2.5 // equal years
	wBirthNear       = 1.5 // a year apart, either estimated
	wBirthFar        = -5.0
	wSameVillage     = 1.5
	wOtherVillage    = -0.5
	wSamePhone       = 2.0
	wOtherSex        = -10.0
)

// singleValued are the identifier systems a patient has one of.
var singleValued = []string{record.SystemAadhaar, record.SystemABHA, record.SystemNationalID}

type idv struct{ system, value string }

func identifiersOf(p record.Patient) []idv {
	var out []idv
	if v := Compact(p.NationalID); v != "" {
		out = append(out, idv{record.SystemNationalID, v})
	}
	for _, id := range p.Identifiers {
		if v := Compact(id.Value); v != "" && id.System != record.SystemPhone {
			out = append(out, idv{id.System, v})
		}
	}
	return out
}

// Compare weighs the evidence that a and b are one patient: shared
// identifiers, names (spelling variants and swapped given and family
// names allowed), birth dates or years (a year's difference allowed
// where one is estimated), villages, phones and sex.
func Compare(a, b record.Patient) Match {
	var m Match
	add := func(r Reason, w float64, format string, args ...any) {
		m.Evidence = append(m.Evidence, Evidence{Reason: r, Detail: fmt.Sprintf(format, args...), Weight: w})
		m.Score += w
	}

	// Identifiers.
	ia, ib := identifiersOf(a), identifiersOf(b)
	same, other := "", ""
	for _, x := range ia {
		for _, y := range ib {
			switch {
			case x == y || (x.value == y.value && len(x.value) >= 8):
				same = cmp.Or(same, x.system+" "+x.value)
			case x.system == y.system && slices.Contains(singleValued, x.system):
				other = cmp.Or(other, fmt.Sprintf("%s %s and %s", x.system, x.value, y.value))
			}
		}
	}
	if same != "" {
		add(ReasonSameIdentifier, wSameIdentifier, "both have %s", same)
	} else if other != "" {
		add(ReasonOtherIdentifier, wOtherIdentifier, "%s", other)
	}

	// Names.
	if sim, swapped, ok := nameSimilarity(a, b); ok {
		order := "in the same order"
		if swapped {
			order = "with given and family names swapped"
		}
		detail := fmt.Sprintf("%q and %q, %s (%.2f)", a.FullName(), b.FullName(), order, sim)
		switch {
		case sim >= 0.95:
			add(ReasonSimilarName, wNameExact, "%s", detail)
		case sim >= 0.90:
			add(ReasonSimilarName, wNameClose, "%s", detail)
		case sim >= 0.84:
			add(ReasonSimilarName, wNameVariant, "%s", detail)
		default:
			add(ReasonDifferentName, wNameDifferent, "%s", detail)
		}
	}

	// Birth.
	if ya, ea, ok := birthYear(a); ok {
		if yb, eb, ok := birthYear(b); ok {
			d := ya - yb
			if d < 0 {
				d = -d
			}
			switch {
			case !ea && !eb && a.BirthDate == b.BirthDate:
				add(ReasonBirth, wBirthDate, "both born %s", a.BirthDate)
			case d == 0:
				add(ReasonBirth, wBirthYear, "both born in %d", ya)
			case d == 1 && (ea || eb):
				add(ReasonBirth, wBirthNear, "born %s and %s", born(a), born(b))
			default:
				add(ReasonOtherBirth, wBirthFar, "born %s and %s", born(a), born(b))
			}
		}
	}

	// Village.
	if va, vb := Fold(a.Village), Fold(b.Village); va != "" && vb != "" {
		if va == vb || phoneticWords(va) == phoneticWords(vb) || jaroWinkler(va, vb) >= 0.92 {
			add(ReasonSameVillage, wSameVillage, "both in %s", a.Village)
		} else {
			add(ReasonOtherVillage, wOtherVillage, "%s and %s", a.Village, b.Village)
		}
	}

	// Phone.
	for _, x := range phones(a) {
		if slices.Contains(phones(b), x) {
			add(ReasonSamePhone, wSamePhone, "both reachable on …%s", x)
			break
		}
	}

	// Sex.
	known := func(s string) bool { return s == "female" || s == "male" || s == "other" }
	if known(a.Sex) && known(b.Sex) && a.Sex != b.Sex {
		add(ReasonOtherSex, wOtherSex, "%s and %s", a.Sex, b.Sex)
	}
	m.Score = math.Round(m.Score*100) / 100
	return m
}

func born(p record.Patient) string {
	if p.BirthDate != "" {
		return p.BirthDate
	}
	return "about " + strconv.Itoa(p.EstimatedBirthYear)
}

// birthYear returns the year of birth and whether it is estimated.
func birthYear(p record.Patient) (int, bool, bool) {
	if p.BirthDate != "" {
		if d, err := time.Parse(time.DateOnly, p.BirthDate); err == nil {
			return d.Year(), false, true
		}
	}
	if p.EstimatedBirthYear != 0 {
		return p.EstimatedBirthYear, true, true
	}
	return 0, false, false
}

func phoneticWords(s string) string {
	var out []string
	for _, w := range strings.Fields(s) {
		out = append(out, Phonetic(w))
	}
	return strings.Join(out, " ")
}

// wordSimilarity is how alike two folded words are, 0 to 1: their
// Jaro-Winkler similarity, raised to 0.95 when their phonetic keys are
// equal, and lowered below 0.84 when those keys differ in more than
// their last sound (Wanjiru and Wanjiku are different names).
func wordSimilarity(a, b string) float64 {
	if a == b {
		return 1
	}
	s := jaroWinkler(a, b)
	pa, pb := Phonetic(a), Phonetic(b)
	switch {
	case pa != "" && pa == pb:
		return max(s, 0.95)
	case pa != "" && pb != "" && editDistance(pa, pb) > 1:
		return min(s, 0.8)
	case pa != "" && pb != "" && pa[:len(pa)-1] == pb[:len(pb)-1] && len(pa) == len(pb) && len(pa) > 1:
		// Only the last consonant differs: Wanjiru, Wanjiku.
		return min(s, 0.83)
	}
	return s
}

// nameSimilarity compares the words of two patients' names: each word
// of the shorter name is paired with a distinct word of the other (the
// pairing that makes the weakest pair strongest), and the similarity is
// that of the weakest pair, so that a missing middle name costs nothing
// but one name that does not match costs everything. swapped is true
// when the best pairing crosses given and family names.
func nameSimilarity(a, b record.Patient) (sim float64, swapped, ok bool) {
	type word struct {
		w      string
		family bool
	}
	words := func(p record.Patient) []word {
		var out []word
		for _, w := range Words(p.GivenName) {
			out = append(out, word{w, false})
		}
		for _, w := range Words(p.FamilyName) {
			out = append(out, word{w, true})
		}
		return out
	}
	wa, wb := words(a), words(b)
	if len(wa) == 0 || len(wb) == 0 {
		return 0, false, false
	}
	if len(wa) > len(wb) {
		wa, wb = wb, wa
	}
	if len(wb) > 6 {
		wb = wb[:6]
	}
	if len(wa) > 6 {
		wa = wa[:6]
	}
	best, bestSwapped := -1.0, false
	used := make([]bool, len(wb))
	var try func(i int, weakest float64, crosses int)
	try = func(i int, weakest float64, crosses int) {
		if weakest <= best && best >= 0 {
			return
		}
		if i == len(wa) {
			if weakest > best || (weakest == best && crosses == 0) {
				best, bestSwapped = weakest, crosses > 0 && crosses*2 >= len(wa)
			}
			return
		}
		for j := range wb {
			if used[j] {
				continue
			}
			used[j] = true
			c := crosses
			if wa[i].family != wb[j].family {
				c++
			}
			try(i+1, min(weakest, wordSimilarity(wa[i].w, wb[j].w)), c)
			used[j] = false
		}
	}
	try(0, 1, 0)
	return best, bestSwapped, true
}

// Chart is a registration to compare with: a chart's ID and its patient.
type Chart struct {
	ID      string
	Patient record.Patient
}

// Candidate is a chart that may be the same patient as the one compared.
type Candidate struct {
	ChartID string `json:"chart_id"`
	Match
}

// Duplicates compares p (a registration about to be saved, or an
// existing chart's patient) with each of charts and returns those that
// reach Threshold, most likely first (ties by chart ID). A chart whose ID
// is self (the chart p comes from; "" for a new registration) is skipped.
// charts are the charts a store finds under DuplicateKeys(p).
func Duplicates(p record.Patient, self string, charts []Chart) []Candidate {
	var out []Candidate
	for _, c := range charts {
		if c.ID == self && self != "" {
			continue
		}
		if m := Compare(p, c.Patient); m.Likely() {
			out = append(out, Candidate{ChartID: c.ID, Match: m})
		}
	}
	slices.SortFunc(out, func(a, b Candidate) int {
		return cmp.Or(cmp.Compare(b.Score, a.Score), strings.Compare(a.ChartID, b.ChartID))
	})
	return out
}

// DuplicateKeys returns the index keys (as Keys makes them) under which
// a store finds the charts to give Duplicates: every identifier, phone
// and phonetic key of a name word of p. Every chart Duplicates would
// return for p whose names, identifiers or phone share anything with
// p's is found under one of them.
func DuplicateKeys(p record.Patient) []string {
	var keys []string
	for _, k := range Keys(p) {
		if strings.HasPrefix(k, keyNameSnd) || strings.HasPrefix(k, keyPhone) || strings.HasPrefix(k, keyIdentity) {
			keys = append(keys, k)
		}
	}
	return keys
}

// jaroWinkler is the Jaro-Winkler similarity of two strings (by byte;
// the words compared are folded).
func jaroWinkler(a, b string) float64 {
	if a == b {
		return 1
	}
	la, lb := len(a), len(b)
	if la == 0 || lb == 0 {
		return 0
	}
	window := max(la, lb)/2 - 1
	window = max(window, 0)
	ma, mb := make([]bool, la), make([]bool, lb)
	matches := 0
	for i := range la {
		for j := max(0, i-window); j < min(lb, i+window+1); j++ {
			if !mb[j] && a[i] == b[j] {
				ma[i], mb[j] = true, true
				matches++
				break
			}
		}
	}
	if matches == 0 {
		return 0
	}
	transpositions, j := 0, 0
	for i := range la {
		if !ma[i] {
			continue
		}
		for !mb[j] {
			j++
		}
		if a[i] != b[j] {
			transpositions++
		}
		j++
	}
	m := float64(matches)
	jaro := (m/float64(la) + m/float64(lb) + (m-float64(transpositions/2))/m) / 3
	prefix := 0
	for prefix < min(4, la, lb) && a[prefix] == b[prefix] {
		prefix++
	}
	return jaro + float64(prefix)*0.1*(1-jaro)
}

// editDistance is the number of letters inserted, deleted or replaced,
// or pairs of adjacent letters swapped, that turn a into b (the optimal
// string alignment distance), for short strings.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			c := 1
			if a[i-1] == b[j-1] {
				c = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+c)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
