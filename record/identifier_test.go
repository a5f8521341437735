package record_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/record"
)

// aadhaar is a made-up Aadhaar number with a valid check digit.
const aadhaar = "234123412346"

func TestVerhoeffKnownValues(t *testing.T) {
	for _, tc := range []struct {
		digits string
		valid  bool
	}{
		{"2363", true}, {"2364", false}, {"123451", true}, {"123415", false},
		{aadhaar, true}, {"234123412345", false}, {"0", true}, {"", false}, {"12a4", false},
	} {
		assert.Equal(t, tc.valid, record.Verhoeff(tc.digits), "Verhoeff(%q)", tc.digits)
	}
	d, err := record.VerhoeffDigit("236")
	require.NoError(t, err)
	assert.Equal(t, byte('3'), d)
	_, err = record.VerhoeffDigit("23x")
	require.ErrorIs(t, err, record.ErrInvalid)
}

// TestPropertyVerhoeffCatchesTypos: a number completed with its check
// digit passes; one digit mistyped, or two adjacent different digits
// swapped, fails.
func TestPropertyVerhoeffCatchesTypos(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		body := rapid.StringMatching(`[0-9]{1,20}`).Draw(t, "digits")
		d, err := record.VerhoeffDigit(body)
		require.NoError(t, err)
		n := []byte(body + string(d))
		require.True(t, record.Verhoeff(string(n)), "%s completed with its check digit fails", n)

		i := rapid.IntRange(0, len(n)-1).Draw(t, "position")
		typo := append([]byte(nil), n...)
		typo[i] = '0' + byte((int(n[i]-'0')+rapid.IntRange(1, 9).Draw(t, "shift"))%10)
		require.False(t, record.Verhoeff(string(typo)), "a mistyped digit in %s is not caught (%s)", n, typo)

		if j := rapid.IntRange(0, len(n)-1).Draw(t, "swap"); j+1 < len(n) && n[j] != n[j+1] {
			swapped := append([]byte(nil), n...)
			swapped[j], swapped[j+1] = swapped[j+1], swapped[j]
			require.False(t, record.Verhoeff(string(swapped)), "a swap in %s is not caught (%s)", n, swapped)
		}
	})
}

func TestCanonicalIdentifier(t *testing.T) {
	for _, tc := range []struct {
		name, system, value, want string
	}{
		{"aadhaar as printed", record.SystemAadhaar, "2341 2341 2346", aadhaar},
		{"aadhaar hyphens", record.SystemAadhaar, "2341-2341-2346", aadhaar},
		{"aadhaar wrong check digit", record.SystemAadhaar, "2341 2341 2345", ""},
		{"aadhaar starts with 1", record.SystemAadhaar, "123412341234", ""},
		{"aadhaar too short", record.SystemAadhaar, "23412341234", ""},
		{"abha", record.SystemABHA, "91-1234-5678-9012", "91123456789012"},
		{"abha 13 digits", record.SystemABHA, "91-1234-5678-901", ""},
		{"national id", record.SystemNationalID, " ab 123-45 ", "AB12345"},
		{"national id punctuation", record.SystemNationalID, "AB/12", ""},
		{"clinic number", record.SystemClinic, "kmg-0042", "KMG0042"},
		{"phone", record.SystemPhone, "+254 (712) 345-678", "+254712345678"},
		{"phone letters", record.SystemPhone, "call me", ""},
		{"uri system", "http://hospital.example/mrn", "MRN 778/2", "MRN 778/2"},
		{"urn system", "urn:oid:2.16.840.1.113883.2.4.6.3", "12345", "12345"},
		{"value with bar", "http://hospital.example/mrn", "a|b", ""},
		{"empty value", "http://hospital.example/mrn", " ", ""},
		{"upper-case system", "Aadhaar", aadhaar, ""},
		{"system with bar", "x|y", "1", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := record.CanonicalIdentifier(tc.system, tc.value)
			if tc.want == "" {
				require.ErrorIs(t, err, record.ErrBadIdentifier)
				require.ErrorIs(t, err, record.ErrInvalid)
				var ve *record.ValidationError
				require.ErrorAs(t, err, &ve)
				require.Equal(t, "identifier", ve.Field)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, got)
		})
	}
}

