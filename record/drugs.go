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
}

func (n drugNames) of(name string) *drugName {
	if d, ok := n[name]; ok {
		return d
	}
	d := &drugName{norm: normDrug(name), sub: substance(name)}
	d.classes, d.subClasses = classOf(d.norm), substanceClasses(d.sub)
	n[name] = d
	return d
}

// allergic reports whether an allergy to substance rules out drug: one
// name holds the other, they are the same substance, or they mention
// one drug class.
func (n drugNames) allergic(substance, drug string) bool {
	a, d := n.of(substance), n.of(drug)
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
