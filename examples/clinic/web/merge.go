package web

import (
	"errors"
	"net/http"
	"slices"

	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
)

// unmergeValue is the value of a merge conflict's settle form that
// unmerges the chart instead of choosing a chart to merge it into (no
// chart ID looks like it).
const unmergeValue = "-"

// fieldMergedInto is the patient field holding a merged chart's
// forwarding pointer, as conflicts name it.
const fieldMergedInto = "merged_into"

// mayMerge reports whether the user's role may merge and unmerge charts.
func mayMerge(q *request) bool {
	return record.Permitted(q.author.Role, record.SectionMerges)
}

// mergeFields is the merge and unmerge forms' one field.
var mergeFields = []field{{Name: "reason", Label: "Reason", Required: true, Hint: "why"}}

// mergeData is the merge and unmerge confirmation pages: the two charts
// side by side, each as its own document holds it and as the user's
// role may read it.
type mergeData struct {
	// Absorbed is the chart merged away (or unmerged), Survivor the one
	// it goes into (or comes out of).
	Absorbed, Survivor record.View
	// Cards show them side by side.
	Cards []card
	// Swap is the page merging the other way, "" on the unmerge page.
	Swap string
	Form *formData
}

// card is a chart on a merge page, under a heading (a message key).
type card struct {
	Heading string
	V       record.View
	Born    string
}

func newMergeData(vx, vs record.View, swap string, f *formData) *mergeData {
	return &mergeData{Absorbed: vx, Survivor: vs, Swap: swap, Form: f, Cards: []card{
		{Heading: "merge.away", V: vx, Born: born(vx.Patient)},
		{Heading: "merge.kept", V: vs, Born: born(vs.Patient)},
	}}
}

// own reads a chart's own document, as the user may read it.
func (s *Server) own(r *http.Request, q *request, id string) (record.View, error) {
	v, err := s.r.OwnChart(r.Context(), id)
	if err != nil {
		return v, err
	}
	return q.policy.Redact(v, q.author.Role), nil
}

// mergeForm reads what the merge pages need: the two charts and the form.
// The chart merged away is the path's; the one it goes into, the into
// value's.
func (s *Server) mergeForm(w http.ResponseWriter, r *http.Request, q *request, in formValues) (*mergeData, bool) {
	if !mayMerge(q) {
		s.forbidden(w, r, q, record.SectionMerges)
		return nil, false
	}
	id, into := r.PathValue("id"), r.FormValue("into")
	if into == "" || into == id {
		s.errorPage(w, r, q, http.StatusBadRequest, tr(q.lang, "merge.choose"))
		return nil, false
	}
	vx, err := s.own(r, q, id)
	if err != nil {
		s.notFound(w, r, q, err)
		return nil, false
	}
	vs, err := s.own(r, q, into)
	if err != nil {
		s.notFound(w, r, q, err)
		return nil, false
	}
	f := newFormData(q.lang, "merge", "/chart/"+id+"/merge", tr(q.lang, "merge.button"), mergeFields, in)
	f.Entry, f.Cancel = into, "/chart/"+into
	return newMergeData(vx, vs, "/chart/"+into+"/merge?into="+id, f), true
}

func (s *Server) mergePage(w http.ResponseWriter, r *http.Request, q *request) {
	d, ok := s.mergeForm(w, r, q, nil)
	if !ok {
		return
	}
	s.render(w, r, q, http.StatusOK, "merge", d.Form.Title, d)
}

// mergePost merges the path's chart into the form's "into" chart.
func (s *Server) mergePost(w http.ResponseWriter, r *http.Request, q *request) {
	d, ok := s.mergeForm(w, r, q, values(r, mergeFields))
	if !ok {
		return
	}
	formValues(d.Form.Values).required(d.Form, "reason")
	if len(d.Form.Errors) > 0 {
		s.render(w, r, q, http.StatusUnprocessableEntity, "merge", d.Form.Title, d)
		return
	}
	id, into := d.Absorbed.ChartID, d.Survivor.ChartID
	if err := s.r.Merge(r.Context(), id, into, q.author, d.Form.Values["reason"]); err != nil {
		s.mergeFailed(w, r, q, err)
		return
	}
	s.log.Info("charts merged", "absorbed", id, "survivor", into, "user", q.author.UserID)
	s.setFlash(q.sess, tr(q.lang, "merge.done", d.Absorbed.Patient.FullName(), d.Survivor.Patient.FullName()))
	http.Redirect(w, r, "/chart/"+into, http.StatusSeeOther)
}

// unmergeForm reads what the unmerge pages need: the merged chart, the
// chart it forwards to, and the form.
func (s *Server) unmergeForm(w http.ResponseWriter, r *http.Request, q *request, in formValues) (*mergeData, bool) {
	if !mayMerge(q) {
		s.forbidden(w, r, q, record.SectionMerges)
		return nil, false
	}
	id := r.PathValue("id")
	vx, err := s.own(r, q, id)
	if err != nil {
		s.notFound(w, r, q, err)
		return nil, false
	}
	if vx.MergedInto == "" {
		s.errorPage(w, r, q, http.StatusConflict, tr(q.lang, "unmerge.notmerged"))
		return nil, false
	}
	vs, err := s.view(r, q, vx.MergedInto)
	if err != nil {
		s.notFound(w, r, q, err)
		return nil, false
	}
	f := newFormData(q.lang, "unmerge", "/chart/"+id+"/unmerge", tr(q.lang, "unmerge.button"), mergeFields, in)
	f.Cancel = "/chart/" + vs.ChartID
	return newMergeData(vx, vs, "", f), true
}

