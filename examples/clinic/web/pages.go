package web

import (
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/record/identity"
	"github.com/chartsync/chartsync/replica"
)

// searchLimit is the most patients a search lists.
const searchLimit = 50

func (s *Server) funcs(lang string) template.FuncMap {
	return template.FuncMap{
		// T says a message in the page's language; N says a count of
		// something with the right plural form.
		"T":    func(key string, args ...any) string { return tr(lang, key, args...) },
		"N":    func(key string, n int) string { return plural(lang, n, key) },
		"size": size,
		"list": func(xs ...string) []string { return xs },
		"ms":   func(d time.Duration) string { return d.Round(time.Millisecond).String() },
		"secs": func(d time.Duration) string { return d.Round(time.Second).String() },
		"pct": func(done, total int64) int64 {
			if total <= 0 {
				return 0
			}
			return min(100, done*100/total)
		},
		"when": func(t time.Time) string {
			if t.IsZero() {
				return ""
			}
			return t.In(s.cfg.Location).Format("2006-01-02 15:04")
		},
		"short": func(id string) string {
			if len(id) > 8 {
				return id[:8]
			}
			return id
		},
		"num":    func(f float64) string { return strconv.FormatFloat(f, 'g', -1, 64) },
		"upper":  strings.ToUpper,
		"words":  func(s string) string { return strings.ReplaceAll(s, "_", " ") },
		"deref":  func(f *float64) float64 { return *f },
		"vitals": vitals,
	}
}

// vitals says an encounter's vitals in words.
func vitals(v record.Vitals) string {
	var out []string
	add := func(x float64, format string) {
		if x != 0 {
			out = append(out, fmt.Sprintf(format, strconv.FormatFloat(x, 'g', -1, 64)))
		}
	}
	if v.BPSystolic != 0 || v.BPDiastolic != 0 {
		out = append(out, fmt.Sprintf("BP %s/%s", strconv.FormatFloat(v.BPSystolic, 'g', -1, 64), strconv.FormatFloat(v.BPDiastolic, 'g', -1, 64)))
	}
	add(v.Pulse, "pulse %s")
	add(v.Temperature, "%s °C")
	add(v.Weight, "%s kg")
	add(v.Height, "%s cm")
	add(v.SpO2, "SpO2 %s%%")
	return strings.Join(out, " · ")
}

// ---- find ----

type patientsData struct {
	Query       string
	Searched    bool
	Message     string
	Found       []found
	MayRegister bool
}

type found struct {
	ID, Name, Village, NationalID, HomeClinic string
}

func (s *Server) patients(w http.ResponseWriter, r *http.Request, q *request) {
	text := strings.TrimSpace(r.URL.Query().Get("q"))
	d := patientsData{Query: text, MayRegister: record.Permitted(q.author.Role, record.SectionDemographics)}
	if text != "" {
		d.Searched = true
		fs, err := s.r.Search(r.Context(), text, searchLimit)
		switch {
		case errors.Is(err, replica.ErrTooManyMatches):
			d.Message = tr(q.lang, "find.toomany")
		case err != nil:
			s.fail(w, r, q, err)
			return
		}
		for _, f := range fs {
			d.Found = append(d.Found, found{ID: f.ID, Name: strings.TrimSpace(f.GivenName + " " + f.FamilyName), Village: f.Village, NationalID: f.NationalID, HomeClinic: f.HomeClinic})
		}
		if len(fs) == 0 && err == nil {
			// A chart ID, or part of one, which the search does not take.
			if cs, err := s.r.Find(r.Context(), text, searchLimit); err == nil {
				for _, c := range cs {
					d.Found = append(d.Found, found{ID: c.ID, Name: strings.TrimSpace(c.GivenName + " " + c.FamilyName), Village: c.Village, NationalID: c.NationalID, HomeClinic: c.HomeClinic})
				}
			}
		}
		if len(d.Found) == 0 && d.Message == "" {
			d.Message = tr(q.lang, "find.none")
		}
	}
	s.render(w, r, q, http.StatusOK, "patients", tr(q.lang, "find.title"), d)
}

// ---- register ----

type registerData struct {
	Form       *formData
	Candidates []candidate
	// MayMerge: the user may merge charts (from a chart's page).
	MayMerge bool
}

