package record_test

import (
	"encoding/json"
	"flag"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/record"
)

// TestMain runs the property tests with at least 200 cases unless the
// caller chose a number (-rapid.checks or RAPID_CHECKS).
func TestMain(m *testing.M) {
	flag.Parse()
	chosen := false
	flag.Visit(func(f *flag.Flag) { chosen = chosen || f.Name == "rapid.checks" })
	if _, ok := os.LookupEnv("RAPID_CHECKS"); !ok && !chosen && flag.Lookup("rapid.checks") != nil {
		if err := flag.Set("rapid.checks", "200"); err != nil {
			panic(err)
		}
	}
	os.Exit(m.Run())
}

// tb is what the helpers need of a test: *testing.T, *testing.B and
// *rapid.T all qualify.
type tb interface {
	Helper()
	Errorf(format string, args ...any)
	FailNow()
}

var (
	t0 = time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

	nurse    = record.Author{UserID: "u-amina", Name: "Amina Okafor", Role: record.RoleNurse, Device: "tablet-1"}
	doctor   = record.Author{UserID: "u-baraka", Name: "Dr Baraka", Role: record.RoleClinician, Device: "laptop-2"}
	labTech  = record.Author{UserID: "u-chege", Name: "Chege", Role: record.RoleLabTechnician, Device: "lab-pc"}
	chw      = record.Author{UserID: "u-dalia", Name: "Dalia", Role: record.RoleCommunityHealthWorker, Device: "phone-7"}
	registry = record.Author{UserID: "u-esi", Role: record.RoleRegistrationClerk}
	admin    = record.Author{UserID: "u-femi", Name: "Femi", Role: record.RoleAdministrator, Device: "office-pc"}
	// officer and locum are clinicians on devices of their own, for
	// scenarios with several devices changing sections (diagnoses) that
	// only clinicians may change.
	officer = record.Author{UserID: "u-gathoni", Name: "Clinical Officer Gathoni", Role: record.RoleClinician, Device: "tablet-2"}
	locum   = record.Author{UserID: "u-hamisi", Name: "Dr Hamisi", Role: record.RoleClinician, Device: "laptop-3"}

	// staff is everyone above, in the order staffFor prefers them.
	staff = []record.Author{nurse, doctor, chw, officer, locum, labTech, registry, admin}
)

// permittedFor reports whether by's role may make op on c at time at.
func permittedFor(t tb, c *record.Chart, by record.Author, at time.Time, op record.Op) bool {
	t.Helper()
	ss, err := c.Sections(at, op)
	require.NoError(t, err, "sections of %T", op)
	for _, s := range ss {
		if !record.Permitted(by.Role, s) {
			return false
		}
	}
	return true
}

// staffFor returns n users on n devices whose roles may make op on c: the
// nurse, the doctor and the community health worker where the permission
// matrix allows, other clinicians otherwise.
func staffFor(t tb, c *record.Chart, op record.Op, n int) []record.Author {
	t.Helper()
	var out []record.Author
	for _, a := range staff {
		if len(out) < n && permittedFor(t, c, a, t0, op) {
			out = append(out, a)
		}
	}
	require.Len(t, out, n, "too few test users may make %T", op)
	return out
}

// as returns by if by's role may make op on c, and otherwise the first
// of staff who may: the scenario keeps its devices and changes hands only
// where the permission matrix requires it.
func as(t tb, c *record.Chart, by record.Author, op record.Op) record.Author {
	t.Helper()
	if permittedFor(t, c, by, t0, op) {
		return by
	}
	return staffFor(t, c, op, 1)[0]
}

func baseRegister() record.Register {
	return record.Register{
		GivenName: "Wanjiru", FamilyName: "Mwangi", Sex: "female", EstimatedBirthYear: 1988,
		Village: "Kamuga", Phone: "+254 712 345678", HomeClinic: "kamuga-dispensary",
	}
}

// newChart registers a patient in a fresh chart.
func newChart(t tb) *record.Chart {
	t.Helper()
	c, res, err := record.New(uuid.NewString(), crdt.NewActorID(), registry, t0, baseRegister())
	require.NoError(t, err, "registering a valid patient")
	require.Equal(t, c.ID(), res.EntryID)
	return c
}

// do applies op and fails the test if it is refused.
func do(t tb, c *record.Chart, by record.Author, at time.Time, op record.Op) string {
	t.Helper()
	res, err := c.Do(by, at, op)
	require.NoError(t, err, "operation %T %+v was refused", op, op)
	require.NotEmpty(t, res.EntryID)
	require.Equal(t, crdt.Heads{res.Change.Hash}, c.Doc().Heads(), "the change is the chart's only head")
	return res.EntryID
}

func view(t tb, c *record.Chart) record.View {
	t.Helper()
	v, err := c.View()
	require.NoError(t, err, "viewing the chart")
	return v
}

// fork copies a chart to a new device, as a replica that synced it would.
func fork(t tb, c *record.Chart) *record.Chart {
	t.Helper()
	d, err := c.Doc().Fork(nil, crdt.NewActorID())
	require.NoError(t, err)
	f, err := record.Open(d)
	require.NoError(t, err)
	return f
}

// merge gives dst every change of src.
func merge(t tb, dst, src *record.Chart) {
	t.Helper()
	_, err := dst.Doc().Merge(src.Doc())
	require.NoError(t, err, "merging charts")
}

