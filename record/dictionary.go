package record

import (
	"bufio"
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// The drug dictionary shipped with the package: see data/drugs.txt for its
// source, licence and format.
//
//go:embed data/drugs.txt
var shippedDictionary []byte

// ErrDictionary is matched by every *DictionaryError: a drug dictionary
// that does not follow the format.
var ErrDictionary = errors.New("record: malformed drug dictionary")

// DictionaryError names the line of a drug dictionary that is malformed,
// and why.
type DictionaryError struct {
	Line   int
	Reason string
}

func (e *DictionaryError) Error() string {
	return fmt.Sprintf("record: drug dictionary line %d: %s", e.Line, e.Reason)
}

// Is makes errors.Is(err, ErrDictionary) true.
func (e *DictionaryError) Is(target error) bool { return target == ErrDictionary }

// Drug is one substance (or fixed combination) of a drug dictionary.
type Drug struct {
	// Name is the International Nonproprietary Name; a combination joins
	// its substances with " + ".
	Name string `json:"name"`
	// ATC lists the drug's WHO ATC codes (level 5, such as J01CA04); the
	// first is the one a prescription of the drug carries.
	ATC []string `json:"atc"`
	// Variants are other names: spellings, brand names, abbreviations.
	Variants []string `json:"variants,omitempty"`
}

// Code is the drug's first ATC code.
func (d Drug) Code() string { return d.ATC[0] }

// DrugGroup is a group of drugs that cross-react: an allergy to one rules
// out all, and two given at once are duplicate therapy.
type DrugGroup struct {
	Name string `json:"name"`
	// Prefixes are the beginnings of the ATC codes of the group's drugs.
	Prefixes []string `json:"prefixes"`
	// Variants are other names of the group in an allergy ("sulfa").
	Variants []string `json:"variants,omitempty"`
}

// Dictionary is a drug dictionary: drugs by name and ATC code, the groups
// of drugs that cross-react, and the ATC classes whose members are given
// together by design. It is read-only once parsed and safe for
// concurrent use.
type Dictionary struct {
	drugs   []Drug
	groups  []DrugGroup
	nodup   []string
	byKey   map[string]int // Substance of a name or variant → drug
	byCode  map[string]int // ATC code → drug
	groupBy map[string]int // Substance of a group's name or variant → group
	// groupsOf holds, for each drug, the groups it belongs to.
	groupsOf [][]int
}

// Limits of a dictionary's lines.
const (
	maxDictionaryLine = 4096
	maxDrugName       = 200
)

var (
	reATC       = regexp.MustCompile(`^[ABCDGHJLMNPRSV][0-9]{2}[A-Z]{2}[0-9]{2}$`)
	reATCPrefix = regexp.MustCompile(`^[ABCDGHJLMNPRSV]([0-9]{2}([A-Z]([A-Z]([0-9]{2})?)?)?)?$`)
	reATCLevel4 = regexp.MustCompile(`^[ABCDGHJLMNPRSV][0-9]{2}[A-Z]{2}$`)
)

// ValidATC reports whether code is a well-formed level-5 WHO ATC code
// (a chemical substance or a combination, such as J01CA04 or J01EE01):
// an anatomical group letter, two digits, two letters and two digits. A
// well-formed code need not be in any dictionary.
func ValidATC(code string) bool { return reATC.MatchString(code) }

// ParseDictionary reads a drug dictionary in the format of the shipped
// one (see data/drugs.txt). A malformed line, a code that is not a
// well-formed ATC code, a name that two drugs or groups share, or a code
// that two drugs share, gives a *DictionaryError naming the line.
func ParseDictionary(r io.Reader) (*Dictionary, error) {
	d := &Dictionary{byKey: map[string]int{}, byCode: map[string]int{}, groupBy: map[string]int{}}
	// owner says who holds a name key: "drug N" or "group N".
	owner := map[string]string{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1024), maxDictionaryLine)
	n := 0
	for sc.Scan() {
		n++
		line := sc.Text()
		bad := func(format string, args ...any) error {
			return &DictionaryError{Line: n, Reason: fmt.Sprintf(format, args...)}
		}
		if !utf8.ValidString(line) {
			return nil, bad("not valid UTF-8")
		}
		if strings.ContainsFunc(line, func(r rune) bool { return unicode.IsControl(r) && r != '\t' }) {
			return nil, bad("contains control characters")
		}
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		f := strings.Split(line, "|")
		for i := range f {
			f[i] = strings.TrimSpace(f[i])
		}
		// names checks a name and its variants and claims their keys
		// for who.
		names := func(name, variants, who string) ([]string, error) {
			if err := checkDrugName(name); err != nil {
				return nil, bad("name %q %v", name, err)
			}
			var vs []string
			if variants != "" {
				for _, v := range strings.Split(variants, ";") {
					v = strings.TrimSpace(v)
					if err := checkDrugName(v); err != nil {
						return nil, bad("variant %q of %s %v", v, name, err)
					}
					vs = append(vs, v)
				}
			}
			for _, s := range append([]string{name}, vs...) {
				k := substance(s)
				if o, ok := owner[k]; ok && o != who {
					return nil, bad("%q (%q) is also the name of %s", s, k, o)
				}
				owner[k] = who
			}
			return vs, nil
		}
		switch f[0] {
		case "drug":
			if len(f) != 4 {
				return nil, bad("a drug line has 4 fields (drug|CODES|NAME|VARIANTS), not %d", len(f))
			}
			codes := strings.Fields(f[1])
			if len(codes) == 0 {
				return nil, bad("drug %q has no ATC code", f[2])
			}
			i := len(d.drugs)
			for _, c := range codes {
				if !ValidATC(c) {
					return nil, bad("%q is not a level-5 ATC code such as J01CA04", c)
				}
				if j, ok := d.byCode[c]; ok {
					return nil, bad("ATC code %s is also the code of %s", c, d.drugs[j].Name)
				}
				d.byCode[c] = i
			}
			vs, err := names(f[2], f[3], fmt.Sprintf("drug %q", f[2]))
			if err != nil {
				return nil, err
			}
			d.drugs = append(d.drugs, Drug{Name: f[2], ATC: codes, Variants: vs})
		case "group":
			if len(f) != 4 {
				return nil, bad("a group line has 4 fields (group|NAME|PREFIXES|VARIANTS), not %d", len(f))
			}
			prefixes := strings.Fields(f[2])
			if len(prefixes) == 0 {
				return nil, bad("group %q has no ATC prefix", f[1])
			}
			for _, p := range prefixes {
				if !reATCPrefix.MatchString(p) {
					return nil, bad("%q is not the beginning of an ATC code", p)
				}
			}
			vs, err := names(f[1], f[3], fmt.Sprintf("group %q", f[1]))
			if err != nil {
				return nil, err
			}
			d.groups = append(d.groups, DrugGroup{Name: f[1], Prefixes: prefixes, Variants: vs})
		case "nodup":
			if len(f) != 3 {
				return nil, bad("a nodup line has 3 fields (nodup|CLASS|REASON), not %d", len(f))
			}
			if !reATCLevel4.MatchString(f[1]) {
				return nil, bad("%q is not an ATC level-4 class such as J05AF", f[1])
			}
			if f[2] == "" {
				return nil, bad("class %s is given no reason", f[1])
			}
			if slices.Contains(d.nodup, f[1]) {
				return nil, bad("class %s is listed twice", f[1])
			}
			d.nodup = append(d.nodup, f[1])
		default:
			return nil, bad("%q is not a record type (drug, group or nodup)", f[0])
		}
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, &DictionaryError{Line: n + 1, Reason: fmt.Sprintf("longer than %d bytes", maxDictionaryLine)}
		}
		return nil, fmt.Errorf("read drug dictionary: %w", err)
	}
	for i, dr := range d.drugs {
		for _, s := range append([]string{dr.Name}, dr.Variants...) {
			d.byKey[substance(s)] = i
		}
	}
	for i, g := range d.groups {
		for _, s := range append([]string{g.Name}, g.Variants...) {
			d.groupBy[substance(s)] = i
		}
	}
	d.groupsOf = make([][]int, len(d.drugs))
	for i, dr := range d.drugs {
		for j, g := range d.groups {
			if slices.ContainsFunc(dr.ATC, func(c string) bool {
				return slices.ContainsFunc(g.Prefixes, func(p string) bool { return strings.HasPrefix(c, p) })
			}) {
				d.groupsOf[i] = append(d.groupsOf[i], j)
			}
		}
	}
	return d, nil
}

