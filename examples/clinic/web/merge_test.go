package web

import (
	"context"
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
)

// twoDuplicates registers the same woman twice, spelt differently, each
// with an entry of her own, and returns the charts.
func twoDuplicates(f *fixture) (a, b string) {
	a = f.register(record.Register{GivenName: "Wanjiru", FamilyName: "Mwangi", EstimatedBirthYear: 1988, Village: "Kamuga"})
	f.edit(a, record.Prescribe{Drug: "Amoxicillin", Dose: 500, DoseUnit: "mg", Route: "oral", Frequency: "BD"})
	b = f.register(record.Register{GivenName: "Wanjiro", FamilyName: "Mwangi", EstimatedBirthYear: 1988, Village: "Kamuga"})
	f.edit(b, record.AddAllergy{Substance: "Penicillin", Severity: "severe"})
	return a, b
}

func (f *fixture) survivor(id string) string {
	f.t.Helper()
	s, err := f.r.Survivor(context.Background(), id)
	require.NoError(f.t, err)
	return s
}

// TestMergeOnlyByPermittedRoles: every role sees a chart's possible
// duplicates; only clinicians and administrators (the permission matrix)
// are offered a merge, get its confirmation page, and may post it; any
// other role's post, made by hand, is refused with 403 and changes
// nothing, as is a post without the session's CSRF token.
func TestMergeOnlyByPermittedRoles(t *testing.T) {
	for _, role := range record.Roles() {
		t.Run(string(role), func(t *testing.T) {
			f := newFixture(t)
			a, b := twoDuplicates(f)
			may := record.Permitted(role, record.SectionMerges)
			c := f.client()
			c.login(role)
			code, body := c.get("/chart/" + a)
			require.Equal(t, http.StatusOK, code, body)
			assert.Contains(t, body, "Possible duplicates", "every role is shown the possible duplicates")
			assert.Contains(t, body, `href="/chart/`+b+`"`, "with a way to the other chart")
			mergeLink := `href="/chart/` + b + `/merge?into=` + a + `"`
			if may {
				assert.Contains(t, body, mergeLink, "%s is offered the merge", role)
			} else {
				assert.NotContains(t, body, mergeLink, "%s is not offered the merge", role)
			}
			code, _ = c.get("/chart/" + b + "/merge?into=" + a)
			if may {
				assert.Equal(t, http.StatusOK, code)
			} else {
				assert.Equal(t, http.StatusForbidden, code)
			}
			_, _ = c.get("/chart/" + a) // a page of this session's, for its CSRF token
			code, body, _ = c.post("/chart/"+b+"/merge", url.Values{"into": {a}, "reason": {"same woman"}, "csrf": {"forged"}})
			assert.Equal(t, http.StatusForbidden, code, "a post without the session's token is refused: %s", body)
			assert.Equal(t, b, f.survivor(b), "nothing merged by a forged post")
			code, body, _ = c.post("/chart/"+b+"/merge", url.Values{"into": {a}, "reason": {"same woman"}})
			if may {
				assert.Equal(t, http.StatusSeeOther, code, body)
				assert.Equal(t, a, f.survivor(b), "%s merged the chart", role)
			} else {
				assert.Equal(t, http.StatusForbidden, code, "%s's post made by hand is refused: %s", role, body)
				assert.Equal(t, b, f.survivor(b), "a refused merge changes nothing")
			}
		})
	}
}

