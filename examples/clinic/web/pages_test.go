package web

import (
	"context"
	"html"
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
)

// validForms are a valid submission of every chart form, and what the
// chart page shows once it is saved.
var validForms = []struct {
	form  string
	entry string // the entry it acts on: a key of chartWithEntries' map
	in    url.Values
	shows []string
}{
	{"allergy", "", url.Values{"substance": {"Penicillin"}, "severity": {"severe"}, "reaction": {"rash"}}, []string{"Penicillin", "severe", "rash"}},
	{"diagnosis", "", url.Values{"text": {"Malaria"}, "code": {"b54"}, "clinical": {"active"}, "verification": {"confirmed"}}, []string{"Malaria", "(B54)", "active, confirmed"}},
	{"prescribe", "", url.Values{"drug": {"Panadol"}, "dose": {"500"}, "unit": {"mg"}, "route": {"oral"}, "frequency": {"tds"}, "duration_days": {"5"}, "confirm": {"1"}},
		[]string{"Panadol", "ATC N02BE01", "500 mg oral TDS for 5 days"}},
	{"revise-dose", "prescription", url.Values{"dose": {"250"}, "reason": {"renal"}}, []string{"250 mg oral BD"}},
	{"discontinue", "prescription", url.Values{"reason": {"course finished"}}, []string{"stopped", "course finished"}},
	{"lab", "", url.Values{"test": {"Haemoglobin"}, "loinc": {"718-7"}, "value": {"6.1"}, "unit": {"g/dL"}, "ref_low": {"12"}, "ref_high": {"16"}, "critical_low": {"7"}},
		[]string{"Haemoglobin", "6.1 g/dL", `<span class="flag critical">CRITICAL</span>`}},
	{"lab", "", url.Values{"test": {"Malaria RDT"}, "text": {"positive"}, "ref_text": {"negative"}, "abnormal_text": {"positive"}},
		[]string{"Malaria RDT", "positive", `<span class="flag abnormal">ABNORMAL</span>`}},
	{"encounter", "", url.Values{"complaint": {"Fever for three days"}, "date": {"2026-03-02"}, "bp": {"120/80"}, "temperature": {"38.5"}, "note": {"Looks unwell"}},
		[]string{"Fever for three days", "BP 120/80", "38.5 °C", "Looks unwell"}},
	{"note", "encounter", url.Values{"text": {"Better after paracetamol"}}, []string{"Better after paracetamol"}},
	{"demographics", "", url.Values{"given_name": {"Wanjiru"}, "family_name": {"Mwangi"}, "sex": {"female"}, "estimated_birth_year": {"1988"}, "village": {"Gatundu"}, "phone": {"+254 712 345678"}},
		[]string{"Gatundu", "+254 712 345678"}},
	{"update-allergy", record.KindAllergy, url.Values{"severity": {"severe"}, "reaction": {"wheeze"}, "status": {"active"}, "reason": {"reacted again"}},
		[]string{"Latex</strong> · severe · wheeze · active"}},
	{"no-known-allergies", "", url.Values{}, []string{"No known allergies."}},
	{"diagnosis-status", record.KindDiagnosis, url.Values{"clinical": {"resolved"}, "verification": {"confirmed"}}, []string{"Hypertension</strong> (I10) · resolved, confirmed"}},
	{"hold", record.KindPrescription, url.Values{"reason": {"vomiting"}}, []string{`<span class="status">on-hold</span> (vomiting)`}},
	{"resume", "held", url.Values{"reason": {"eating again"}}, []string{`Metformin</strong>`, `<span class="status">active</span> (eating again)`}},
	{"complete", record.KindPrescription, url.Values{}, []string{`<span class="status">completed</span>`}},
	{"finalize-lab", record.KindLabResult, url.Values{}, []string{"5.4 mmol/L · final"}},
	{"correct-lab", record.KindLabResult, url.Values{"value": {"7,1"}, "reason": {"wrong sample"}}, []string{"7.1 mmol/L", "corrected"}},
	{"add-identifier", "", url.Values{"system": {"national-id"}, "value": {"2345 678"}}, []string{"national-id <strong>2345678</strong> · active"}},
	{"correct-identifier", record.KindIdentifier, url.Values{"value": {"K-124"}, "reason": {"typing slip"}}, []string{"clinic <strong>K124</strong> · active"}},
	{"remove-identifier", record.KindIdentifier, url.Values{"reason": {"new card"}}, []string{"clinic <strong>K123</strong> · inactive"}},
	{"refer", "", url.Values{"clinic": {"nakuru-hc"}, "reason": {"surgery"}}, []string{"nakuru-hc · surgery · active"}},
	{"end-referral", record.KindReferral, url.Values{"reason": {"seen"}}, []string{"kisumu-hc · eye review · ended (seen)"}},
	{"allergy-error", record.KindAllergy, url.Values{"reason": {"wrong patient"}}, []string{"allergy Latex (wrong patient)"}},
	{"diagnosis-error", record.KindDiagnosis, url.Values{"reason": {"wrong patient"}}, []string{"diagnosis Hypertension", "(wrong patient)"}},
	{"prescription-error", record.KindPrescription, url.Values{"reason": {"wrong patient"}}, []string{"prescription Amoxicillin", "(wrong patient)"}},
	{"lab-error", record.KindLabResult, url.Values{"reason": {"wrong patient"}}, []string{"lab-result Blood glucose", "(wrong patient)"}},
	{"visit-error", record.KindEncounter, url.Values{"reason": {"wrong patient"}}, []string{"encounter", "(wrong patient)"}},
	{"identifier-error", record.KindIdentifier, url.Values{"reason": {"wrong patient"}}, []string{"identifier", "(wrong patient)"}},
}