type candidate struct {
	ID, Name, Born, Village string
	Reasons                 []string
}

var registerFields = []field{
	{Name: "given_name", Label: "Given name", Required: true, Aliases: []string{"given"}},
	{Name: "family_name", Label: "Family name", Aliases: []string{"family"}},
	{Name: "sex", Label: "Sex", Type: "select", Options: []string{"female", "male", "other", "unknown"}, Required: true},
	{Name: "birth_date", Label: "Birth date", Type: "date", Hint: "when known"},
	{Name: "estimated_birth_year", Label: "Or estimated birth year", Type: "number", Example: "1988", Aliases: []string{"birth_year"}},
	{Name: "village", Label: "Village"},
	{Name: "address", Label: "Address or directions"},
	{Name: "phone", Label: "Phone", Type: "tel"},
	{Name: "national_id", Label: "National ID"},
	{Name: "guardian", Label: "Guardian or next of kin"},
}

func (s *Server) registerPage(w http.ResponseWriter, r *http.Request, q *request) {
	if !record.Permitted(q.author.Role, record.SectionDemographics) {
		s.forbidden(w, r, q, record.SectionDemographics)
		return
	}
	f := newFormData(q.lang, "register", "/register", tr(q.lang, "register.button"), registerFields, nil)
	s.render(w, r, q, http.StatusOK, "register", f.Title, registerData{Form: f})
}

func (s *Server) registerPost(w http.ResponseWriter, r *http.Request, q *request) {
	if !record.Permitted(q.author.Role, record.SectionDemographics) {
		s.forbidden(w, r, q, record.SectionDemographics)
		return
	}
	in := values(r, registerFields)
	f := newFormData(q.lang, "register", "/register", tr(q.lang, "register.button"), registerFields, in)
	reg := record.Register{
		GivenName: in.get("given_name"), FamilyName: in.get("family_name"), Sex: in.get("sex"),
		BirthDate: in.get("birth_date"), Village: in.get("village"), Address: in.get("address"),
		Phone: in.get("phone"), NationalID: in.get("national_id"), Guardian: in.get("guardian"), HomeClinic: s.cfg.Clinic,
	}
	if y, ok := in.int(f, "estimated_birth_year", tr(q.lang, "form.birthyear")); ok {
		reg.EstimatedBirthYear = y
	}
	if in.get("given_name") == "" {
		f.Errors["given_name"] = tr(q.lang, "form.givenname")
	}
	if reg.BirthDate == "" && reg.EstimatedBirthYear == 0 && f.Errors["estimated_birth_year"] == "" {
		f.Errors["birth_date"] = tr(q.lang, "form.birthdate")
	}
	if len(f.Errors) > 0 {
		s.render(w, r, q, http.StatusUnprocessableEntity, "register", f.Title, registerData{Form: f})
		return
	}
	ctx := r.Context()
	if r.PostFormValue("confirm") == "" {
		cs, err := s.r.Duplicates(ctx, record.Patient(reg))
		if err != nil && !errors.Is(err, replica.ErrTooManyMatches) {
			s.fail(w, r, q, err)
			return
		}
		if len(cs) > 0 {
			d := registerData{Form: f, MayMerge: mayMerge(q)}
			for _, c := range cs {
				d.Candidates = append(d.Candidates, s.candidate(r, c))
			}
			f.Confirm = tr(q.lang, "register.anyway")
			s.render(w, r, q, http.StatusOK, "register", f.Title, d)
			return
		}
	}
	id, err := s.r.Register(ctx, q.author, reg)
	if err != nil {
		if s.formError(f, err) {
			s.render(w, r, q, http.StatusUnprocessableEntity, "register", f.Title, registerData{Form: f})
			return
		}
		s.writeFailed(w, r, q, err)
		return
	}
	s.setFlash(q.sess, tr(q.lang, "register.done", record.Patient(reg).FullName()))
	http.Redirect(w, r, "/chart/"+id, http.StatusSeeOther)
}

// candidate describes a possible duplicate with its evidence in words.
func (s *Server) candidate(r *http.Request, c identity.Candidate) candidate {
	out := candidate{ID: c.ChartID}
	if v, err := s.r.Chart(r.Context(), c.ChartID); err == nil {
		p := v.Patient
		out.Name, out.Village, out.Born = p.FullName(), p.Village, born(p)
	}
	for _, e := range c.Evidence {
		if e.Weight > 0 {
			out.Reasons = append(out.Reasons, e.Detail)
		}
	}
	if len(out.Reasons) == 0 {
		for _, e := range c.Evidence {
			out.Reasons = append(out.Reasons, e.Detail)
		}
	}
	return out
}

