package replica_test

import (
	"context"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
)

var admin = record.Author{UserID: "u-femi", Name: "Femi", Role: record.RoleAdministrator, Device: "office-pc"}

func syncEvery(t T, rs ...*replica.Replica) {
	t.Helper()
	for range 2 {
		for i := range rs {
			for j := i + 1; j < len(rs); j++ {
				_, err := replica.SyncPair(context.Background(), rs[i], rs[j])
				require.NoError(t, err, "sync replicas %d and %d", i, j)
			}
		}
	}
}

func merge(t T, r *replica.Replica, absorbed, survivor string) {
	t.Helper()
	require.NoError(t, r.Merge(context.Background(), absorbed, survivor, doctor, "same patient"), "merge %s into %s", absorbed, survivor)
}

// twoCharts registers A (with a prescription) and B (with an allergy) on
// one replica and returns them with the entries.
func twoCharts(t *testing.T, r *replica.Replica) (a, b, rx, al string) {
	a = register(t, r, "Wanjiru", "Mwangi", "Kamuga")
	b = register(t, r, "Wanjeru", "Mwangi", "Kamuga")
	rx = edit(t, r, a, prescribe("Amoxicillin", 500)).EntryID
	al = edit(t, r, b, record.AddAllergy{Substance: "Penicillin", Severity: "severe"}).EntryID
	return a, b, rx, al
}

func alertKinds(v record.View) []string {
	var out []string
	for _, a := range v.Alerts {
		out = append(out, a.Kind)
	}
	return out
}

