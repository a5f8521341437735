package record_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/record"
)

func rxOf(drug, atc string) record.Prescribe {
	return record.Prescribe{Drug: drug, ATC: atc, Dose: 1, DoseUnit: "tablet", Route: "oral", Frequency: "BD"}
}

// A prescription carries the ATC code of a drug the dictionary knows, by
// any of its names; a drug it does not know is recorded as written and
// flagged uncoded.
func TestPrescribeCodesTheDrug(t *testing.T) {
	cases := []struct {
		name, drug, atc string
		wantATC         string
		wantSubstance   string
	}{
		{"generic name", "Amoxicillin 500mg caps", "", "J01CA04", "amoxicillin"},
		{"spelling variant", "amoxycillin", "", "J01CA04", "amoxicillin"},
		{"brand", "Tylenol", "", "N02BE01", "paracetamol"},
		{"combination brand", "Coartem 20/120", "", "P01BF01", "artemether + lumefantrine"},
		{"code given", "Flagyl", "J01XD01", "J01XD01", "metronidazole"},
		{"code given, free-text name", "Mystery tonic", "A11GA01", "A11GA01", "ascorbic acid"},
		{"well-formed code this dictionary lacks", "Newdrug", "J01CA99", "J01CA99", ""},
		{"free text", "Grandmother's tonic", "", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := newChart(t)
			id := do(t, c, doctor, t0, rxOf(tc.drug, tc.atc))
			p, ok := findRx(view(t, c), id)
			require.True(t, ok)
			assert.Equal(t, tc.drug, p.Drug, "the drug is kept as written")
			assert.Equal(t, tc.wantATC, p.ATC)
			assert.Equal(t, tc.wantSubstance, p.Substance)
			assert.Equal(t, tc.wantATC == "", p.Uncoded, "uncoded exactly when no ATC code is carried")
		})
	}
}

// An ATC code that is malformed, or that the dictionary gives to another
// drug than the one named, is refused.
func TestPrescribeRefusesWrongCodes(t *testing.T) {
	for _, tc := range []struct{ drug, atc string }{
		{"Amoxicillin", "J01CA4"},
		{"Amoxicillin", "j01ca04"},
		{"Amoxicillin", "J01CA"},
		{"Amoxicillin", "N02BE01"}, // paracetamol's
	} {
		c := newChart(t)
		err := unchanged(t, c, func() error { _, err := c.Do(doctor, t0, rxOf(tc.drug, tc.atc)); return err })
		require.ErrorIs(t, err, record.ErrInvalid, "%s %s", tc.drug, tc.atc)
		var ve *record.ValidationError
		require.ErrorAs(t, err, &ve)
		assert.Equal(t, "atc", ve.Field)
	}
}