func born(p record.Patient) string {
	if p.BirthDate != "" {
		return p.BirthDate
	}
	if p.EstimatedBirthYear != 0 {
		return fmt.Sprintf("about %d", p.EstimatedBirthYear)
	}
	return ""
}

// ---- chart ----

type chartData struct {
	V         record.View
	Born      string
	Hidden    string
	Conflicts []conflict
	Actions   []action
	// Entry actions by section the user may change.
	MayPrescribe, MayLab, MayEncounter bool
	// May says, by form name, the forms the user may use.
	May map[string]bool
	// MayMerge: the user may merge and unmerge charts. Forwarded names
	// the chart asked for when it was merged into the one shown; Merged
	// are the charts merged into it; Duplicates its possible duplicates.
	MayMerge   bool
	Forwarded  *forwardNote
	Merged     []mergedChart
	Duplicates []candidate
}

type conflict struct {
	record.Conflict
	MaySettle bool
	// Merge: the conflict is of a merged chart's forwarding pointer;
	// OfferUnmerge: none of its values is "not merged", which the settle
	// form then offers too.
	Merge, OfferUnmerge bool
}

type action struct{ Path, Label string }

func (s *Server) view(r *http.Request, q *request, id string) (record.View, error) {
	v, err := s.r.Chart(r.Context(), id)
	if err != nil {
		return v, err
	}
	return q.policy.Redact(v, q.author.Role), nil
}

func (s *Server) chartPage(w http.ResponseWriter, r *http.Request, q *request) {
	id := r.PathValue("id")
	v, err := s.view(r, q, id)
	if err != nil {
		s.notFound(w, r, q, err)
		return
	}
	d := chartData{V: v, Born: born(v.Patient)}
	var hidden []string
	for _, h := range v.Hidden {
		hidden = append(hidden, string(h))
	}
	d.Hidden = strings.Join(hidden, ", ")
	for _, c := range v.Conflicts {
		sec := sectionOf(c.Kind, c.Field)
		merge := c.Kind == record.KindPatient && c.Field == fieldMergedInto
		d.Conflicts = append(d.Conflicts, conflict{Conflict: c, MaySettle: !c.Automatic && record.Permitted(q.author.Role, sec),
			Merge: merge, OfferUnmerge: merge && !slices.ContainsFunc(c.Values, func(w record.Written) bool { return w.Value == "" })})
	}
	d.May = map[string]bool{}
	for _, f := range chartForms {
		d.May[f.Name] = s.mayUse(q, f)
		if f.Entry == "" && d.May[f.Name] && (f.Offer == nil || f.Offer(v)) {
			d.Actions = append(d.Actions, action{Path: "/chart/" + id + "/" + f.Name, Label: tr(q.lang, "form."+f.Name+".title")})
		}
	}
	d.MayPrescribe = s.mayUse(q, formsByName["revise-dose"])
	d.MayLab = s.mayUse(q, formsByName["lab"])
	d.MayEncounter = s.mayUse(q, formsByName["note"])
	s.mergeInfo(r, q, id, &d)
	s.render(w, r, q, http.StatusOK, "chart", v.Patient.FullName(), d)
}

func (s *Server) notFound(w http.ResponseWriter, r *http.Request, q *request, err error) {
	if errors.Is(err, replica.ErrNotFound) || errors.Is(err, record.ErrNotFound) {
		s.errorPage(w, r, q, http.StatusNotFound, tr(q.lang, "error.nochart"))
		return
	}
	s.fail(w, r, q, err)
}

