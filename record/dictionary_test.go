package record_test

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/record"
)

// The shipped dictionary parses; every code is a well-formed level-5 ATC
// code; no two drugs or groups share a name or variant (as Substance
// compares names) and no two drugs a code.
func TestShippedDictionaryIsWellFormed(t *testing.T) {
	raw, err := os.ReadFile("data/drugs.txt")
	require.NoError(t, err)
	d, err := record.ParseDictionary(bytes.NewReader(raw))
	require.NoError(t, err, "the shipped dictionary parses")

	names := map[string]string{}
	codes := map[string]string{}
	variants := 0
	claim := func(owner, name string) {
		k := record.Substance(name)
		require.NotEmpty(t, k, "%s: %q names a substance", owner, name)
		if o, ok := names[k]; ok {
			require.Equal(t, o, owner, "%q of %s is also a name of %s", name, owner, o)
		}
		names[k] = owner
	}
	for _, dr := range d.Drugs() {
		require.NotEmpty(t, dr.ATC, dr.Name)
		for _, c := range dr.ATC {
			assert.True(t, record.ValidATC(c), "%s: %q is a level-5 ATC code", dr.Name, c)
			o, dup := codes[c]
			assert.False(t, dup, "%s shares code %s with %s", dr.Name, c, o)
			codes[c] = dr.Name
		}
		claim("drug "+dr.Name, dr.Name)
		for _, v := range dr.Variants {
			claim("drug "+dr.Name, v)
		}
		variants += len(dr.Variants)
	}
	for _, g := range d.Groups() {
		claim("group "+g.Name, g.Name)
		for _, v := range g.Variants {
			claim("group "+g.Name, v)
		}
	}
	t.Logf("drug dictionary: %d drugs, %d variants, %d names in all, %d ATC codes, %d groups",
		len(d.Drugs()), variants, len(d.Drugs())+variants, len(codes), len(d.Groups()))
	require.Same(t, record.DrugDictionary(), record.DrugDictionary())
	assert.Len(t, record.DrugDictionary().Drugs(), len(d.Drugs()))
}

// Generic names, spellings and brands of common essential medicines find
// their drug and code.
func TestDictionaryLookup(t *testing.T) {
	cases := []struct{ name, code, drug string }{
		{"paracetamol", "N02BE01", "paracetamol"},
		{"Acetaminophen", "N02BE01", "paracetamol"},
		{"Panadol 500 mg tablets", "N02BE01", "paracetamol"},
		{"TYLENOL", "N02BE01", "paracetamol"},
		{"Amoxicillin 500mg caps", "J01CA04", "amoxicillin"},
		{"amoxycillin", "J01CA04", "amoxicillin"},
		{"Amoxil 250mg/5ml susp", "J01CA04", "amoxicillin"},
		{"Co-trimoxazole 960 mg", "J01EE01", "sulfamethoxazole + trimethoprim"},
		{"Bactrim DS", "J01EE01", "sulfamethoxazole + trimethoprim"},
		{"Septrin", "J01EE01", "sulfamethoxazole + trimethoprim"},
		{"Sulfamethoxazole/Trimethoprim", "J01EE01", "sulfamethoxazole + trimethoprim"},
		{"Artemether/Lumefantrine 20/120", "P01BF01", "artemether + lumefantrine"},
		{"Coartem", "P01BF01", "artemether + lumefantrine"},
		{"Augmentin 625mg", "J01CR02", "amoxicillin + clavulanic acid"},
		{"co-amoxiclav", "J01CR02", "amoxicillin + clavulanic acid"},
		{"Ferrous sulfate 200 mg", "B03AA07", "ferrous sulfate"},
		{"Ventolin inhaler", "R03AC02", "salbutamol"},
		{"albuterol", "R03AC02", "salbutamol"},
		{"Lignocaine", "N01BB02", "lidocaine"},
		{"frusemide", "C03CA01", "furosemide"},
		{"Rifampin", "J04AB02", "rifampicin"},
		{"RHZE", "J04AM06", "ethambutol + isoniazid + pyrazinamide + rifampicin"},
		{"TLD", "J05AR27", "dolutegravir + lamivudine + tenofovir disoproxil"},
		{"Metformin hydrochloride 500mg tablets", "A10BA02", "metformin"},
		{"Oxytocin 10 IU injection", "H01BB02", "oxytocin"},
		{"magnesium sulphate", "B05XA05", "magnesium sulfate"},
		{"Paracétamol", "N02BE01", "paracetamol"},
	}
	dict := record.DrugDictionary()
	for _, tc := range cases {
		d, ok := dict.Lookup(tc.name)
		if assert.True(t, ok, "%q is in the dictionary", tc.name) {
			assert.Equal(t, tc.drug, d.Name, tc.name)
			assert.Equal(t, tc.code, d.Code(), tc.name)
		}
		byCode, ok := dict.Code(tc.code)
		assert.True(t, ok, tc.code)
		assert.Equal(t, tc.drug, byCode.Name, tc.code)
	}
	for _, name := range []string{"Amoxicilin", "Peanut butter", "Mystery tonic", "500 mg", ""} {
		_, ok := dict.Lookup(name)
		assert.False(t, ok, "%q is not a drug of the dictionary", name)
	}
	assert.Contains(t, dict.GroupsOf(mustDrug(t, "Amoxil")), "penicillins")
	assert.Contains(t, dict.GroupsOf(mustDrug(t, "Septrin")), "sulfonamides")
	assert.NotContains(t, dict.GroupsOf(mustDrug(t, "ferrous sulfate")), "sulfonamides", "ferrous sulfate is no sulfonamide")
}