func identifiersOf(t tb, c *record.Chart) []record.Identifier {
	t.Helper()
	p, err := c.Patient()
	require.NoError(t, err)
	return p.Identifiers
}

func TestIdentifierLifecycle(t *testing.T) {
	reg := baseRegister()
	reg.Identifiers = []record.Identifier{{System: record.SystemAadhaar, Value: "2341 2341 2346"}, {System: record.SystemClinic, Value: "kmg-7"}}
	c, _, err := record.New(uuid.NewString(), crdt.NewActorID(), registry, t0, reg)
	require.NoError(t, err)
	ids := identifiersOf(t, c)
	require.Len(t, ids, 2)
	if ids[0].System != record.SystemAadhaar { // entries recorded together are listed by ID
		ids[0], ids[1] = ids[1], ids[0]
	}
	require.Equal(t, record.Identifier{ID: ids[0].ID, System: record.SystemAadhaar, Value: aadhaar, Status: record.StatusActive}, ids[0],
		"the Aadhaar number is stored without its spaces")
	require.Equal(t, "KMG7", ids[1].Value)

	at := t0.Add(time.Minute)
	phone := do(t, c, chw, at, record.AddIdentifier{System: record.SystemPhone, Value: "0712 345 678"})
	for _, tc := range []struct {
		name string
		op   record.Op
		want error
	}{
		{"the same identifier again", record.AddIdentifier{System: record.SystemClinic, Value: "KMG 7"}, record.ErrTransition},
		{"a second Aadhaar number", record.AddIdentifier{System: record.SystemAadhaar, Value: "2363"}, record.ErrInvalid},
		{"a bad check digit", record.AddIdentifier{System: record.SystemAadhaar, Value: "234123412345"}, record.ErrBadIdentifier},
		{"correct to a bad check digit", record.CorrectIdentifier{IdentifierID: ids[0].ID, Value: "234123412345"}, record.ErrBadIdentifier},
		{"correct to the same", record.CorrectIdentifier{IdentifierID: ids[0].ID, Value: "2341-2341-2346"}, record.ErrInvalid},
		{"correct to another it has", record.CorrectIdentifier{IdentifierID: phone, System: record.SystemClinic, Value: "KMG7"}, record.ErrTransition},
		{"remove without reason", record.RemoveIdentifier{IdentifierID: phone}, record.ErrInvalid},
		{"remove an allergy", record.RemoveIdentifier{IdentifierID: c.ID(), Reason: "x"}, record.ErrNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := unchanged(t, c, func() error { _, err := c.Do(nurse, at, tc.op); return err })
			require.ErrorIs(t, err, tc.want)
		})
	}
	// A second Aadhaar number is refused even when valid.
	other, err := record.VerhoeffDigit("98765432101")
	require.NoError(t, err)
	_, err = c.Do(nurse, at, record.AddIdentifier{System: record.SystemAadhaar, Value: "98765432101" + string(other)})
	require.ErrorIs(t, err, record.ErrTransition)

	// A lab technician may not touch demographics.
	_, err = c.Do(labTech, at, record.AddIdentifier{System: record.SystemPhone, Value: "+254700000009"})
	require.ErrorIs(t, err, record.ErrForbidden)

	do(t, c, nurse, at.Add(time.Minute), record.CorrectIdentifier{IdentifierID: ids[1].ID, Value: "KMG-8", Reason: "typo"})
	do(t, c, nurse, at.Add(2*time.Minute), record.RemoveIdentifier{IdentifierID: phone, Reason: "lost the phone"})
	_, err = c.Do(nurse, at.Add(3*time.Minute), record.RemoveIdentifier{IdentifierID: phone, Reason: "again"})
	require.ErrorIs(t, err, record.ErrTransition)
	do(t, c, nurse, at.Add(3*time.Minute), record.MarkEnteredInError{EntryID: ids[0].ID, Reason: "another patient's card"})

	v := view(t, c)
	require.Equal(t, []record.Identifier{
		{ID: ids[1].ID, System: record.SystemClinic, Value: "KMG8", Status: record.StatusActive},
		{ID: phone, System: record.SystemPhone, Value: "0712345678", Status: record.StatusInactive},
	}, v.Patient.Identifiers)
	e, ok := findError(v, ids[0].ID)
	require.True(t, ok, "the identifier entered in error is listed as such")
	require.Equal(t, record.KindIdentifier, e.Kind)
	require.Equal(t, "aadhaar "+aadhaar, e.Label)
	// With the wrong one out of the way, the right Aadhaar number can be added.
	do(t, c, nurse, at.Add(4*time.Minute), record.AddIdentifier{System: record.SystemAadhaar, Value: "98765432101" + string(other)})
	require.Contains(t, historyOps(view(t, c)), "correct-identifier")
}