// chartWithEntries registers a patient with a prescription (amoxicillin
// 500 mg BD), a visit, an inactive allergy to latex, a diagnosis of
// hypertension, a preliminary glucose result, a clinic number K123, a
// referral to kisumu-hc and a prescription on hold (metformin, "held"),
// and returns the chart and the entry IDs by kind.
func chartWithEntries(f *fixture) (string, map[string]string) {
	id := f.register(record.Register{GivenName: "Wanjiru", FamilyName: "Mwangi", EstimatedBirthYear: 1988, Village: "Kamuga"})
	rx := f.edit(id, record.Prescribe{Drug: "Amoxicillin", Dose: 500, DoseUnit: "mg", Route: "oral", Frequency: "BD"})
	enc := f.edit(id, record.AddEncounter{Complaint: "Cough", Date: "2026-03-01", Note: "Chest clear"})
	allergy := f.edit(id, record.AddAllergy{Substance: "Latex", Severity: "mild", Reaction: "itch"})
	f.edit(id, record.UpdateAllergy{AllergyID: allergy, Status: record.Ptr(record.StatusInactive)})
	dx := f.edit(id, record.Diagnose{Text: "Hypertension", Code: "I10"})
	lab := f.edit(id, record.RecordLabResult{Test: "Blood glucose", Value: record.Ptr(5.4), Unit: "mmol/L", Status: record.StatusPreliminary, SpecimenAt: f.clock.now()})
	ident := f.edit(id, record.AddIdentifier{System: record.SystemClinic, Value: "K123"})
	ref := f.edit(id, record.Refer{ToClinic: "kisumu-hc", Reason: "eye review"})
	held := f.edit(id, record.Prescribe{Drug: "Metformin", Dose: 500, DoseUnit: "mg", Route: "oral", Frequency: "BD"})
	f.edit(id, record.PutOnHold{PrescriptionID: held, Reason: "fasting"})
	return id, map[string]string{record.KindPrescription: rx, record.KindEncounter: enc, record.KindAllergy: allergy,
		record.KindDiagnosis: dx, record.KindLabResult: lab, record.KindIdentifier: ident, record.KindReferral: ref, "held": held}
}