// settle resolves a conflict with the value the user chose.
func (s *Server) settle(w http.ResponseWriter, r *http.Request, q *request) {
	id := r.PathValue("id")
	v, err := s.view(r, q, id)
	if err != nil {
		s.notFound(w, r, q, err)
		return
	}
	entry, fieldName, value := r.PostFormValue("entry"), r.PostFormValue("field"), r.PostFormValue("value")
	var c *record.Conflict
	for i := range v.Conflicts {
		if v.Conflicts[i].EntryID == entry && v.Conflicts[i].Field == fieldName {
			c = &v.Conflicts[i]
		}
	}
	if c == nil {
		s.errorPage(w, r, q, http.StatusConflict, tr(q.lang, "error.conflictgone"))
		return
	}
	if sec := sectionOf(c.Kind, c.Field); !record.Permitted(q.author.Role, sec) {
		s.forbidden(w, r, q, sec)
		return
	}
	if c.Kind == record.KindPatient && c.Field == fieldMergedInto && value != "" {
		s.settleMerge(w, r, q, c, value)
		return
	}
	if value == "" {
		s.setFlash(q.sess, tr(q.lang, "settle.choose"))
		http.Redirect(w, r, "/chart/"+id+"#conflicts", http.StatusSeeOther)
		return
	}
	if _, err := s.r.Edit(r.Context(), id, q.author, record.ResolveConflict{EntryID: entry, Field: fieldName, Value: value}); err != nil {
		s.writeFailed(w, r, q, err)
		return
	}
	s.setFlash(q.sess, tr(q.lang, "settle.done", value, strings.ReplaceAll(fieldName, "_", " "), c.Entry))
	http.Redirect(w, r, "/chart/"+id, http.StatusSeeOther)
}

// writeFailed explains an error of a write in plain words.
func (s *Server) writeFailed(w http.ResponseWriter, r *http.Request, q *request, err error) {
	var fe *record.ForbiddenError
	switch {
	case errors.As(err, &fe):
		s.forbidden(w, r, q, fe.Section)
	case errors.Is(err, record.ErrTransition):
		s.errorPage(w, r, q, http.StatusConflict, tr(q.lang, "error.transition", err.Error()))
	case errors.Is(err, replica.ErrOutOfScope):
		s.errorPage(w, r, q, http.StatusForbidden, tr(q.lang, "error.outofscope"))
	case errors.Is(err, replica.ErrNotFound), errors.Is(err, record.ErrNotFound):
		s.notFound(w, r, q, err)
	default:
		s.fail(w, r, q, err)
	}
}

// sectionOf is the section a field of an entry kind belongs to, as the
// permission matrix of package record has it.
func sectionOf(kind, fieldName string) record.Section {
	switch kind {
	case record.KindPatient:
		switch fieldName {
		case "nka":
			return record.SectionAllergies
		case fieldMergedInto:
			return record.SectionMerges
		}
		return record.SectionDemographics
	case record.KindIdentifier:
		return record.SectionDemographics
	case record.KindAllergy:
		return record.SectionAllergies
	case record.KindDiagnosis:
		return record.SectionDiagnoses
	case record.KindPrescription:
		return record.SectionPrescriptions
	case record.KindLabResult:
		return record.SectionLabResults
	case record.KindEncounter:
		return record.SectionEncounters
	case record.KindReferral:
		return record.SectionReferrals
	}
	return ""
}

// mayChange lists the roles that may change a section.
func mayChange(sec record.Section) string {
	var may []string
	for _, r := range record.Roles() {
		if record.Permitted(r, sec) {
			may = append(may, string(r))
		}
	}
	return strings.Join(may, ", ")
}

// size says a number of bytes for people.
func size(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

// ---- settings ----

type settingsData struct {
	Languages []Language
	Zone      string
}

func (s *Server) settingsPage(w http.ResponseWriter, r *http.Request, q *request) {
	s.render(w, r, q, http.StatusOK, "settings", tr(q.lang, "settings.title"), settingsData{Languages: Languages, Zone: s.cfg.Location.String()})
}

// settingsPost stores the user's language on this device.
func (s *Server) settingsPost(w http.ResponseWriter, r *http.Request, q *request) {
	lang := r.PostFormValue("language")
	if !knownLanguage(lang) {
		s.setFlash(q.sess, tr(q.lang, "settings.unknown"))
		http.Redirect(w, r, "/settings", http.StatusSeeOther)
		return
	}
	st := s.settings.get(q.author.UserID)
	st.Language = lang
	if err := s.settings.set(q.author.UserID, st); err != nil {
		s.fail(w, r, q, err)
		return
	}
	s.setFlash(q.sess, tr(lang, "settings.saved"))
	http.Redirect(w, r, "/settings", http.StatusSeeOther)
}