func TestMergeRules(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name string
		run  func(t *testing.T)
	}{
		{"merge: the survivor shows both charts' entries, the absorbed chart forwards", func(t *testing.T) {
			r, _ := newMem(t, replica.Config{})
			a, b, rx, al := twoCharts(t, r)
			merge(t, r, b, a)
			for _, id := range []string{a, b} {
				v := view(t, r, id)
				assert.Equal(t, a, v.ChartID, "reading chart %s follows the pointer to the survivor", id)
				assert.ElementsMatch(t, []string{rx, al}, v.EntryIDs(false), "the survivor shows both charts' entries")
				assert.Contains(t, alertKinds(v), record.AlertAllergyDrug, "an allergy of one chart meets a prescription of the other")
				require.Len(t, v.Merges, 1)
				assert.Equal(t, record.Merge{ID: v.Merges[0].ID, ChartID: b, Reason: "same patient", Status: record.StatusActive, Absorbed: true,
					Recorded: v.Merges[0].Recorded}, v.Merges[0])
			}
			own, err := r.OwnChart(ctx, b)
			require.NoError(t, err)
			assert.Equal(t, a, own.MergedInto, "the absorbed chart's own document forwards")
			assert.Equal(t, []string{al}, own.EntryIDs(false), "the absorbed chart's own history stays readable")
			s, err := r.Survivor(ctx, b)
			require.NoError(t, err)
			assert.Equal(t, a, s)
		}},
		{"unmerge restores two charts", func(t *testing.T) {
			r, _ := newMem(t, replica.Config{})
			a, b, rx, al := twoCharts(t, r)
			merge(t, r, b, a)
			require.NoError(t, r.Unmerge(ctx, b, doctor, "different women"))
			va, vb := view(t, r, a), view(t, r, b)
			assert.Equal(t, []string{rx}, va.EntryIDs(false))
			assert.Equal(t, b, vb.ChartID)
			assert.Equal(t, []string{al}, vb.EntryIDs(false))
			require.Len(t, va.Merges, 1)
			assert.Equal(t, record.StatusUnmerged, va.Merges[0].Status)
			assert.ErrorIs(t, r.Unmerge(ctx, b, doctor, "again"), replica.ErrNotMerged)
		}},
		{"edits through the absorbed chart: its entries in its document, new ones in the survivor", func(t *testing.T) {
			r, _ := newMem(t, replica.Config{})
			a, b, _, al := twoCharts(t, r)
			merge(t, r, b, a)
			edit(t, r, b, record.UpdateAllergy{AllergyID: al, Severity: record.Ptr("life-threatening")})
			own, err := r.OwnChart(ctx, b)
			require.NoError(t, err)
			assert.Equal(t, "life-threatening", own.Allergies[0].Severity, "the edit of B's entry is in B's document")
			enc := edit(t, r, b, record.AddEncounter{Complaint: "cough"}).EntryID
			ownA, err := r.OwnChart(ctx, a)
			require.NoError(t, err)
			assert.Contains(t, ownA.EntryIDs(false), enc, "a new entry goes to the survivor")
		}},
		{"an edit made offline to the absorbed chart lands in the survivor's view", func(t *testing.T) {
			r1, _ := newMem(t, replica.Config{})
			r2, _ := newMem(t, replica.Config{})
			a, b, _, _ := twoCharts(t, r1)
			syncEvery(t, r1, r2)
			merge(t, r1, b, a)
			lab := edit(t, r2, b, record.RecordLabResult{Test: "Haemoglobin", Value: record.Ptr(11.0), Unit: "g/dL", SpecimenAt: frozenAt}).EntryID
			syncEvery(t, r1, r2)
			for i, r := range []*replica.Replica{r1, r2} {
				v := view(t, r, a)
				assert.Contains(t, v.EntryIDs(false), lab, "replica %d shows the offline edit in the survivor", i+1)
				assert.Equal(t, a, view(t, r, b).ChartID)
			}
		}},
		{"B into A against A into B: one survivor, the smaller ID, and a merge conflict", func(t *testing.T) {
			r1, _ := newMem(t, replica.Config{})
			r2, _ := newMem(t, replica.Config{})
			a, b, rx, al := twoCharts(t, r1)
			syncEvery(t, r1, r2)
			merge(t, r1, b, a)
			merge(t, r2, a, b)
			syncEvery(t, r1, r2)
			want := min(a, b)
			for i, r := range []*replica.Replica{r1, r2} {
				for _, id := range []string{a, b} {
					v := view(t, r, id)
					assert.Equal(t, want, v.ChartID, "replica %d: chart %s resolves to the smaller ID", i+1, id)
					assert.ElementsMatch(t, []string{rx, al}, v.EntryIDs(false))
					assert.Contains(t, alertKinds(v), record.AlertMergeConflict, "the clinician is shown the merge conflict")
				}
			}
			// Settled by merging again: the survivor chosen is kept.
			other := max(a, b)
			require.NoError(t, r1.Merge(ctx, want, other, doctor, "keep the other"))
			syncEvery(t, r1, r2)
			v := view(t, r2, want)
			assert.Equal(t, other, v.ChartID)
			assert.NotContains(t, alertKinds(v), record.AlertMergeConflict, "the merge conflict is settled")
			assert.ElementsMatch(t, []string{rx, al}, v.EntryIDs(false))
		}},
		{"B into A against B into C: one survivor everywhere and the conflict shown", func(t *testing.T) {
			r1, _ := newMem(t, replica.Config{})
			r2, _ := newMem(t, replica.Config{})
			a, b, _, al := twoCharts(t, r1)
			c := register(t, r1, "Wanjiru", "Mwangi", "Lwanda")
			syncEvery(t, r1, r2)
			merge(t, r1, b, a)
			merge(t, r2, b, c)
			syncEvery(t, r1, r2)
			s1, err := r1.Survivor(ctx, b)
			require.NoError(t, err)
			s2, err := r2.Survivor(ctx, b)
			require.NoError(t, err)
			require.Equal(t, s1, s2, "every replica resolves the same survivor")
			loser := map[string]string{a: c, c: a}[s1]
			v, l := view(t, r2, s1), view(t, r2, loser)
			assert.Contains(t, v.EntryIDs(false), al)
			assert.NotContains(t, l.EntryIDs(false), al, "the entry is reachable from one surviving chart only")
			assert.Contains(t, alertKinds(v), record.AlertMergeConflict)
			assert.Contains(t, alertKinds(l), record.AlertMergeConflict)
			assert.True(t, slices.ContainsFunc(v.Conflicts, func(c record.Conflict) bool { return c.EntryID == b && c.Field == "merged_into" }),
				"the pointer's conflict is listed")
			// Settled by merging B again into the loser.
			require.NoError(t, r2.Merge(ctx, b, loser, doctor, "settle"))
			syncEvery(t, r1, r2)
			assert.Contains(t, view(t, r1, loser).EntryIDs(false), al)
			assert.NotContains(t, alertKinds(view(t, r1, loser)), record.AlertMergeConflict)
			assert.NotContains(t, alertKinds(view(t, r1, s1)), record.AlertMergeConflict)
		}},
		{"a merge across two clinics' scopes makes the survivor visible to both", func(t *testing.T) {
			cloud, _ := newMem(t, replica.Config{})
			north, _ := newMem(t, replica.Config{Clinic: "north"})
			south, _ := newMem(t, replica.Config{Clinic: "south"})
			a := registerAt(t, north, "Amina", "north")
			b := registerAt(t, south, "Amina", "south")
			al := edit(t, south, b, record.AddAllergy{Substance: "Sulfa", Severity: "mild"}).EntryID
			scopedSync(t, cloud, north, "north")
			scopedSync(t, cloud, south, "south")
			_, err := north.Chart(ctx, b)
			require.ErrorIs(t, err, replica.ErrNotFound, "before the merge north does not hold south's chart")
			require.NoError(t, cloud.Merge(ctx, b, a, admin, "same woman"))
			scopedSync(t, cloud, north, "north")
			scopedSync(t, cloud, south, "south")
			for name, r := range map[string]*replica.Replica{"north": north, "south": south} {
				v := view(t, r, b)
				assert.Equal(t, a, v.ChartID, "%s follows the pointer", name)
				assert.Contains(t, v.EntryIDs(false), al, "%s sees the absorbed chart's entries", name)
			}
		}},
		{"a nurse may not merge", func(t *testing.T) {
			r, st := newMem(t, replica.Config{})
			a, b, _, _ := twoCharts(t, r)
			before := dumpStore(t, st)
			err := r.Merge(ctx, b, a, nurse, "same")
			require.ErrorIs(t, err, record.ErrForbidden)
			var fe *record.ForbiddenError
			require.ErrorAs(t, err, &fe)
			assert.Equal(t, record.SectionMerges, fe.Section)
			assert.Equal(t, before, dumpStore(t, st), "nothing stored")
		}},
		{"a chart merged into itself or into a forwarded chart is refused", func(t *testing.T) {
			r, st := newMem(t, replica.Config{})
			a, b, _, _ := twoCharts(t, r)
			c := register(t, r, "Wanjiru", "Mwangi", "Lwanda")
			require.ErrorIs(t, r.Merge(ctx, a, a, doctor, ""), replica.ErrMergeIntoItself)
			merge(t, r, b, a)
			before := dumpStore(t, st)
			require.ErrorIs(t, r.Merge(ctx, c, b, doctor, ""), replica.ErrForwarded, "B forwards to A")
			require.ErrorIs(t, r.Merge(ctx, b, c, doctor, ""), replica.ErrForwarded, "B is merged into A already")
			require.ErrorIs(t, r.Merge(ctx, b, a, doctor, ""), replica.ErrAlreadyMerged)
			_, err := r.Edit(ctx, a, doctor, record.Absorb{ChartID: c})
			require.ErrorIs(t, err, replica.ErrMergeOp)
			assert.Equal(t, before, dumpStore(t, st), "nothing stored")
		}},
		{"search and duplicates find the survivor", func(t *testing.T) {
			r, _ := newMem(t, replica.Config{})
			a, b, _, _ := twoCharts(t, r)
			dups, err := r.DuplicatesOf(ctx, a)
			require.NoError(t, err)
			require.NotEmpty(t, dups)
			assert.Equal(t, b, dups[0].ChartID, "the duplicate is detected")
			merge(t, r, b, a)
			found, err := r.Search(ctx, "Wanjeru Mwangi", 0)
			require.NoError(t, err)
			var ids []string
			for _, f := range found {
				ids = append(ids, f.ID)
			}
			assert.Equal(t, []string{a}, ids, "the absorbed chart is found as its survivor, once")
			dups, err = r.DuplicatesOf(ctx, a)
			require.NoError(t, err)
			assert.Empty(t, dups, "a merged chart is no longer a duplicate candidate")
			dups, err = r.DuplicatesOf(ctx, b)
			require.NoError(t, err)
			assert.Empty(t, dups)
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, tc.run)
	}
}