func (s *Server) unmergePage(w http.ResponseWriter, r *http.Request, q *request) {
	d, ok := s.unmergeForm(w, r, q, nil)
	if !ok {
		return
	}
	s.render(w, r, q, http.StatusOK, "merge", d.Form.Title, d)
}

// unmergePost makes the path's chart a chart of its own again.
func (s *Server) unmergePost(w http.ResponseWriter, r *http.Request, q *request) {
	d, ok := s.unmergeForm(w, r, q, values(r, mergeFields))
	if !ok {
		return
	}
	formValues(d.Form.Values).required(d.Form, "reason")
	if len(d.Form.Errors) > 0 {
		s.render(w, r, q, http.StatusUnprocessableEntity, "merge", d.Form.Title, d)
		return
	}
	id := d.Absorbed.ChartID
	if err := s.r.Unmerge(r.Context(), id, q.author, d.Form.Values["reason"]); err != nil {
		s.mergeFailed(w, r, q, err)
		return
	}
	s.log.Info("chart unmerged", "chart", id, "user", q.author.UserID)
	s.setFlash(q.sess, tr(q.lang, "unmerge.done", d.Absorbed.Patient.FullName()))
	http.Redirect(w, r, "/chart/"+id, http.StatusSeeOther)
}

// mergeFailed explains why a merge or an unmerge was refused.
func (s *Server) mergeFailed(w http.ResponseWriter, r *http.Request, q *request, err error) {
	switch {
	case errors.Is(err, replica.ErrNotMerged):
		s.errorPage(w, r, q, http.StatusConflict, tr(q.lang, "unmerge.notmerged"))
	case errors.Is(err, replica.ErrAlreadyMerged):
		s.errorPage(w, r, q, http.StatusConflict, tr(q.lang, "merge.already"))
	case errors.Is(err, replica.ErrForwarded):
		s.errorPage(w, r, q, http.StatusConflict, tr(q.lang, "merge.forwarded"))
	case errors.Is(err, replica.ErrMergeIntoItself):
		s.errorPage(w, r, q, http.StatusBadRequest, tr(q.lang, "merge.choose"))
	default:
		s.writeFailed(w, r, q, err)
	}
}

// settleMerge settles a conflict of a chart's forwarding pointer (charts
// merged concurrently) as a permitted role does it: merging the chart
// into the chart chosen, which releases it from the others, or
// unmerging it.
func (s *Server) settleMerge(w http.ResponseWriter, r *http.Request, q *request, c *record.Conflict, value string) {
	ctx := r.Context()
	var err error
	to := "/chart/" + c.EntryID
	switch {
	case value == unmergeValue:
		err = s.r.Unmerge(ctx, c.EntryID, q.author, tr(q.lang, "settle.mergereason"))
	case slices.ContainsFunc(c.Values, func(w record.Written) bool { return w.Value == value && value != "" }):
		err = s.r.Merge(ctx, c.EntryID, value, q.author, tr(q.lang, "settle.mergereason"))
		to = "/chart/" + value
	default:
		s.errorPage(w, r, q, http.StatusConflict, tr(q.lang, "error.conflictgone"))
		return
	}
	if err != nil {
		s.mergeFailed(w, r, q, err)
		return
	}
	s.setFlash(q.sess, tr(q.lang, "settle.merged"))
	http.Redirect(w, r, to, http.StatusSeeOther)
}

// mergedChart is a chart merged into the one shown, with its state.
type mergedChart struct {
	record.Merge
	Name string
}

// forwardNote says, on the page of a chart merged into another, which
// chart it was.
type forwardNote struct {
	ID, Name string
}

// mergeInfo fills what the chart page shows of merges: where the chart
// asked for was merged, the charts merged into the one shown, and its
// possible duplicates.
func (s *Server) mergeInfo(r *http.Request, q *request, id string, d *chartData) {
	v := d.V
	d.MayMerge = mayMerge(q)
	names := map[string]string{}
	for _, a := range v.Absorbed {
		names[a.ChartID] = a.Patient.FullName()
	}
	if id != v.ChartID {
		d.Forwarded = &forwardNote{ID: id, Name: names[id]}
	}
	for _, m := range v.Merges {
		name := names[m.ChartID]
		if name == "" {
			if own, err := s.r.OwnChart(r.Context(), m.ChartID); err == nil {
				name = own.Patient.FullName()
			}
		}
		d.Merged = append(d.Merged, mergedChart{Merge: m, Name: name})
	}
	cs, err := s.r.DuplicatesOf(r.Context(), v.ChartID)
	if err != nil && !errors.Is(err, replica.ErrTooManyMatches) {
		s.log.Warn("duplicates of chart", "chart", v.ChartID, "err", err)
	}
	for _, c := range cs {
		d.Duplicates = append(d.Duplicates, s.candidate(r, c))
	}
}