// checkDrugName checks a drug's or group's name or variant.
func checkDrugName(s string) error {
	switch {
	case s == "":
		return errors.New("is empty")
	case utf8.RuneCountInString(s) > maxDrugName:
		return fmt.Errorf("is longer than %d characters", maxDrugName)
	case strings.ContainsAny(s, "|;"):
		return errors.New("contains | or ;")
	case substance(s) == "":
		return errors.New("names no substance (only strengths, dose forms or punctuation)")
	}
	return nil
}

var (
	dictOnce sync.Once
	dict     *Dictionary
	dictErr  error
)

// DrugDictionary returns the drug dictionary shipped with this package:
// WHO ATC codes for the medicines of the WHO Model List of Essential
// Medicines and other common ones, with brand names and spelling
// variants (see the package documentation).
func DrugDictionary() *Dictionary {
	dictOnce.Do(func() { dict, dictErr = ParseDictionary(bytes.NewReader(shippedDictionary)) })
	if dictErr != nil {
		// The shipped file is checked by the package's tests.
		panic(fmt.Sprintf("record: the shipped drug dictionary is malformed: %v", dictErr))
	}
	return dict
}

// Lookup finds a drug by its name, a variant or a brand name, compared as
// Substance compares names (so "Amoxicillin 500mg caps", "amoxycillin"
// and "Amoxil" all find amoxicillin).
func (d *Dictionary) Lookup(name string) (Drug, bool) {
	if i, ok := d.lookup(name); ok {
		return d.drugs[i], true
	}
	return Drug{}, false
}

