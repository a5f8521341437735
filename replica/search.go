package replica

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/record/identity"
	"github.com/chartsync/chartsync/replica/store"
)

// ErrTooManyMatches is returned by Search and Duplicates when more charts
// answer the index lookups than are scored at once (MaxSearchCandidates):
// a search of a few letters in a large register. Type more of the name,
// or a village or a phone number too.
var ErrTooManyMatches = errors.New("replica: too many charts match; type more of the name, a village or a phone number")

// MaxSearchCandidates bounds the charts Search and Duplicates read from
// the index and score for one call. Scoring a chart takes tens of
// microseconds, so a call costs at most about a third of a second.
const MaxSearchCandidates = 10000

// Found is a chart a search found: its index entry and how well it
// matches the query (identity.Query.Match: 1 for every word found whole,
// less for prefixes and spelling variants).
type Found struct {
	store.Chart
	Score float64
}

// searchKeys returns the search keys a patient's chart is indexed under.
func searchKeys(p record.Patient) []string { return identity.Keys(p) }

// lookups turns identity's lookups into the store's.
func lookups(ls []identity.Lookup) []store.Lookup {
	out := make([]store.Lookup, len(ls))
	for i, l := range ls {
		out[i] = store.Lookup{Key: l.Key, Prefix: l.Prefix}
	}
	return out
}

// Prefixes of the search keys identity.Keys makes for phones and for
// identifiers (TestEntryPatientMatchesAsThePatient holds them to it).
const (
	phoneKeyPrefix      = "t:"
	identifierKeyPrefix = "i:"
)

// entryPatient returns what a chart's index entry tells of its patient,
// for scoring without loading the chart: names, village and national ID
// from the entry, and its phones and identifiers from its search keys
// (as phone identifiers and clinic numbers holding the keys' digits and
// letters). identity.Query.Match scores it as it scores the patient.
func entryPatient(c store.Chart) record.Patient {
	p := record.Patient{GivenName: c.GivenName, FamilyName: c.FamilyName, Village: c.Village, NationalID: c.NationalID, HomeClinic: c.HomeClinic}
	for _, k := range c.Keys {
		if v, ok := strings.CutPrefix(k, phoneKeyPrefix); ok {
			p.Identifiers = append(p.Identifiers, record.Identifier{System: record.SystemPhone, Value: v})
		} else if v, ok := strings.CutPrefix(k, identifierKeyPrefix); ok {
			p.Identifiers = append(p.Identifiers, record.Identifier{System: record.SystemClinic, Value: v})
		}
	}
	return p
}

// Search finds patients' charts by what someone typed (a chart merged
// into another is found as its surviving chart, listed once): words of the
// names or the village in any order, case and accents, common spelling
// variants, the first letters of a word (three or more), or a phone or
// identifier number however it is spaced (identity.ParseQuery). A chart
// is found when every word matches it. Charts are listed best match
// first, ties by chart ID, at most limit (0: all). A query of nothing
// searchable finds nothing.
//
// It reads the store's index only: the charts under each word's keys,
// intersected, each scored from its index entry. More than
// MaxSearchCandidates charts under the keys gives ErrTooManyMatches.
// Like Find, it lists every patient's chart this replica holds, and no
// user roster.
func (r *Replica) Search(ctx context.Context, text string, limit int) ([]Found, error) {
	if err := r.checkOpen(); err != nil {
		return nil, err
	}
	q := identity.ParseQuery(text)
	if len(q.Terms) == 0 {
		return nil, nil
	}
	s := store.Search{Limit: MaxSearchCandidates + 1}
	for _, t := range q.Terms {
		s.Terms = append(s.Terms, lookups(t.Lookups))
	}
	cs, err := r.st.Search(ctx, s)
	if err != nil {
		return nil, fmt.Errorf("search %q: %w", text, err)
	}
	if len(cs) > MaxSearchCandidates {
		return nil, fmt.Errorf("search %q: more than %d charts: %w", text, MaxSearchCandidates, ErrTooManyMatches)
	}
	hits := make([]identity.Hit, 0, len(cs))
	byID := make(map[string]store.Chart, len(cs))
	at := map[string]int{} // index in hits, by chart
	for _, c := range cs {
		score, ok := q.Match(entryPatient(c))
		if !ok {
			continue
		}
		// A chart merged into another is found as its survivor, once.
		if c, err = r.indexSurvivor(ctx, c); err != nil {
			return nil, fmt.Errorf("search %q: %w", text, err)
		}
		if i, dup := at[c.ID]; dup {
			hits[i].Score = max(hits[i].Score, score)
			continue
		}
		at[c.ID] = len(hits)
		hits = append(hits, identity.Hit{ChartID: c.ID, Score: score})
		byID[c.ID] = c
	}
	identity.Rank(hits)
	if limit > 0 && len(hits) > limit {
		hits = hits[:limit]
	}
	out := make([]Found, len(hits))
	for i, h := range hits {
		out[i] = Found{Chart: byID[h.ChartID], Score: h.Score}
	}
	return out, nil
}

// Duplicates returns the charts held here that may be the same patient
// as p, a registration not yet saved: those identity.Duplicates finds
// likely (a shared identifier; a similar name with the same birth year
// and village; a shared phone), most likely first, each with the
// evidence for and against. Show them to the clerk before registering.
// Charts merged into another are not listed (their survivors are).
//
// The charts come from the store's index (identity.DuplicateKeys: the
// phonetic keys of the names, the phones, the identifiers). Those whose
// index entry already rules them out (a different name and no phone or
// identifier in common) are not read further; the others are loaded and
// compared whole. More than MaxSearchCandidates charts under the keys
// gives ErrTooManyMatches.
func (r *Replica) Duplicates(ctx context.Context, p record.Patient) ([]identity.Candidate, error) {
	if err := r.checkOpen(); err != nil {
		return nil, err
	}
	out, err := r.duplicates(ctx, p, "")
	if err != nil {
		return nil, fmt.Errorf("duplicates of %s: %w", p.FullName(), err)
	}
	return out, nil
}