func TestIdentifierMerge(t *testing.T) {
	reg := baseRegister()
	reg.Identifiers = []record.Identifier{{System: record.SystemClinic, Value: "K1"}}
	base, _, err := record.New(uuid.NewString(), crdt.NewActorID(), registry, t0, reg)
	require.NoError(t, err)
	clinicNo := identifiersOf(t, base)[0].ID
	a, b := fork(t, base), fork(t, base)

	// Concurrent additions are both kept; concurrent corrections are a
	// conflict; a removal and a correction both apply.
	phoneA := do(t, a, nurse, t0.Add(time.Minute), record.AddIdentifier{System: record.SystemPhone, Value: "+254700000001"})
	phoneB := do(t, b, chw, t0.Add(time.Minute), record.AddIdentifier{System: record.SystemPhone, Value: "+254700000002"})
	do(t, a, nurse, t0.Add(2*time.Minute), record.CorrectIdentifier{IdentifierID: clinicNo, Value: "K2"})
	do(t, b, registry, t0.Add(3*time.Minute), record.CorrectIdentifier{IdentifierID: clinicNo, Value: "K3"})
	do(t, b, registry, t0.Add(4*time.Minute), record.RemoveIdentifier{IdentifierID: clinicNo, Reason: "new register"})
	mergeAll(t, a, b)
	v := converged(t, a, b)
	require.ElementsMatch(t, []string{clinicNo, phoneA, phoneB}, ids(v.Patient.Identifiers, func(i record.Identifier) string { return i.ID }))
	c, ok := findConflict(v, clinicNo, "identifier")
	require.True(t, ok, "concurrent corrections of one identifier are a conflict")
	require.Equal(t, record.KindIdentifier, c.Kind)
	require.Equal(t, "clinic|K3", c.Shown, "the later correction is shown")
	require.Equal(t, record.StatusInactive, v.Patient.Identifiers[0].Status)

	do(t, a, nurse, t0.Add(5*time.Minute), record.ResolveConflict{EntryID: clinicNo, Field: "identifier", Value: "clinic|K2"})
	_, err = a.Do(nurse, t0.Add(5*time.Minute), record.ResolveConflict{EntryID: clinicNo, Field: "identifier", Value: "clinic|k 2"})
	require.ErrorIs(t, err, record.ErrTransition, "the conflict is settled already")
	_, ok = findConflict(view(t, a), clinicNo, "identifier")
	require.False(t, ok)
	require.Equal(t, "K2", identifiersOf(t, a)[0].Value)
}