func formPath(chart string, form string, entries map[string]string, kind string) string {
	p := "/chart/" + chart + "/" + form
	if kind != "" {
		p += "?entry=" + entries[kind]
	}
	return p
}

// TestClinicalFormsRoundTrip: each form, posted with valid values, is
// saved and the chart page shows what it recorded.
func TestClinicalFormsRoundTrip(t *testing.T) {
	f := newFixture(t)
	c := f.client()
	c.login(record.RoleClinician)
	for _, tc := range validForms {
		t.Run(tc.form, func(t *testing.T) {
			id, entries := chartWithEntries(f)
			path := formPath(id, tc.form, entries, tc.entry)
			code, body := c.get(path)
			require.Equal(t, http.StatusOK, code, body)
			in := url.Values{}
			for k, v := range tc.in {
				in[k] = v
			}
			if tc.entry != "" {
				in.Set("entry", entries[tc.entry])
			}
			code, body, resp := c.post("/chart/"+id+"/"+tc.form, in)
			require.Equal(t, http.StatusSeeOther, code, "POST %s: %s", tc.form, body)
			assert.Equal(t, "/chart/"+id, resp.Header.Get("Location"))
			code, body = c.get("/chart/" + id)
			require.Equal(t, http.StatusOK, code)
			assert.Contains(t, body, "Saved: ", "the chart says what was saved")
			for _, s := range tc.shows {
				assert.Contains(t, html.UnescapeString(body), s, "the chart shows what %s recorded", tc.form)
			}
		})
	}
}

// TestRolesForms: for every role and every form, the form is offered (on
// the chart and by GET) exactly when the permission matrix lets the role
// change its section, and a POST of it by a role that may not is refused
// with 403 and changes nothing.
func TestRolesForms(t *testing.T) {
	f := newFixture(t)
	for _, role := range record.Roles() {
		c := f.client()
		c.login(role)
		for _, tc := range validForms {
			form := formsByName[tc.form]
			t.Run(string(role)+"/"+tc.form, func(t *testing.T) {
				id, entries := chartWithEntries(f)
				may := record.Permitted(role, form.Section)
				_, chart := c.get("/chart/" + id)
				link := `href="` + formPath(id, tc.form, entries, tc.entry)
				if tc.entry != "" {
					link = `href="/chart/` + id + "/" + tc.form + "?entry=" + entries[tc.entry]
				}
				assert.Equal(t, may, contains(chart, link), "the chart offers the %s form to a %s: %v", tc.form, role, may)
				code, _ := c.get(formPath(id, tc.form, entries, tc.entry))
				if may {
					assert.Equal(t, http.StatusOK, code)
				} else {
					assert.Equal(t, http.StatusForbidden, code)
				}
				heads := f.chart(id).Heads
				in := url.Values{}
				for k, v := range tc.in {
					in[k] = v
				}
				if tc.entry != "" {
					in.Set("entry", entries[tc.entry])
				}
				code, body, _ := c.post("/chart/"+id+"/"+tc.form, in)
				if may {
					assert.Equal(t, http.StatusSeeOther, code, body)
					return
				}
				assert.Equal(t, http.StatusForbidden, code)
				assert.Contains(t, body, "may not change a patient")
				assert.Equal(t, heads, f.chart(id).Heads, "a forbidden POST changes nothing")
			})
		}
		t.Run(string(role)+"/register", func(t *testing.T) {
			may := record.Permitted(role, record.SectionDemographics)
			code, _ := c.get("/register")
			code2, _, _ := c.post("/register", url.Values{"given_name": {"Zawadi"}, "family_name": {"Role" + string(role)}, "sex": {"female"}, "estimated_birth_year": {"2001"}})
			if may {
				assert.Equal(t, http.StatusOK, code)
				assert.Equal(t, http.StatusSeeOther, code2)
			} else {
				assert.Equal(t, http.StatusForbidden, code)
				assert.Equal(t, http.StatusForbidden, code2)
			}
		})
	}
}

