package record

import (
	"slices"
	"strings"
	"unicode"
)

// drugClass is a group of substances of which an allergy to one rules
// out the others, and of which two given at once are duplicate therapy.
// Members are matched as parts of a drug's name.
type drugClass struct {
	name    string
	members []string
}

// drugClasses is the small table of cross-reacting drug classes the
// allergy and duplicate-therapy checks share: a safety net, not a drug
// dictionary.
var drugClasses = []drugClass{
	{"penicillins", []string{"penicillin", "amoxicillin", "ampicillin", "cloxacillin", "flucloxacillin", "benzylpenicillin",
		"phenoxymethylpenicillin", "benzathine", "piperacillin", "co-amoxiclav", "augmentin"}},
	{"sulfonamides", []string{"sulfa", "sulfonamide", "sulphonamide", "sulfamethoxazole", "cotrimoxazole", "co-trimoxazole",
		"septrin", "bactrim", "sulfadoxine", "sulfadiazine", "sulfasalazine"}},
	{"NSAIDs", []string{"nsaid", "aspirin", "ibuprofen", "diclofenac", "naproxen", "indomethacin", "ketorolac", "mefenamic"}},
	{"cephalosporins", []string{"cephalosporin", "ceftriaxone", "cefalexin", "cephalexin", "cefixime", "cefuroxime", "cefazolin"}},
	{"cinchona alkaloids", []string{"quinine", "quinidine"}},
	{"artemisinin antimalarials", []string{"artemether", "artesunate", "artemisinin", "coartem", "lumefantrine"}},
}

// classMembers holds each class's members as substance names (see
// substance), for matching substance names.
var classMembers = func() [][]string {
	out := make([][]string, len(drugClasses))
	for i, c := range drugClasses {
		for _, m := range c.members {
			out[i] = append(out[i], substance(m))
		}
	}
	return out
}()

func normDrug(s string) string { return fold(strings.ToLower(strings.TrimSpace(s))) }

// classOf returns the drug classes a lower-case name falls in.
func classOf(name string) []int {
	var out []int
	for i, class := range drugClasses {
		for _, d := range class.members {
			if strings.Contains(name, d) {
				out = append(out, i)
				break
			}
		}
	}
	return out
}

// substanceClasses returns the drug classes a substance name (see
// substance) falls in. Unlike classOf it does not see salts, so ferrous
// sulfate is no sulfonamide.
func substanceClasses(sub string) []int {
	var out []int
	for i, members := range classMembers {
		for _, d := range members {
			if d != "" && strings.Contains(sub, d) {
				out = append(out, i)
				break
			}
		}
	}
	return out
}

// drugNames reads drug and allergy names for one computation of alerts,
// each name once. It is not safe for concurrent use.
type drugNames map[string]*drugName

// drugName is what the checks compare of a name.
type drugName struct {
	norm    string // lower case, accents folded
	classes []int  // the classes the name mentions (classOf)
	sub     string // the substance (substance)
	// subClasses are the classes of the substance (substanceClasses).
	subClasses []int
	// drug is the dictionary's drug the name finds, or -1.
	drug int
	// allergen lists what an allergy by this name names in the
	// dictionary: its drugs and groups, found by the whole name or,
	// failing that, by a word of it ("allergic to penicillin").
	allergenDrugs, allergenGroups []int
}

func (n drugNames) of(name string) *drugName {
	if d, ok := n[name]; ok {
		return d
	}
	d := &drugName{norm: normDrug(name), sub: substance(name), drug: -1}
	d.classes, d.subClasses = classOf(d.norm), substanceClasses(d.sub)
	dict := DrugDictionary()
	if i, ok := dict.byKey[d.sub]; ok {
		d.drug = i
		d.allergenDrugs = []int{i}
	} else if g, ok := dict.groupBy[d.sub]; ok {
		d.allergenGroups = []int{g}
	} else {
		for _, w := range strings.FieldsFunc(d.norm, func(r rune) bool { return !unicode.IsLetter(r) && !unicode.IsDigit(r) }) {
			k := substance(w)
			if len(w) < 3 || k == "" {
				continue
			}
			if i, ok := dict.byKey[k]; ok && !slices.Contains(d.allergenDrugs, i) {
				d.allergenDrugs = append(d.allergenDrugs, i)
			}
			if g, ok := dict.groupBy[k]; ok && !slices.Contains(d.allergenGroups, g) {
				d.allergenGroups = append(d.allergenGroups, g)
			}
		}
	}
	n[name] = d
	return d
}