func (d *Dictionary) lookup(name string) (int, bool) {
	i, ok := d.byKey[substance(name)]
	return i, ok
}

// Code finds the drug an ATC code belongs to.
func (d *Dictionary) Code(code string) (Drug, bool) {
	if i, ok := d.byCode[code]; ok {
		return d.drugs[i], true
	}
	return Drug{}, false
}

// Drugs returns every drug of the dictionary, in the order of the file.
func (d *Dictionary) Drugs() []Drug { return slices.Clone(d.drugs) }

// Groups returns the groups of cross-reacting drugs.
func (d *Dictionary) Groups() []DrugGroup { return slices.Clone(d.groups) }

// GroupsOf returns the names of the groups a drug belongs to.
func (d *Dictionary) GroupsOf(drug Drug) []string {
	i, ok := d.byCode[drug.Code()]
	if !ok {
		return nil
	}
	var out []string
	for _, g := range d.groupsOf[i] {
		out = append(out, d.groups[g].Name)
	}
	return out
}

// TogetherByDesign reports whether the ATC level-4 class of code is one
// whose members are given together by design (two nucleoside reverse
// transcriptase inhibitors in antiretroviral therapy, the drugs of a
// tuberculosis regimen), so that two of them are not duplicate therapy.
func (d *Dictionary) TogetherByDesign(code string) bool {
	return len(code) >= 5 && slices.Contains(d.nodup, code[:5])
}

// components returns the substances of a combination's name.
func components(name string) []string {
	return strings.Split(name, " + ")
}