func contains(s, sub string) bool { return len(sub) > 0 && len(s) >= len(sub) && indexOf(s, sub) >= 0 }

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

// TestReadPolicyApplies: a section the clinic hides from a role is not
// shown to it on the chart, and its forms are refused.
func TestReadPolicyApplies(t *testing.T) {
	f := newFixture(t)
	id, entries := chartWithEntries(f)
	_, err := f.r.SetHidden(context.Background(), testClinic, author(record.RoleAdministrator), record.RoleNurse, []record.Section{record.SectionPrescriptions})
	require.NoError(t, err)
	c := f.client()
	c.login(record.RoleNurse)
	code, body := c.get("/chart/" + id)
	require.Equal(t, http.StatusOK, code)
	assert.NotContains(t, body, "Amoxicillin", "a hidden section is not shown")
	assert.Contains(t, body, "Not shown to your role at this clinic: prescriptions")
	code, _ = c.get(formPath(id, "revise-dose", entries, record.KindPrescription))
	assert.Equal(t, http.StatusForbidden, code)
	code, _, _ = c.post("/chart/"+id+"/prescribe", url.Values{"drug": {"Panadol"}, "dose": {"1"}, "unit": {"g"}, "route": {"oral"}, "frequency": {"OD"}, "confirm": {"1"}})
	assert.Equal(t, http.StatusForbidden, code)
}

// TestSearch: the search box finds patients by several words in any
// order and by spelling variants, and not others.
func TestSearch(t *testing.T) {
	f := newFixture(t)
	wanjiru := f.register(record.Register{GivenName: "Wanjiru", FamilyName: "Mwangi", EstimatedBirthYear: 1988, Village: "Kamuga"})
	otieno := f.register(record.Register{GivenName: "Achieng", FamilyName: "Otieno", EstimatedBirthYear: 1975})
	c := f.client()
	c.login(record.RoleRegistrationClerk)
	for _, q := range []string{"wanjiru mwangi", "Wanjiro", "MWANGI wanjiru", "kamuga"} {
		code, body := c.get("/patients?q=" + url.QueryEscape(q))
		require.Equal(t, http.StatusOK, code)
		assert.Contains(t, body, "/chart/"+wanjiru, "search %q", q)
		assert.NotContains(t, body, "/chart/"+otieno, "search %q", q)
	}
	code, body := c.get("/patients?q=" + url.QueryEscape("wanjiru otieno"))
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, "No patient found")
}

// TestRegisterWarnsOfDuplicates: registering a patient like one already
// registered shows the candidate with its reasons and a link to its
// chart, and saves nothing until the clerk confirms.
func TestRegisterWarnsOfDuplicates(t *testing.T) {
	f := newFixture(t)
	existing := f.register(record.Register{GivenName: "Wanjiru", FamilyName: "Mwangi", EstimatedBirthYear: 1988, Village: "Kamuga"})
	c := f.client()
	c.login(record.RoleRegistrationClerk)
	in := url.Values{"given_name": {"Wanjiro"}, "family_name": {"Mwangi"}, "sex": {"female"}, "estimated_birth_year": {"1988"}, "village": {"Kamuga"}}
	code, body, _ := c.post("/register", in)
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, "This may be a patient already registered")
	assert.Contains(t, body, `href="/chart/`+existing+`"`, "a way to the existing chart")
	assert.Contains(t, body, "Register as a new patient anyway")
	assert.Regexp(t, `(?i)birth|village|name`, body, "the reasons are shown")
	all, err := f.r.Find(context.Background(), "", 0)
	require.NoError(t, err)
	assert.Len(t, all, 1, "nothing is saved before the clerk confirms")

	in.Set("confirm", "1")
	code, body, resp := c.post("/register", in)
	require.Equal(t, http.StatusSeeOther, code, body)
	assert.NotEqual(t, "/chart/"+existing, resp.Header.Get("Location"))
	all, err = f.r.Find(context.Background(), "", 0)
	require.NoError(t, err)
	assert.Len(t, all, 2)
}