// Duplicate therapy and drug allergies are judged by the dictionary when
// it knows the drug: the same substance or the same ATC level-4 class
// whatever the names, groups of cross-reacting drugs by their codes (so
// ferrous sulfate is no sulfonamide), a combination by its substances;
// classes given together by design (two NRTIs, a tuberculosis regimen)
// are not duplicates.
func TestDictionaryDrivesDuplicateAndAllergyAlerts(t *testing.T) {
	type entry func(t *testing.T, c *record.Chart, at time.Time) string
	rx := func(drug string) entry {
		return func(t *testing.T, c *record.Chart, at time.Time) string { return do(t, c, doctor, at, rxOf(drug, "")) }
	}
	allergy := func(s string) entry {
		return func(t *testing.T, c *record.Chart, at time.Time) string {
			return do(t, c, nurse, at, record.AddAllergy{Substance: s, Severity: "severe"})
		}
	}
	cases := []struct {
		name string
		a, b entry
		want string
	}{
		{"brand and generic", rx("Panadol"), rx("Acetaminophen 500 mg"), record.AlertDuplicateDrug},
		{"two brands", rx("Bactrim DS"), rx("Septrin"), record.AlertDuplicateDrug},
		{"spelling variant", rx("Amoxil"), rx("amoxycillin"), record.AlertDuplicateDrug},
		{"same ATC class", rx("Enalapril"), rx("Lisinopril"), record.AlertDuplicateClass},
		{"same ATC class, brands", rx("Flagyl"), rx("Fasigyn"), record.AlertDuplicateClass},
		{"group across classes", rx("Brufen"), rx("Voltaren"), record.AlertDuplicateClass},
		{"two NRTIs of a regimen", rx("Tenofovir disoproxil"), rx("Lamivudine"), ""},
		{"tuberculosis regimen", rx("Pyrazinamide"), rx("Ethambutol"), ""},
		{"unrelated", rx("Metformin"), rx("Amlodipine"), ""},
		{"penicillin allergy, brand of a combination", allergy("Penicillin"), rx("Augmentin"), record.AlertAllergyDrug},
		{"penicillin allergy, piperacillin", allergy("penicillins"), rx("Tazocin"), record.AlertAllergyDrug},
		{"penicillin allergy, benzathine", allergy("PCN"), rx("Bicillin L-A"), record.AlertAllergyDrug},
		{"amoxicillin allergy, brand", allergy("Amoxycillin"), rx("Amoxil"), record.AlertAllergyDrug},
		{"amoxicillin allergy, another penicillin", allergy("Amoxicillin"), rx("Flucloxacillin"), record.AlertAllergyDrug},
		{"sulfonamide allergy, co-trimoxazole brand", allergy("Sulfonamides"), rx("Septrin"), record.AlertAllergyDrug},
		{"sulfa allergy, sulfadoxine combination", allergy("sulfa"), rx("Fansidar"), record.AlertAllergyDrug},
		{"sulfonamide allergy, ferrous sulfate", allergy("Sulfonamides"), rx("Ferrous sulfate 200 mg"), ""},
		{"sulfa allergy, magnesium sulfate", allergy("Sulfa drugs"), rx("Magnesium sulphate"), ""},
		{"trimethoprim allergy, co-trimoxazole", allergy("Trimethoprim"), rx("Co-trimoxazole"), record.AlertAllergyDrug},
		{"isoniazid allergy, fixed-dose combination", allergy("Isoniazid"), rx("RHZE"), record.AlertAllergyDrug},
		{"aspirin allergy, diclofenac", allergy("Aspirin"), rx("Diclofenac"), record.AlertAllergyDrug},
		{"penicillin allergy, ceftriaxone", allergy("Penicillin"), rx("Rocephin"), ""},
		{"allergy in words", allergy("allergic to penicillin (rash)"), rx("Amoxil"), record.AlertAllergyDrug},
		{"peanut allergy, paracetamol", allergy("Peanuts"), rx("Panadol"), ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			for _, order := range mergeOrders {
				rs := replicas(t, newChart(t), 2)
				idA := tc.a(t, rs[0], t0.Add(time.Hour))
				idB := tc.b(t, rs[1], t0.Add(time.Hour))
				order.merge(t, rs[0], rs[1])
				v := converged(t, rs...)
				if tc.want == "" {
					assert.Empty(t, v.Alerts, "%s: no alert", order.name)
					continue
				}
				require.Len(t, v.Alerts, 1, "%s: alerts: %+v", order.name, v.Alerts)
				assert.Equal(t, tc.want, v.Alerts[0].Kind, "%s: %s", order.name, v.Alerts[0].Message)
				assert.ElementsMatch(t, []string{idA, idB}, v.Alerts[0].Entries)
			}
		})
	}
}

// A received change carrying an ATC code is held to the same checks: a
// malformed code is refused, a well-formed one this dictionary does not
// know is accepted (a newer dictionary may know it) and counts as
// uncoded for the class and allergy checks, which fall back to the name.
func TestReceivedATCCodesAreChecked(t *testing.T) {
	base := newChart(t)
	id := do(t, base, doctor, t0, rxOf("Mystery tonic", ""))
	for _, tc := range []struct {
		code string
		ok   bool
	}{{"J01CA99", true}, {"N02BE01", true}, {"J01CA4", false}, {"amoxicillin", false}, {"J01C", false}} {
		c := fork(t, base)
		w := writeBy(doctor, record.KindPrescription, id, "atc", tc.code)
		ch := craft(t, c, messageBy(doctor, "resolve-conflict"), putWrites(w))
		_, err := checkBoth(t, c.Doc(), ch)
		if tc.ok {
			require.NoError(t, err, "%s is accepted", tc.code)
			continue
		}
		require.ErrorIs(t, err, record.ErrInvalid, "%s is refused", tc.code)
	}

	// An unknown code: no class from it, the name decides.
	c := newChart(t)
	do(t, c, nurse, t0, record.AddAllergy{Substance: "Penicillin", Severity: "severe"})
	id = do(t, c, doctor, t0, rxOf("Mystery tonic", "J01CA99"))
	v := view(t, c)
	p, _ := findRx(v, id)
	assert.False(t, p.Uncoded)
	assert.Empty(t, p.Substance, "this dictionary does not know J01CA99")
	assert.Empty(t, v.Alerts, "an unknown code is no penicillin by its class")
}