func mustDrug(t *testing.T, name string) record.Drug {
	t.Helper()
	d, ok := record.DrugDictionary().Lookup(name)
	require.True(t, ok, name)
	return d
}

// The dictionary covers the medicines of the WHO Model List of Essential
// Medicines: a sample of its sections, by INN.
func TestDictionaryCoversEssentialMedicines(t *testing.T) {
	eml := []string{
		// anaesthetics, analgesics, antidotes, anticonvulsants
		"halothane", "ketamine", "propofol", "bupivacaine", "lidocaine", "atropine", "midazolam", "ibuprofen",
		"acetylsalicylic acid", "morphine", "fentanyl", "methadone", "naloxone", "acetylcysteine", "activated charcoal",
		"carbamazepine", "phenobarbital", "phenytoin", "valproic acid", "magnesium sulfate", "diazepam", "lamotrigine",
		// anti-infectives
		"albendazole", "mebendazole", "praziquantel", "ivermectin", "amikacin", "ampicillin", "benzathine benzylpenicillin",
		"benzylpenicillin", "cefalexin", "cefazolin", "chloramphenicol", "clindamycin", "cloxacillin", "doxycycline",
		"gentamicin", "metronidazole", "nitrofurantoin", "phenoxymethylpenicillin", "procaine benzylpenicillin",
		"spectinomycin", "trimethoprim", "azithromycin", "cefixime", "cefotaxime", "ceftriaxone", "cefuroxime",
		"ciprofloxacin", "clarithromycin", "piperacillin + tazobactam", "meropenem", "vancomycin", "linezolid",
		"colistin", "fosfomycin", "tigecycline", "clofazimine", "dapsone", "rifampicin", "ethambutol", "isoniazid",
		"pyrazinamide", "bedaquiline", "delamanid", "amphotericin B", "fluconazole", "flucytosine", "nystatin",
		"aciclovir", "oseltamivir", "abacavir", "lamivudine", "tenofovir disoproxil", "zidovudine", "efavirenz",
		"nevirapine", "dolutegravir", "lopinavir + ritonavir", "entecavir", "sofosbuvir", "artesunate", "amodiaquine",
		"artemether", "chloroquine", "primaquine", "quinine", "sulfadoxine + pyrimethamine", "mefloquine",
		"dihydroartemisinin + piperaquine", "pentamidine", "miltefosine",
		// other sections
		"propranolol", "sumatriptan", "cyclophosphamide", "cisplatin", "doxorubicin", "methotrexate", "tamoxifen",
		"imatinib", "rituximab", "levodopa + carbidopa", "ferrous sulfate", "folic acid", "heparin", "warfarin",
		"tranexamic acid", "amlodipine", "enalapril", "hydrochlorothiazide", "furosemide", "spironolactone", "digoxin",
		"simvastatin", "glyceryl trinitrate", "permethrin", "chlorhexidine", "povidone iodine", "omeprazole",
		"ondansetron", "zinc sulfate", "hydrocortisone", "levonorgestrel", "medroxyprogesterone", "metformin",
		"gliclazide", "soluble insulin", "levothyroxine", "oxytocin", "misoprostol", "mifepristone", "carbetocin",
		"neostigmine", "suxamethonium", "haloperidol", "fluoxetine", "lithium carbonate", "beclometasone", "budesonide",
		"salbutamol", "potassium chloride", "sodium chloride", "glucose", "retinol", "colecalciferol", "allopurinol",
		"caffeine citrate", "BCG vaccine", "measles vaccine",
	}
	for _, name := range eml {
		_, ok := record.DrugDictionary().Lookup(name)
		assert.True(t, ok, "%q is in the dictionary", name)
	}
}