// TestValidationMessages: a bad value is shown next to its field in
// plain words naming the field, and nothing is saved.
func TestValidationMessages(t *testing.T) {
	f := newFixture(t)
	id, _ := chartWithEntries(f)
	c := f.client()
	c.login(record.RoleClinician)
	heads := f.chart(id).Heads
	for _, tc := range []struct {
		form string
		in   url.Values
		msg  string
	}{
		{"prescribe", url.Values{"drug": {"Panadol"}, "dose": {"500mg"}, "unit": {"mg"}, "route": {"oral"}, "frequency": {"TDS"}}, "Enter the dose as a number, e.g. 500."},
		{"prescribe", url.Values{"dose": {"500"}, "unit": {"mg"}, "route": {"oral"}, "frequency": {"TDS"}}, "Enter the drug."},
		{"lab", url.Values{"test": {"Hb"}}, "Enter the result: a number here, or a text result below."},
		{"lab", url.Values{"test": {"Hb"}, "value": {"9"}, "unit": {"g/dL"}, "loinc": {"718-8"}}, "LOINC code: "},
		{"lab", url.Values{"test": {"Hb"}, "value": {"9"}}, "Unit: a numeric value needs a unit."},
		{"encounter", url.Values{"complaint": {"Fever"}, "date": {"2026-03-02"}, "bp": {"high"}}, "Enter the blood pressure as two numbers, e.g. 120/80."},
		{"allergy", url.Values{"substance": {"Sulfa"}, "severity": {"bad"}}, "Severity: "},
	} {
		code, body, _ := c.post("/chart/"+id+"/"+tc.form, tc.in)
		assert.Equal(t, http.StatusUnprocessableEntity, code, "%s %v", tc.form, tc.in)
		assert.Contains(t, html.UnescapeString(body), tc.msg, "%s %v", tc.form, tc.in)
	}
	assert.Equal(t, heads, f.chart(id).Heads, "nothing invalid is saved")
}