// DuplicatesOf returns the charts held here that may be the same patient
// as the chart chartID, as Duplicates does for a registration; the chart
// itself is not listed. A chart not held gives ErrNotFound.
func (r *Replica) DuplicatesOf(ctx context.Context, chartID string) ([]identity.Candidate, error) {
	v, err := r.Chart(ctx, chartID)
	if err != nil {
		return nil, fmt.Errorf("duplicates of chart %s: %w", chartID, err)
	}
	out, err := r.duplicates(ctx, v.Patient, v.ChartID) // the survivor, for a chart merged into another
	if err != nil {
		return nil, fmt.Errorf("duplicates of chart %s: %w", chartID, err)
	}
	return out, nil
}

func (r *Replica) duplicates(ctx context.Context, p record.Patient, self string) ([]identity.Candidate, error) {
	keys := identity.DuplicateKeys(p)
	if len(keys) == 0 {
		return nil, nil
	}
	term := make([]store.Lookup, len(keys))
	for i, k := range keys {
		term[i] = store.Lookup{Key: k}
	}
	cs, err := r.st.Search(ctx, store.Search{Terms: [][]store.Lookup{term}, Limit: MaxSearchCandidates + 1})
	if err != nil {
		return nil, err
	}
	if len(cs) > MaxSearchCandidates {
		return nil, fmt.Errorf("more than %d charts share a key: %w", MaxSearchCandidates, ErrTooManyMatches)
	}
	// Keys of a phone or an identifier: a chart that shares one is read
	// whatever its name.
	names := identity.DuplicateKeys(record.Patient{GivenName: p.GivenName, FamilyName: p.FamilyName})
	strong := slices.DeleteFunc(slices.Clone(keys), func(k string) bool { return slices.Contains(names, k) })
	var charts []identity.Chart
	for _, c := range cs {
		if _, forwarded := forwardKey(c.Keys); c.ID == self || forwarded {
			// A chart merged into another is no candidate: its
			// survivor is, if it matches.
			continue
		}
		shared := slices.ContainsFunc(strong, func(k string) bool { _, ok := slices.BinarySearch(c.Keys, k); return ok })
		if !shared && differentName(p, entryPatient(c)) {
			// Nothing left to learn could reach identity.Threshold: a
			// different name weighs more against than birth and village
			// together weigh for.
			continue
		}
		v, err := r.Chart(ctx, c.ID)
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		charts = append(charts, identity.Chart{ID: c.ID, Patient: v.Patient})
	}
	return identity.Duplicates(p, self, charts), nil
}

// differentName reports whether identity.Compare finds the names of a and
// b different.
func differentName(a, b record.Patient) bool {
	return slices.ContainsFunc(identity.Compare(a, b).Evidence, func(e identity.Evidence) bool {
		return e.Reason == identity.ReasonDifferentName
	})
}

// Reindex brings every patient's chart's search keys up to date with its
// patient, and returns how many charts it wrote. Storage made before the
// store indexed search keys is indexed when opened from each chart's
// names, village and national ID only (store.EntryKeys): a replica
// upgraded from it calls Reindex once, so that its charts are found by
// phone and identifier too without waiting for each to be edited. A chart
// whose keys are up to date is not written. It loads every chart (about
// a millisecond each), one at a time under the write lock, and leaves the
// cache as it was; it stops at the first error, and calling it again
// carries on.
func (r *Replica) Reindex(ctx context.Context) (int, error) {
	if err := r.checkOpen(); err != nil {
		return 0, err
	}
	cs, err := r.st.Charts(ctx, store.Query{})
	if err != nil {
		return 0, fmt.Errorf("reindex charts: %w", err)
	}
	n := 0
	for _, c := range cs {
		if err := ctx.Err(); err != nil {
			return n, fmt.Errorf("reindex charts: %w", err)
		}
		wrote, err := r.reindex(ctx, c)
		if err != nil {
			return n, fmt.Errorf("reindex chart %s: %w", c.ID, err)
		}
		if wrote {
			n++
		}
	}
	return n, nil
}

// reindex writes a chart's index entry if its stored keys (c.Keys) are
// not those of its patient.
func (r *Replica) reindex(ctx context.Context, c store.Chart) (bool, error) {
	unlock, err := r.lock()
	if err != nil {
		return false, err
	}
	defer unlock()
	l := r.cache.get(c.ID)
	cached := l != nil
	if !cached {
		if l, err = r.loadStored(ctx, c.ID); errors.Is(err, ErrNotFound) {
			return false, nil
		} else if err != nil {
			return false, err
		}
		defer l.doc.Close() //nolint:errcheck // a document only read here
	}
	if l.chart == nil {
		return false, nil
	}
	e, err := indexEntry(r.cfg, l)
	if err != nil {
		return false, err
	}
	if slices.Equal(e.Keys, c.Keys) {
		return false, nil
	}
	var b store.Batch
	if err := r.addChartWrites(&b, l); err != nil {
		r.cache.remove(c.ID)
		return false, err
	}
	if _, err := r.st.Write(ctx, b); err != nil {
		r.cache.remove(c.ID)
		return false, err
	}
	if len(b.Snapshots) > 0 {
		l.sinceSnapshot = 0
	}
	return true, nil
}