// rxDrug is one value of a prescription's drug name, ATC code or other
// drug code, as the checks see it.
type rxDrug struct {
	name *drugName // for a name; nil for a code
	// drug is the dictionary's drug the value finds, or -1 (a free-text
	// name, a code this dictionary does not know).
	drug int
	// code is the ATC code whose level-4 class is the drug's class: the
	// code written, or the drug's first code for a name.
	code string
}

// rxValue reads one value of a prescription's field (drug, atc or
// drug_code).
func (n drugNames) rxValue(field, value string) rxDrug {
	dict := DrugDictionary()
	if field == "drug" {
		d := n.of(value)
		r := rxDrug{name: d, drug: d.drug}
		if d.drug >= 0 {
			r.code = dict.drugs[d.drug].Code()
		}
		return r
	}
	if i, ok := dict.byCode[value]; ok {
		return rxDrug{drug: i, code: value}
	}
	return rxDrug{drug: -1}
}

// allergic reports whether an allergy to substance rules out the drug r.
// When the dictionary knows the drug and the allergy names drugs or
// groups of it, they decide: the same drug, a drug sharing a substance
// (a combination and one of its parts), or one group. Otherwise the names
// are compared: one name holds the other, they are the same substance, or
// they mention one drug class of the small table.
func (n drugNames) allergic(substance string, r rxDrug) bool {
	a := n.of(substance)
	dict := DrugDictionary()
	if r.drug >= 0 && len(a.allergenDrugs)+len(a.allergenGroups) > 0 {
		return dict.rulesOut(a.allergenDrugs, a.allergenGroups, r.drug)
	}
	if r.name == nil {
		if r.drug < 0 {
			return false // a code this dictionary does not know
		}
		r.name = n.of(dict.drugs[r.drug].Name)
	}
	if n.allergicByName(a, r.name) {
		return true
	}
	for _, i := range a.allergenDrugs {
		if n.allergicByName(n.of(dict.drugs[i].Name), r.name) {
			return true
		}
	}
	return false
}

// allergicByName compares an allergy's name and a drug's name.
func (n drugNames) allergicByName(a, d *drugName) bool {
	if a.norm == "" || d.norm == "" {
		return false
	}
	if strings.Contains(d.norm, a.norm) || strings.Contains(a.norm, d.norm) || (a.sub != "" && a.sub == d.sub) {
		return true
	}
	for _, c := range a.classes {
		if slices.Contains(d.classes, c) {
			return true
		}
	}
	return false
}

// rulesOut reports whether an allergy to the drugs and groups named rules
// out drug d.
func (d *Dictionary) rulesOut(drugs, groups []int, rx int) bool {
	for _, x := range drugs {
		if x == rx {
			return true
		}
		for _, c := range components(d.drugs[x].Name) {
			if slices.Contains(components(d.drugs[rx].Name), c) {
				return true
			}
		}
		for _, g := range d.groupsOf[x] {
			if slices.Contains(d.groupsOf[rx], g) {
				return true
			}
		}
	}
	for _, g := range groups {
		if slices.Contains(d.groupsOf[rx], g) {
			return true
		}
	}
	return false
}

// codeOf returns the ATC code a prescription of drug carries: atc when
// given (well formed, and a code of the drug named when the dictionary
// knows both), or else the code of the drug the dictionary finds by
// name, or "".
func codeOf(drug, atc string) (string, error) {
	dict := DrugDictionary()
	named, known := dict.Lookup(drug)
	if atc == "" {
		if known {
			return named.Code(), nil
		}
		return "", nil
	}
	if !ValidATC(atc) {
		return "", invalid("atc", "%q is not a level-5 ATC code such as J01CA04", atc)
	}
	if byCode, ok := dict.Code(atc); ok && known && byCode.Name != named.Name {
		return "", invalid("atc", "%s is the code of %s, not of %s (%s)", atc, byCode.Name, strings.TrimSpace(drug), named.Name)
	}
	return atc, nil
}