// TestFormErrorsNextToTheField: each form that takes values, posted
// with a bad one, is shown again (422) with the message in the bad
// field's own box, and nothing is saved.
func TestFormErrorsNextToTheField(t *testing.T) {
	f := newFixture(t)
	c := f.client()
	c.login(record.RoleClinician)
	id, entries := chartWithEntries(f)
	for _, tc := range []struct {
		form, entry, field string
		in                 url.Values
		msg                string
	}{
		{"update-allergy", record.KindAllergy, "severity", url.Values{"severity": {"bad"}, "status": {"inactive"}}, "Severity: "},
		{"update-allergy", record.KindAllergy, "status", url.Values{"severity": {"mild"}}, "Enter the status."},
		{"diagnosis-status", record.KindDiagnosis, "clinical", url.Values{"reason": {"better"}}, "Choose a new clinical status or a new verification status."},
		{"diagnosis-status", record.KindDiagnosis, "verification", url.Values{"verification": {"maybe"}}, "Verification status: "},
		{"hold", record.KindPrescription, "reason", url.Values{}, "Enter the reason."},
		{"correct-lab", record.KindLabResult, "value", url.Values{"value": {"5.4 mmol"}, "reason": {"typo"}}, "Enter the correct value as a number, e.g. 11.2."},
		{"correct-lab", record.KindLabResult, "value", url.Values{"reason": {"typo"}}, "Enter the result: a number here, or a text result below."},
		{"correct-lab", record.KindLabResult, "reason", url.Values{"value": {"6"}}, "Enter the reason."},
		{"add-identifier", "", "value", url.Values{"system": {"phone"}, "value": {"12"}}, "Number: "},
		{"add-identifier", "", "value", url.Values{"system": {"clinic"}, "value": {"K123"}}, "The patient already has this number"},
		{"correct-identifier", record.KindIdentifier, "value", url.Values{"value": {"K|1"}}, "Correct number: "},
		{"remove-identifier", record.KindIdentifier, "reason", url.Values{}, "Enter the reason."},
		{"refer", "", "clinic", url.Values{"reason": {"surgery"}}, "Enter the clinic."},
		{"allergy-error", record.KindAllergy, "reason", url.Values{}, "Enter the reason."},
		{"diagnosis-error", record.KindDiagnosis, "reason", url.Values{}, "Enter the reason."},
		{"prescription-error", record.KindPrescription, "reason", url.Values{}, "Enter the reason."},
		{"lab-error", record.KindLabResult, "reason", url.Values{}, "Enter the reason."},
		{"visit-error", record.KindEncounter, "reason", url.Values{}, "Enter the reason."},
		{"identifier-error", record.KindIdentifier, "reason", url.Values{}, "Enter the reason."},
	} {
		t.Run(tc.form+"/"+tc.field, func(t *testing.T) {
			heads := f.chart(id).Heads
			in := url.Values{}
			for k, v := range tc.in {
				in[k] = v
			}
			if tc.entry != "" {
				in.Set("entry", entries[tc.entry])
			}
			code, body, _ := c.post("/chart/"+id+"/"+tc.form, in)
			require.Equal(t, http.StatusUnprocessableEntity, code, "%s %v: %s", tc.form, tc.in, body)
			box := fieldBox(html.UnescapeString(body), tc.field)
			assert.Contains(t, box, `<p class="error">`+tc.msg, "the message is in the %s box of %s", tc.field, tc.form)
			assert.Equal(t, heads, f.chart(id).Heads, "nothing invalid is saved")
		})
	}
}

// TestNoKnownAllergiesOnlyWithoutAnActiveAllergy: "no known allergies"
// is offered only on a chart with no active allergy and none recorded;
// sent anyway while an allergy is active, the form says why it is
// refused (422), and nothing is saved.
func TestNoKnownAllergiesOnlyWithoutAnActiveAllergy(t *testing.T) {
	f := newFixture(t)
	c := f.client()
	c.login(record.RoleNurse)
	id := f.register(record.Register{GivenName: "Achieng", FamilyName: "Otieno", EstimatedBirthYear: 1975})
	link := `href="/chart/` + id + `/no-known-allergies"`
	_, body := c.get("/chart/" + id)
	assert.Contains(t, body, link, "offered on a chart with no allergy")
	f.edit(id, record.AddAllergy{Substance: "Sulfa", Severity: "severe"})
	_, body = c.get("/chart/" + id)
	assert.NotContains(t, body, link, "not offered while an allergy is active")
	heads := f.chart(id).Heads
	code, body, _ := c.post("/chart/"+id+"/no-known-allergies", url.Values{})
	require.Equal(t, http.StatusUnprocessableEntity, code, body)
	assert.Contains(t, body, `<p class="error" role="alert">An allergy is recorded as active`)
	assert.Equal(t, heads, f.chart(id).Heads, "nothing is saved")
}

// fieldBox is the part of a form page that shows field name: from its
// input to the end of its box.
func fieldBox(body, name string) string {
	i := indexOf(body, `id="f-`+name+`"`)
	if i < 0 {
		return ""
	}
	j := indexOf(body[i:], "</div>")
	if j < 0 {
		return body[i:]
	}
	return body[i : i+j]
}