// TestMergeAndUnmerge: a clinician merges a duplicate after a
// confirmation page showing both charts side by side; a merge without a
// reason is refused next to the field; the survivor's page then shows
// the absorbed chart and both charts' entries; the merged chart's page
// says where it went and offers an unmerge, which restores two charts.
func TestMergeAndUnmerge(t *testing.T) {
	f := newFixture(t)
	a, b := twoDuplicates(f)
	c := f.client()
	c.login(record.RoleClinician)

	code, body := c.get("/chart/" + b + "/merge?into=" + a)
	require.Equal(t, http.StatusOK, code, body)
	assert.Contains(t, body, "Merge duplicate charts")
	assert.Contains(t, body, "Wanjiro Mwangi", "the chart merged away is shown")
	assert.Contains(t, body, "Wanjiru Mwangi", "the chart kept is shown")
	assert.Contains(t, body, "Penicillin", "with its entries")
	assert.Contains(t, body, "Amoxicillin")
	assert.Contains(t, body, `href="/chart/`+a+`/merge?into=`+b+`"`, "a way to keep the other chart instead")

	code, body, _ = c.post("/chart/"+b+"/merge", url.Values{"into": {a}})
	require.Equal(t, http.StatusUnprocessableEntity, code)
	assert.Contains(t, body, "Enter the reason")
	assert.Equal(t, b, f.survivor(b), "nothing merged without a reason")

	code, body, resp := c.post("/chart/"+b+"/merge", url.Values{"into": {a}, "reason": {"same woman, registered twice"}})
	require.Equal(t, http.StatusSeeOther, code, body)
	assert.Equal(t, "/chart/"+a, resp.Header.Get("Location"))
	assert.Equal(t, a, f.survivor(b))

	_, body = c.get("/chart/" + a)
	assert.Contains(t, body, "Merged charts")
	assert.Contains(t, body, "Wanjiro Mwangi", "the survivor names the chart it absorbed")
	assert.Contains(t, body, "same woman, registered twice")
	assert.Contains(t, body, "Penicillin", "the survivor shows the absorbed chart's entries")
	assert.Contains(t, body, `href="/chart/`+b+`/unmerge"`)
	assert.NotContains(t, body, `/chart/`+b+`/merge?into=`+a, "a chart merged already is not offered again")

	_, body = c.get("/chart/" + b)
	assert.Contains(t, body, "was merged into this chart", "the merged chart's page says where it went")
	assert.Contains(t, body, `href="/chart/`+b+`/unmerge"`, "and offers the unmerge")

	code, body = c.get("/chart/" + b + "/unmerge")
	require.Equal(t, http.StatusOK, code, body)
	code, body, resp = c.post("/chart/"+b+"/unmerge", url.Values{"reason": {"two sisters"}})
	require.Equal(t, http.StatusSeeOther, code, body)
	assert.Equal(t, "/chart/"+b, resp.Header.Get("Location"))
	assert.Equal(t, b, f.survivor(b), "two charts again")
	assert.NotContains(t, f.chart(a).EntryIDs(false), f.chart(b).Allergies[0].ID)
	code, _, _ = c.post("/chart/"+b+"/unmerge", url.Values{"reason": {"again"}})
	assert.Equal(t, http.StatusConflict, code, "a chart not merged cannot be unmerged")

	nurse := f.client()
	nurse.login(record.RoleNurse)
	require.NoError(t, f.r.Merge(context.Background(), b, a, author(record.RoleClinician), "same woman"))
	code, _, _ = nurse.post("/chart/"+b+"/unmerge", url.Values{"reason": {"no"}})
	assert.Equal(t, http.StatusForbidden, code, "a nurse may not unmerge")
	assert.Equal(t, a, f.survivor(b))
}

// TestMergeConflictShownAndSettled: a chart merged into two charts at
// once on two devices shows a merge-conflict alert and a conflict with
// each chart it was merged into; a nurse may not settle it, a clinician
// settles it by choosing the chart, and the alert is gone from both.
func TestMergeConflictShownAndSettled(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	a, b := twoDuplicates(f)
	cc := f.register(record.Register{GivenName: "Wanjiru", FamilyName: "Mwangi", EstimatedBirthYear: 1989, Village: "Kamuga"})

	other, err := replica.Open(ctx, t.TempDir()+"/other.db", replica.Config{Clinic: testClinic})
	require.NoError(t, err)
	defer other.Close()
	exchange := func(from, to *replica.Replica) {
		out, err := from.MakeBundle(ctx, to.ID())
		require.NoError(t, err)
		_, err = to.Receive(ctx, out.Data)
		require.NoError(t, err)
	}
	exchange(f.r, other)
	laptop := record.Author{UserID: "u-mutua", Name: "Dr Mutua", Role: record.RoleClinician, Device: "kamuga-laptop"}
	require.NoError(t, other.Merge(ctx, b, cc, laptop, "same woman"))
	require.NoError(t, f.r.Merge(ctx, b, a, author(record.RoleClinician), "same woman"))
	exchange(other, f.r)

	shown := f.survivor(b)
	require.Contains(t, []string{a, cc}, shown)
	hasMergeAlert := func(id string) bool {
		for _, al := range f.chart(id).Alerts {
			if al.Kind == record.AlertMergeConflict {
				return true
			}
		}
		return false
	}
	require.True(t, hasMergeAlert(shown), "the library reports the conflict")

	nurse := f.client()
	nurse.login(record.RoleNurse)
	code, body := nurse.get("/chart/" + shown)
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, "merged into several charts at once", "the merge conflict is shown")
	assert.Contains(t, body, "Conflicts to settle")
	assert.NotContains(t, body, `name="field" value="merged_into"`, "a nurse may not settle a merge")
	code, _, _ = nurse.post("/chart/"+shown+"/settle", url.Values{"entry": {b}, "field": {"merged_into"}, "value": {a}})
	assert.Equal(t, http.StatusForbidden, code)

	doc := f.client()
	doc.login(record.RoleClinician)
	_, body = doc.get("/chart/" + shown)
	assert.Contains(t, body, `name="field" value="merged_into"`, "a clinician may settle it")
	assert.Contains(t, body, `value="-"`, "or unmerge")
	code, body, _ = doc.post("/chart/"+shown+"/settle", url.Values{"entry": {b}, "field": {"merged_into"}, "value": {a}})
	require.Equal(t, http.StatusSeeOther, code, body)
	assert.Equal(t, a, f.survivor(b), "settled into the chart chosen")
	assert.False(t, hasMergeAlert(a), "no merge conflict left on the survivor")
	assert.False(t, hasMergeAlert(cc), "nor on the chart released")
	_, body = doc.get("/chart/" + a)
	assert.NotContains(t, body, "Conflicts to settle")
}