// Malformed lines are refused with a *DictionaryError naming the line.
func TestParseDictionaryRefusesMalformedLines(t *testing.T) {
	good := "# a comment\n\ndrug|J01CA04|amoxicillin|Amoxil\ngroup|penicillins|J01C|penicillin\nnodup|J05AF|given together\n"
	_, err := record.ParseDictionary(strings.NewReader(good))
	require.NoError(t, err)
	cases := []struct{ name, line string }{
		{"unknown record", "medicine|J01CA04|amoxicillin|"},
		{"too few fields", "drug|J01CA04|ampicillin"},
		{"too many fields", "drug|J01CA01|ampicillin||x"},
		{"no code", "drug||ampicillin|"},
		{"level-4 code for a drug", "drug|J01CA|ampicillin|"},
		{"lower-case code", "drug|j01ca01|ampicillin|"},
		{"no such anatomical group", "drug|X01CA01|ampicillin|"},
		{"code of another drug", "drug|J01CA04|ampicillin|"},
		{"empty name", "drug|J01CA01||"},
		{"a name of another drug", "drug|J01CA01|ampicillin|amoxil"},
		{"a variant of another drug", "drug|J01CA01|Amoxil 250 mg tablets|"},
		{"a name that is only a strength", "drug|J01CA01|500 mg|"},
		{"an empty variant", "drug|J01CA01|ampicillin|Penbritin;;"},
		{"a group's name", "drug|J01CA01|penicillin|"},
		{"a group without prefixes", "group|macrolides||"},
		{"a group with a bad prefix", "group|macrolides|J01-FA|"},
		{"a group named as a drug", "group|amoxil group|J01FA|amoxil"},
		{"nodup of a level-5 code", "nodup|J05AF01|given together"},
		{"nodup without a reason", "nodup|J04AK|"},
		{"nodup twice", "nodup|J05AF|again"},
		{"control character", "drug|J01CA01|ampi\x01cillin|"},
		{"invalid UTF-8", "drug|J01CA01|ampi\xffcillin|"},
		{"overlong line", "drug|J01CA01|ampicillin|" + strings.Repeat("x", 5000)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := record.ParseDictionary(strings.NewReader(good + tc.line + "\n"))
			require.Error(t, err)
			require.ErrorIs(t, err, record.ErrDictionary)
			var de *record.DictionaryError
			require.True(t, errors.As(err, &de))
			assert.Equal(t, 6, de.Line, "the error names the line: %v", err)
		})
	}
}

// Whatever bytes a dictionary file holds, parsing never panics, and
// either refuses them with a *DictionaryError or gives a dictionary whose
// codes are well formed and whose names each find one drug.
func FuzzParseDictionary(f *testing.F) {
	raw, err := os.ReadFile("data/drugs.txt")
	require.NoError(f, err)
	f.Add(raw)
	lines := strings.Split(string(raw), "\n")
	for i := 0; i+3 < len(lines); i += 37 {
		f.Add([]byte(strings.Join(lines[i:i+3], "\n")))
	}
	f.Add([]byte("drug|J01CA04|amoxicillin|Amoxil\ndrug|J01CA04|ampicillin|\n"))
	f.Add([]byte("group|penicillins|J01C|penicillin\nnodup|J05AF|x\n"))
	f.Add([]byte("drug|J01CA04 S01AA01|a|b;c\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		d, err := record.ParseDictionary(bytes.NewReader(data))
		if err != nil {
			require.ErrorIs(t, err, record.ErrDictionary)
			return
		}
		for _, dr := range d.Drugs() {
			require.NotEmpty(t, dr.ATC)
			for _, c := range dr.ATC {
				require.True(t, record.ValidATC(c), c)
				got, ok := d.Code(c)
				require.True(t, ok)
				require.Equal(t, dr.Name, got.Name)
			}
			for _, n := range append([]string{dr.Name}, dr.Variants...) {
				got, ok := d.Lookup(n)
				require.True(t, ok, n)
				require.Equal(t, dr.Name, got.Name, "%q finds its own drug", n)
			}
		}
	})
}