// TestPrescribeShowsCodeAndAllergy: prescribing first shows how the
// dictionary codes the drug (or that it is uncoded) and warns of an
// allergy to it, then saves on confirmation, and the chart raises the
// alert at the top.
func TestPrescribeShowsCodeAndAllergy(t *testing.T) {
	f := newFixture(t)
	id := f.register(record.Register{GivenName: "Wanjiru", FamilyName: "Mwangi", EstimatedBirthYear: 1988})
	f.edit(id, record.AddAllergy{Substance: "penicillin", Severity: "severe"})
	c := f.client()
	c.login(record.RoleNurse)
	in := url.Values{"drug": {"Amoxil"}, "dose": {"500"}, "unit": {"mg"}, "route": {"oral"}, "frequency": {"TDS"}}
	code, body, _ := c.post("/chart/"+id+"/prescribe", in)
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, "coded as J01CA04")
	assert.Contains(t, body, "allergic to penicillin")
	assert.Len(t, f.chart(id).Prescriptions, 0, "nothing saved before confirmation")

	in.Set("confirm", "1")
	code, _, _ = c.post("/chart/"+id+"/prescribe", in)
	require.Equal(t, http.StatusSeeOther, code)
	_, body = c.get("/chart/" + id)
	assert.Contains(t, body, "NEW ALERT")
	assert.Regexp(t, `(?s)class="alerts".*ALERT.*<h1>`, body, "the alert is at the top of the chart")

	code, body, _ = c.post("/chart/"+id+"/prescribe", url.Values{"drug": {"Mystery tonic"}, "dose": {"5"}, "unit": {"ml"}, "route": {"oral"}, "frequency": {"OD"}})
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, html.UnescapeString(body), "not in the drug dictionary")
}

// TestConflictShownAndSettled: two devices revising one dose offline show
// a conflict with every value and who wrote it; a role that may change
// prescriptions gets a settle form and settles it, one that may not gets
// none and its POST is refused.
func TestConflictShownAndSettled(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	id := f.register(record.Register{GivenName: "Wanjiru", FamilyName: "Mwangi", EstimatedBirthYear: 1988})
	rx := f.edit(id, record.Prescribe{Drug: "Amoxicillin", Dose: 500, DoseUnit: "mg", Route: "oral", Frequency: "BD"})

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
	_, err = other.Edit(ctx, id, laptop, record.ReviseDose{PrescriptionID: rx, Dose: 750})
	require.NoError(t, err)
	f.edit(id, record.ReviseDose{PrescriptionID: rx, Dose: 250})
	exchange(other, f.r)
	require.Len(t, f.chart(id).Conflicts, 1)

	lab := f.client()
	lab.login(record.RoleLabTechnician)
	code, body := lab.get("/chart/" + id)
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, body, "Conflicts to settle")
	assert.Contains(t, body, "<strong>750</strong>, written by Dr Mutua (clinician, u-mutua) on kamuga-laptop")
	assert.Contains(t, body, "<strong>250</strong>, written by Test clinician (clinician, u-clinician) on kamuga-tablet")
	assert.NotContains(t, body, "Keep this value", "a lab technician may not settle a dose")
	code, _, _ = lab.post("/chart/"+id+"/settle", url.Values{"entry": {rx}, "field": {"dose"}, "value": {"750"}})
	assert.Equal(t, http.StatusForbidden, code)
	require.Len(t, f.chart(id).Conflicts, 1, "a forbidden settle changes nothing")

	nurse := f.client()
	nurse.login(record.RoleNurse)
	_, body = nurse.get("/chart/" + id)
	assert.Contains(t, body, "Keep this value")
	code, _, _ = nurse.post("/chart/"+id+"/settle", url.Values{"entry": {rx}, "field": {"dose"}, "value": {"750"}})
	require.Equal(t, http.StatusSeeOther, code)
	v := f.chart(id)
	assert.Empty(t, v.Conflicts, "settled")
	assert.Equal(t, 750.0, v.Prescriptions[0].Dose)
	_, body = nurse.get("/chart/" + id)
	assert.Contains(t, body, "Conflict settled")
	assert.NotContains(t, body, "Conflicts to settle")
}