// mergeAll merges every chart into every other, both ways.
func mergeAll(t tb, cs ...*record.Chart) {
	t.Helper()
	for i := range cs {
		for j := range cs {
			if i != j {
				merge(t, cs[i], cs[j])
			}
		}
	}
}

// converged checks that charts agree exactly (heads, View, View JSON) and
// returns the common view.
func converged(t tb, cs ...*record.Chart) record.View {
	t.Helper()
	first := view(t, cs[0])
	js, err := json.Marshal(first)
	require.NoError(t, err)
	for i, c := range cs[1:] {
		require.Equal(t, cs[0].Doc().Heads(), c.Doc().Heads(), "replica %d has other heads than replica 0", i+1)
		v := view(t, c)
		require.Equal(t, first, v, "replica %d shows another chart than replica 0", i+1)
		js2, err := json.Marshal(v)
		require.NoError(t, err)
		require.Equal(t, string(js), string(js2), "replica %d encodes its view differently", i+1)
	}
	return first
}

// unchanged runs fn, which must be refused, and checks that the chart is
// exactly as it was.
func unchanged(t tb, c *record.Chart, fn func() error) error {
	t.Helper()
	heads := c.Doc().Heads()
	before := view(t, c)
	changes := changeSet(t, c.Doc())
	pending := len(c.Doc().Pending())
	err := fn()
	require.Error(t, err, "the bad operation was accepted")
	require.Equal(t, heads, c.Doc().Heads(), "a refused operation changed the chart's heads")
	require.Equal(t, before, view(t, c), "a refused operation changed the chart's view")
	// Not Save's bytes: a rolled-back edit may re-encode the same
	// changes differently.
	require.Equal(t, changes, changeSet(t, c.Doc()), "a refused operation changed the chart's changes")
	require.Equal(t, pending, len(c.Doc().Pending()), "a refused operation left a held change")
	return err
}

// changeSet returns the hashes of every change a document holds.
func changeSet(t tb, d *crdt.Doc) map[crdt.Hash]bool {
	t.Helper()
	chs, err := d.Changes(nil)
	require.NoError(t, err)
	out := make(map[crdt.Hash]bool, len(chs))
	for _, c := range chs {
		out[c.Hash] = true
	}
	return out
}

// find helpers return the entry of a view with the given ID.

func findRx(v record.View, id string) (record.Prescription, bool) {
	for _, p := range v.Prescriptions {
		if p.ID == id {
			return p, true
		}
	}
	return record.Prescription{}, false
}

func findAllergy(v record.View, id string) (record.Allergy, bool) {
	for _, a := range v.Allergies {
		if a.ID == id {
			return a, true
		}
	}
	return record.Allergy{}, false
}

func findDiagnosis(v record.View, id string) (record.Diagnosis, bool) {
	for _, d := range v.Diagnoses {
		if d.ID == id {
			return d, true
		}
	}
	return record.Diagnosis{}, false
}

func findLab(v record.View, id string) (record.LabResult, bool) {
	for _, l := range v.LabResults {
		if l.ID == id {
			return l, true
		}
	}
	return record.LabResult{}, false
}

func findEncounter(v record.View, id string) (record.Encounter, bool) {
	for _, e := range v.Encounters {
		if e.ID == id {
			return e, true
		}
	}
	return record.Encounter{}, false
}

func findError(v record.View, id string) (record.ErrorEntry, bool) {
	for _, e := range v.EnteredInError {
		if e.ID == id {
			return e, true
		}
	}
	return record.ErrorEntry{}, false
}

func findConflict(v record.View, entryID, field string) (record.Conflict, bool) {
	for _, c := range v.Conflicts {
		if c.EntryID == entryID && c.Field == field {
			return c, true
		}
	}
	return record.Conflict{}, false
}

func alertsOf(v record.View, kind string) []record.Alert {
	var out []record.Alert
	for _, a := range v.Alerts {
		if a.Kind == kind {
			out = append(out, a)
		}
	}
	return out
}

// listed reports the IDs of every entry a view shows, in a list or as
// entered in error.
func listed(v record.View) map[string]bool {
	ids := map[string]bool{}
	for _, a := range v.Allergies {
		ids[a.ID] = true
	}
	for _, d := range v.Diagnoses {
		ids[d.ID] = true
	}
	for _, p := range v.Prescriptions {
		ids[p.ID] = true
	}
	for _, l := range v.LabResults {
		ids[l.ID] = true
	}
	for _, e := range v.Encounters {
		ids[e.ID] = true
	}
	for _, i := range v.Patient.Identifiers {
		ids[i.ID] = true
	}
	for _, e := range v.EnteredInError {
		ids[e.ID] = true
	}
	return ids
}

func historyOps(v record.View) []string {
	out := make([]string, len(v.History))
	for i, h := range v.History {
		out[i] = h.Op
	}
	return out
}

// staffIn returns n users on n devices whose roles may change section s,
// preferring staff's order.
func staffIn(t tb, s record.Section, n int) []record.Author {
	t.Helper()
	var out []record.Author
	for _, a := range staff {
		if len(out) < n && record.Permitted(a.Role, s) {
			out = append(out, a)
		}
	}
	require.Len(t, out, n, "too few test users may change %s", s)
	return out
}