func TestExternalIDs(t *testing.T) {
	c := newChart(t)
	ext := record.Identifier{System: "http://lab.example/orders", Value: "ORD-17"}
	rx := do(t, c, nurse, t0, record.Prescribe{Drug: "Paracetamol", Dose: 1, DoseUnit: "g", Route: "oral", Frequency: "QID", ExternalID: ext})
	lab := do(t, c, labTech, t0, record.RecordLabResult{Test: "Hb", Value: record.Ptr(12.0), Unit: "g/dL", SpecimenAt: t0, ExternalID: ext})
	ref := do(t, c, registry, t0, record.Refer{ToClinic: "district", ExternalID: record.Identifier{System: record.SystemClinic, Value: "d 9"}})
	enc := do(t, c, nurse, t0, record.AddEncounter{Complaint: "fever"})
	v := view(t, c)
	p, _ := findRx(v, rx)
	require.Equal(t, &ext, p.ExternalID)
	l, _ := findLab(v, lab)
	require.Equal(t, &ext, l.ExternalID)
	require.Equal(t, &record.Identifier{System: record.SystemClinic, Value: "D9"}, v.Referrals[0].ExternalID)
	require.Equal(t, ref, v.Referrals[0].ID)
	e, _ := findEncounter(v, enc)
	require.Nil(t, e.ExternalID, "an entry without an external identifier has none")

	err := unchanged(t, c, func() error {
		_, err := c.Do(nurse, t0, record.AddAllergy{Substance: "Sulfa", Severity: "mild", ExternalID: record.Identifier{System: "x", Value: "a|b"}})
		return err
	})
	require.ErrorIs(t, err, record.ErrBadIdentifier)
	err = unchanged(t, c, func() error {
		_, err := c.Do(doctor, t0, record.Diagnose{Text: "Malaria", ExternalID: record.Identifier{System: record.SystemAadhaar, Value: "1"}})
		return err
	})
	require.ErrorIs(t, err, record.ErrInvalid)
}

// TestReceivedIdentifierWritesAreChecked: CheckChange and the Checker
// accept an identifier change this package makes, as demographics, and
// refuse a crafted one whose identifier fails its system's check or is
// not written in canonical form, wherever it is (an identifier entry or
// an entry's external identifier).
func TestReceivedIdentifierWritesAreChecked(t *testing.T) {
	c := newChart(t)
	enc := do(t, c, nurse, t0, record.AddEncounter{Complaint: "fever"})
	dev := fork(t, c)
	res, err := dev.Do(chw, t0.Add(time.Minute), record.AddIdentifier{System: record.SystemAadhaar, Value: aadhaar})
	require.NoError(t, err)
	touched, err := checkBoth(t, c.Doc(), res.Change)
	require.NoError(t, err)
	require.Equal(t, []record.Section{record.SectionDemographics}, touched.Sections)

	id := uuid.NewString()
	for _, tc := range []struct {
		name string
		w    storedWrite
		want error
	}{
		{"valid", writeBy(chw, record.KindIdentifier, id, "identifier", "aadhaar|"+aadhaar), nil},
		{"valid external id", writeBy(nurse, record.KindEncounter, enc, "external_id", "urn:x|E-1"), nil},
		{"bad check digit", writeBy(chw, record.KindIdentifier, id, "identifier", "aadhaar|234123412345"), record.ErrInvalid},
		{"not canonical", writeBy(chw, record.KindIdentifier, id, "identifier", "aadhaar|2341 2341 2346"), record.ErrInvalid},
		{"no system", writeBy(chw, record.KindIdentifier, id, "identifier", aadhaar), record.ErrInvalid},
		{"bad status", writeBy(chw, record.KindIdentifier, id, "status", "lost"), record.ErrInvalid},
		{"bad external id", writeBy(nurse, record.KindEncounter, enc, "external_id", "abha|12"), record.ErrInvalid},
		{"by a lab technician", writeBy(labTech, record.KindIdentifier, id, "identifier", "phone|0712345678"), record.ErrForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			by := map[string]record.Author{chw.UserID: chw, nurse.UserID: nurse, labTech.UserID: labTech}[tc.w.User]
			ch := craft(t, c, messageBy(by, "add-identifier"), putWrites(tc.w))
			_, err := checkBoth(t, c.Doc(), ch)
			if tc.want == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tc.want)
			if errors.Is(tc.want, record.ErrInvalid) {
				require.True(t, strings.Contains(err.Error(), tc.w.Field), "the error %q names the field", err)
			}
		})
	}
}