// Words a drug's name may carry besides its substance.
var (
	// doseForms are dose forms, routes, release and strength words.
	doseForms = wordSet("tab", "tabs", "tablet", "tablets", "cap", "caps", "capsule", "capsules", "syrup", "syr",
		"susp", "suspension", "inj", "injection", "injectable", "infusion", "iv", "im", "sc", "vial", "vials", "amp",
		"ampoule", "ampoules", "sol", "soln", "solution", "oral", "drops", "drop", "cream", "ointment", "oint", "gel",
		"lotion", "elixir", "powder", "pwd", "granules", "sachet", "sachets", "dispersible", "disp", "dt", "chewable",
		"film", "coated", "fc", "ec", "sr", "er", "xr", "mr", "cr", "la", "retard", "ds", "ss", "forte", "paediatric",
		"pediatric", "paed", "adult", "for", "and", "with", "plus", "pessary", "suppository", "inhaler", "spray",
		"eye", "ear", "nasal", "topical", "patch")
	// units are units of strength, dropped after a number.
	units = wordSet("mg", "mcg", "ug", "g", "gm", "ml", "l", "iu", "u", "unit", "units", "mmol", "meq", "per", "dose", "doses")
	// salts are salt and hydrate names, dropped when something else is
	// left (so sodium and potassium chloride stay apart).
	salts = wordSet("hydrochloride", "dihydrochloride", "hcl", "hydrobromide", "sodium", "disodium", "potassium",
		"chloride", "bromide", "trihydrate", "monohydrate", "dihydrate", "hydrate", "anhydrous", "sulfate", "sulphate",
		"phosphate", "maleate", "mesylate", "mesilate", "besylate", "besilate", "citrate", "succinate", "tartrate",
		"fumarate", "acetate", "hyclate", "gluconate")
	// aliases are the brand names and spellings the class table lists,
	// by the generic name they stand for.
	aliases = map[string]string{
		"augmentin": "coamoxiclav", "septrin": "cotrimoxazole", "bactrim": "cotrimoxazole",
		"coartem": "artemether lumefantrine", "cephalexin": "cefalexin", "sulphonamide": "sulfonamide",
	}
)

func wordSet(ws ...string) map[string]bool {
	m := make(map[string]bool, len(ws))
	for _, w := range ws {
		m[w] = true
	}
	return m
}

// substance returns the substance a drug's name names, for telling
// whether two prescriptions are the same drug: in lower case, accents
// folded, strengths ("500mg", "250 mg/5 ml"), dose forms ("caps",
// "tablet", "susp") and salts ("hydrochloride", "sodium") left out, a
// "co-" prefix joined to its word, the brand names and spellings the
// class table lists replaced by their generic name, and the words of a
// combination sorted. "" when the name has no word at all.
func substance(name string) string {
	words := strings.FieldsFunc(normDrug(name), func(r rune) bool {
		return !unicode.IsLetter(r) && !unicode.IsDigit(r)
	})
	var kept []string
	afterNumber := false
	for i := 0; i < len(words); i++ {
		w := words[i]
		switch {
		case unicode.IsDigit([]rune(w)[0]):
			afterNumber = true // a strength: "500", "500mg", "5ml"
			continue
		case afterNumber && units[w]:
			continue
		}
		afterNumber = false
		if w == "co" && i+1 < len(words) && unicode.IsLetter([]rune(words[i+1])[0]) {
			i++
			w += words[i]
		}
		if doseForms[w] {
			continue
		}
		if a, ok := aliases[w]; ok {
			kept = append(kept, strings.Fields(a)...)
			continue
		}
		kept = append(kept, w)
	}
	rest := slices.DeleteFunc(slices.Clone(kept), func(w string) bool { return salts[w] })
	if len(rest) > 0 {
		kept = rest
	}
	slices.Sort(kept)
	return strings.Join(slices.Compact(kept), " ")
}

// fold replaces the accented Latin letters of a lower-case string by
// their unaccented letters, and µ by mc (µg is mcg).
func fold(s string) string {
	if !strings.ContainsFunc(s, func(r rune) bool { return r > unicode.MaxASCII }) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		if f, ok := folds[r]; ok {
			b.WriteString(f)
		} else {
			b.WriteRune(r)
		}
	}
	return b.String()
}

var folds = func() map[rune]string {
	m := map[rune]string{'µ': "mc", 'μ': "mc", 'æ': "ae", 'œ': "oe", 'ß': "ss", 'ø': "o", 'ł': "l", 'đ': "d"}
	for base, accented := range map[string]string{
		"a": "àáâãäåāăą", "c": "çćĉċč", "e": "èéêëēĕėęě", "i": "ìíîïĩīĭįı", "n": "ñńņňŉ",
		"o": "òóôõöōŏő", "u": "ùúûüũūŭůűų", "y": "ýÿŷ", "s": "śŝşš", "z": "źżž", "g": "ĝğġģ",
		"r": "ŕŗř", "t": "ţťŧ", "l": "ĺļľŀ", "d": "ď", "k": "ķ", "j": "ĵ", "h": "ĥħ", "w": "ŵ",
	} {
		for _, r := range accented {
			m[r] = base
		}
	}
	return m
}()
