package record_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/record"
)

// checkBoth judges ch on doc with CheckChange and with Checkers made for
// doc (by NewChecker and by NewCheckerOn), requires the verdicts to agree
// exactly, and returns CheckChange's.
func checkBoth(t tb, doc *crdt.Doc, ch crdt.Change) (record.Touched, error) {
	t.Helper()
	want, wantErr := record.CheckChange(doc, ch)
	for _, newChecker := range []func(*crdt.Doc) (*record.Checker, error){record.NewChecker, record.NewCheckerOn} {
		c, err := newChecker(doc)
		require.NoError(t, err, "making a checker")
		got, gotErr := c.Check(ch)
		sameVerdict(t, want, wantErr, got, gotErr)
		require.NoError(t, c.Close())
	}
	return want, wantErr
}

// sentinels are the errors a verdict is matched against.
var sentinels = []error{record.ErrInvalid, record.ErrForbidden, record.ErrNotAChart, crdt.ErrNotFound, crdt.ErrMalformed}

// sameVerdict requires a Checker's verdict to be CheckChange's: the same
// Touched, and the same error (message and sentinels).
func sameVerdict(t tb, want record.Touched, wantErr error, got record.Touched, gotErr error) {
	t.Helper()
	require.Equal(t, want, got, "the checker found another Touched than CheckChange (CheckChange said %v, the checker %v)", wantErr, gotErr)
	if wantErr == nil {
		require.NoError(t, gotErr, "the checker refused what CheckChange accepted")
		return
	}
	require.Error(t, gotErr, "the checker accepted what CheckChange refused: %v", wantErr)
	require.Equal(t, wantErr.Error(), gotErr.Error(), "the checker refused for another reason")
	for _, s := range sentinels {
		require.Equal(t, errors.Is(wantErr, s), errors.Is(gotErr, s), "the errors disagree on %v", s)
	}
}

// ---- forging changes operation by operation ----

// layout is where a chart keeps things, read from its changes: its maps
// of writes and notes, each note's text, and the operation that set
// each write.
type layout struct {
	w, notes crdt.OpID
	texts    map[string]crdt.OpID
	writes   map[string]crdt.OpID
	elems    []crdt.OpID // characters inserted into notes
}

func layoutOf(t tb, d *crdt.Doc) layout {
	t.Helper()
	chs, err := d.Changes(nil)
	require.NoError(t, err)
	l := layout{texts: map[string]crdt.OpID{}, writes: map[string]crdt.OpID{}}
	for _, ch := range chs {
		info, err := crdt.ChangeOps(ch.Raw)
		require.NoError(t, err)
		for _, op := range info.Ops {
			switch {
			case op.Obj == crdt.Root && op.Key.Prop == "w":
				l.w = op.ID
			case op.Obj == crdt.Root && op.Key.Prop == "notes":
				l.notes = op.ID
			case op.Obj == l.notes && op.Action == crdt.ActionMakeText:
				l.texts[op.Key.Prop] = op.ID
			case op.Obj == l.w && op.Action == crdt.ActionSet:
				l.writes[op.Key.Prop] = op.ID
			case op.Insert:
				l.elems = append(l.elems, op.ID)
			}
		}
	}
	return l
}

// forge makes a change on d's heads, by a new actor, from operations
// built by ops (given each operation's ID in turn): the change a
// modified client could send, which Automerge itself would never make.
func forge(t tb, d *crdt.Doc, message string, ops func(next func() crdt.OpID) []crdt.Op) crdt.Change {
	t.Helper()
	x, err := d.OpIndex()
	require.NoError(t, err)
	actor := crdt.NewActorID()
	n := x.MaxOp()
	info := crdt.ChangeInfo{Deps: d.Heads(), Actor: actor, Seq: 1, StartOp: n + 1, Time: t0.Add(time.Hour), Message: message}
	info.Ops = ops(func() crdt.OpID { n++; return crdt.OpID{Counter: n, Actor: actor} })
	seen := map[string]bool{actor: true}
	note := func(id crdt.OpID) {
		if !id.IsRoot() && !seen[id.Actor] {
			seen[id.Actor] = true
			info.OtherActors = append(info.OtherActors, id.Actor)
		}
	}
	for _, op := range info.Ops {
		note(op.Obj)
		note(op.Key.Elem)
		for _, p := range op.Pred {
			note(p)
		}
	}
	slices.Sort(info.OtherActors) // as Automerge writes them
	raw, err := crdt.EncodeChange(info)
	require.NoError(t, err)
	ch, err := crdt.ParseChange(raw)
	require.NoError(t, err, "the forged change is a valid Automerge change")
	return ch
}

func setOp(id, obj crdt.OpID, key, value string, pred ...crdt.OpID) crdt.Op {
	return crdt.Op{ID: id, Obj: obj, Key: crdt.Key{Prop: key}, Action: crdt.ActionSet,
		Value: crdt.Value{Type: crdt.ValueString, Str: value}, Pred: pred}
}

func jsonOf(t tb, w storedWrite) string {
	t.Helper()
	b, err := json.Marshal(w)
	require.NoError(t, err)
	return string(b)
}

// ---- tests ----

// A checker given a chart's history one change at a time, from nothing,
// judges each change as CheckChange does on what came before, and judges
// most from their operations.
func TestCheckerJudgesAChartsHistory(t *testing.T) {
	f := newFixture(t)
	do(t, f.chart, nurse, f.tick(), record.EditNote{EncounterID: f.encounter, Pos: 0, Insert: "Child. "})
	do(t, f.chart, nurse, f.tick(), record.EditNote{EncounterID: f.encounter, Pos: 0, Delete: 7})
	do(t, f.chart, registry, f.tick(), record.Refer{ToClinic: "district-hospital", Reason: "x-ray"})
	do(t, f.chart, registry, f.tick(), record.UpdateDemographics{HomeClinic: record.Ptr("gatundu-clinic")})
	chs, err := f.chart.Doc().Changes(nil)
	require.NoError(t, err)

	ref, err := crdt.New(crdt.NewActorID())
	require.NoError(t, err)
	c, err := record.NewChecker(ref)
	require.NoError(t, err)
	for i, ch := range chs {
		want, wantErr := record.CheckChange(ref, ch)
		require.NoError(t, wantErr, "change %d (%s)", i, ch.Message)
		got, gotErr := c.Check(ch)
		sameVerdict(t, want, wantErr, got, gotErr)
		_, err := ref.Apply(ch)
		require.NoError(t, err)
	}
	fast, slow := record.CheckerCounts(c)
	assert.Equal(t, len(chs), fast+slow)
	// The first change registers the chart; two devices' concurrent
	// changes are judged by CheckChange, the rest from their operations.
	assert.LessOrEqual(t, slow, 5, "changes judged by CheckChange")
	last, err := c.Check(chs[len(chs)-1])
	require.NoError(t, err, "a change checked again is accepted again")
	assert.Equal(t, []string{"district-hospital", "kamuga-dispensary"}, last.Scope, "the scope the last change was made on, before it moved the home clinic")
}

// A checker leaves the document it was made for alone.
func TestCheckerKeepsItsOwnCopy(t *testing.T) {
	f := newFixture(t)
	heads := f.chart.Doc().Heads()
	c, err := record.NewChecker(f.chart.Doc())
	require.NoError(t, err)
	other := fork(t, f.chart)
	res, err := other.Do(doctor, f.tick(), record.Diagnose{Text: "Asthma"})
	require.NoError(t, err)
	_, err = c.Check(res.Change)
	require.NoError(t, err)
	assert.Equal(t, heads, f.chart.Doc().Heads(), "checking a change applied it to the document")
	assert.False(t, f.chart.Doc().Has(res.Change.Hash))
}

// A refused change leaves the checker as it was: the next change that
// follows what it holds is judged from its operations again. A concurrent
// change goes to CheckChange, as does a change made before it arrived;
// once a device has seen both, its changes are judged fast again.
func TestCheckerAfterRefusalsAndBranches(t *testing.T) {
	f := newFixture(t)
	c, err := record.NewChecker(f.chart.Doc())
	require.NoError(t, err)
	counts := func() [2]int { fast, slow := record.CheckerCounts(c); return [2]int{fast, slow} }
	check := func(ch crdt.Change) error { _, err := c.Check(ch); return err }

	a, b := fork(t, f.chart), fork(t, f.chart)
	res, err := a.Do(nurse, f.tick(), record.AddAllergy{Substance: "Sulfa", Severity: "mild"})
	require.NoError(t, err)
	require.NoError(t, check(res.Change))
	assert.Equal(t, [2]int{1, 0}, counts())

	bad := craft(t, a, messageBy(labTech, "x"), putWrites(writeBy(labTech, record.KindPrescription, f.rxActive, "dose", "5")))
	require.ErrorIs(t, check(bad), record.ErrForbidden)
	assert.Equal(t, [2]int{1, 1}, counts(), "a refusal is CheckChange's")

	res, err = a.Do(nurse, f.tick(), record.AddAllergy{Substance: "Dust", Severity: "mild"})
	require.NoError(t, err)
	require.NoError(t, check(res.Change))
	assert.Equal(t, [2]int{2, 1}, counts(), "the run goes on after a refusal")

	concurrent, err := b.Do(doctor, f.tick(), record.Diagnose{Text: "Asthma"})
	require.NoError(t, err)
	require.NoError(t, check(concurrent.Change))
	res, err = a.Do(nurse, f.tick(), record.AddAllergy{Substance: "Pollen", Severity: "mild"})
	require.NoError(t, err)
	require.NoError(t, check(res.Change))
	assert.Equal(t, [2]int{2, 3}, counts(), "changes that do not follow everything held")

	merge(t, a, b)
	res, err = a.Do(nurse, f.tick(), record.AddAllergy{Substance: "Mould", Severity: "mild"})
	require.NoError(t, err)
	require.NoError(t, check(res.Change))
	assert.Equal(t, [2]int{3, 3}, counts(), "a change made on everything held")
}

// A change whose dependencies the checker does not hold is refused with
// crdt.ErrNotFound, as by CheckChange, and may come again once they
// have.
func TestCheckerNeedsDependencies(t *testing.T) {
	f := newFixture(t)
	c, err := record.NewChecker(f.chart.Doc())
	require.NoError(t, err)
	other := fork(t, f.chart)
	first, err := other.Do(doctor, f.tick(), record.Diagnose{Text: "Asthma"})
	require.NoError(t, err)
	second, err := other.Do(doctor, f.tick(), record.ChangeDiagnosisStatus{DiagnosisID: first.EntryID, ClinicalStatus: "resolved"})
	require.NoError(t, err)
	_, err = c.Check(second.Change)
	require.ErrorIs(t, err, crdt.ErrNotFound)
	_, err = c.Check(first.Change)
	require.NoError(t, err)
	touched, err := c.Check(second.Change)
	require.NoError(t, err)
	assert.Equal(t, []record.Section{record.SectionDiagnoses}, touched.Sections)
}

// Changes a modified client could make, beyond those of the CheckChange
// tests: both judges refuse them as invalid, or, for the last few,
// accept them alike.
func TestCheckerAgreesOnForgedChanges(t *testing.T) {
	f := newFixture(t)
	l := layoutOf(t, f.chart.Doc())
	dose := writeIDs(t, f.chart, f.rxActive, "dose")
	refused := []struct {
		name string
		ch   func() crdt.Change
	}{
		{"deletes a write", func() crdt.Change {
			return forge(t, f.chart.Doc(), messageBy(doctor, "x"), func(next func() crdt.OpID) []crdt.Op {
				return []crdt.Op{{ID: next(), Obj: l.w, Key: crdt.Key{Prop: dose[0]}, Action: crdt.ActionDelete, Pred: []crdt.OpID{l.writes[dose[0]]}}}
			})
		}},
		{"writes into an object that does not exist", func() crdt.Change {
			return forge(t, f.chart.Doc(), messageBy(doctor, "x"), func(next func() crdt.OpID) []crdt.Op {
				elsewhere := crdt.OpID{Counter: l.w.Counter + 1000, Actor: crdt.NewActorID()}
				return []crdt.Op{setOp(next(), elsewhere, uuid.NewString(), jsonOf(t, writeBy(doctor, record.KindDiagnosis, uuid.NewString(), "text", "Asthma")))}
			})
		}},
		{"overwrites an operation that does not exist", func() crdt.Change {
			return forge(t, f.chart.Doc(), messageBy(doctor, "x"), func(next func() crdt.OpID) []crdt.Op {
				return []crdt.Op{setOp(next(), l.w, uuid.NewString(), jsonOf(t, writeBy(doctor, record.KindDiagnosis, uuid.NewString(), "text", "Asthma")),
					crdt.OpID{Counter: 1, Actor: crdt.NewActorID()})}
			})
		}},
		{"writes a number", func() crdt.Change {
			return forge(t, f.chart.Doc(), messageBy(doctor, "x"), func(next func() crdt.OpID) []crdt.Op {
				return []crdt.Op{{ID: next(), Obj: l.w, Key: crdt.Key{Prop: uuid.NewString()}, Action: crdt.ActionSet, Value: crdt.Value{Type: crdt.ValueInt, Int: 5}}}
			})
		}},
		{"replaces a note's text by a map of its own", func() crdt.Change {
			return forge(t, f.chart.Doc(), messageBy(nurse, "x"), func(next func() crdt.OpID) []crdt.Op {
				return []crdt.Op{{ID: next(), Obj: l.notes, Key: crdt.Key{Prop: f.encounter}, Action: crdt.ActionMakeMap, Pred: []crdt.OpID{l.texts[f.encounter]}},
					{ID: next(), Obj: l.w, Key: crdt.Key{Prop: "x"}, Action: crdt.ActionMakeList}}
			})
		}},
		{"uses a map key in a text (automerge-rs panics applying it)", func() crdt.Change {
			return forge(t, f.chart.Doc(), messageBy(nurse, "x"), func(next func() crdt.OpID) []crdt.Op {
				text := next()
				return []crdt.Op{
					{ID: text, Obj: l.notes, Key: crdt.Key{Prop: uuid.NewString()}, Action: crdt.ActionMakeText},
					{ID: next(), Obj: text, Key: crdt.Key{IsElem: true}, Insert: true, Action: crdt.ActionSet, Value: crdt.Value{Type: crdt.ValueString, Str: "a"}},
					setOp(next(), text, "id", "x"),
				}
			})
		}},
		{"adds a write under another device's key", func() crdt.Change {
			return craft(t, f.chart, messageBy(doctor, "x"), putKeyed(func(actor string, seq uint64) string {
				return fmt.Sprintf("%s.%d.0", crdt.NewActorID(), seq)
			}, writeBy(doctor, record.KindDiagnosis, uuid.NewString(), "text", "Asthma")))
		}},
		{"adds a write under its author's key of a later change", func() crdt.Change {
			return craft(t, f.chart, messageBy(doctor, "x"), putKeyed(func(actor string, seq uint64) string {
				return fmt.Sprintf("%s.%d.0", actor, seq+1)
			}, writeBy(doctor, record.KindDiagnosis, uuid.NewString(), "text", "Asthma")))
		}},
		{"adds a write under its own key with a padded index", func() crdt.Change {
			return craft(t, f.chart, messageBy(doctor, "x"), putKeyed(func(actor string, seq uint64) string {
				return fmt.Sprintf("%s.%d.01", actor, seq)
			}, writeBy(doctor, record.KindDiagnosis, uuid.NewString(), "text", "Asthma")))
		}},
		{"adds a write under a dotted key that names no change", func() crdt.Change {
			return craft(t, f.chart, messageBy(doctor, "x"), putKeyed(func(string, uint64) string { return "w.1" },
				writeBy(doctor, record.KindDiagnosis, uuid.NewString(), "text", "Asthma")))
		}},
		{"rewrites a write with the same key twice", func() crdt.Change {
			return craft(t, f.chart, messageBy(doctor, "x"), func(tx *crdt.Tx) error {
				id := uuid.NewString()
				if err := tx.Put([]string{"w"}, id, jsonOf(t, writeBy(doctor, record.KindDiagnosis, uuid.NewString(), "text", "Asthma"))); err != nil {
					return err
				}
				return tx.Put([]string{"w"}, id, "{}")
			})
		}},
	}
	for _, tc := range refused {
		t.Run(tc.name, func(t *testing.T) {
			_, err := checkRefused(t, f.chart, tc.ch())
			assert.ErrorIs(t, err, record.ErrInvalid)
		})
	}

	// Accepted alike: changes this package would not make, but which
	// change nothing they should not.
	labNote := func(tx *crdt.Tx) error { return tx.SpliceText([]string{"notes"}, f.encounter, 0, 1, "F") }
	accepted := []struct {
		name     string
		ch       func() crdt.Change
		sections []record.Section
	}{
		{"rewrites a write with what it held", func() crdt.Change {
			all, err := f.chart.Doc().Strings("w")
			require.NoError(t, err)
			return forge(t, f.chart.Doc(), messageBy(doctor, "x"), func(next func() crdt.OpID) []crdt.Op {
				return []crdt.Op{setOp(next(), l.w, dose[0], all[dose[0]], l.writes[dose[0]])}
			})
		}, nil},
		{"a lab technician's note edit that leaves the text as it was", func() crdt.Change {
			return craft(t, f.chart, messageBy(labTech, "x"), labNote)
		}, nil},
		{"a write under its own change's key", func() crdt.Change {
			return craft(t, f.chart, messageBy(nurse, "x"), putKeyed(func(actor string, seq uint64) string {
				return fmt.Sprintf("%s.%d.7", actor, seq)
			}, writeBy(nurse, record.KindAllergy, uuid.NewString(), "substance", "Sulfa")))
		}, []record.Section{record.SectionAllergies}},
		{"two writes in one change", func() crdt.Change {
			return craft(t, f.chart, messageBy(nurse, "x"), putWrites(
				writeBy(nurse, record.KindAllergy, uuid.NewString(), "substance", "Sulfa"),
				writeBy(nurse, record.KindAllergy, uuid.NewString(), "substance", "Latex")))
		}, []record.Section{record.SectionAllergies}},
		{"a note's text replaced by a string", func() crdt.Change {
			return craft(t, f.chart, messageBy(nurse, "x"), func(tx *crdt.Tx) error { return tx.Put([]string{"notes"}, f.encounter, "gone") })
		}, []record.Section{record.SectionEncounters}},
	}
	for _, tc := range accepted {
		t.Run(tc.name, func(t *testing.T) {
			ch := tc.ch()
			touched, err := checkBoth(t, f.chart.Doc(), ch)
			require.NoError(t, err)
			assert.Equal(t, tc.sections, touched.Sections)
		})
	}
}

// ---- the property ----

// forgeKinds are the hostile changes the property test draws.
var forgeKinds = []string{
	"rewrite-write", "same-rewrite", "delete-write", "replace-container", "other-author", "missing-object",
	"unknown-pred", "forbidden-role", "note-for-nothing", "noop-note-edit", "note-as-string", "identity",
	"root-key", "valid-allergy", "wrong-supersedes", "double-put", "bad-identifier", "valid-identifier",
	"foreign-key", "own-key",
}

// drawForged draws a hostile change on d, a device's copy of a chart
// showing v; nil if the chart has nothing the kind needs.
func drawForged(t *rapid.T, d *crdt.Doc, v record.View, kind string) *crdt.Change {
	by := rapid.SampledFrom(staff).Draw(t, "forger")
	msg := messageBy(by, "forged")
	edit := func(fn func(tx *crdt.Tx) error) *crdt.Change {
		f, err := d.Fork(nil, crdt.NewActorID())
		require.NoError(t, err)
		ch, err := f.Edit(msg, t0.Add(time.Hour), fn)
		require.NoError(t, err, "forging %s", kind)
		return &ch
	}
	l := layoutOf(t, d)
	all, err := d.Strings("w")
	require.NoError(t, err)
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range all {
			if !yield(k) {
				return
			}
		}
	})
	var encs []string
	for _, e := range v.Encounters {
		if e.Note != "" {
			encs = append(encs, e.ID)
		}
	}
	newWrite := func(a record.Author) string {
		return jsonOf(t, writeBy(a, record.KindAllergy, uuid.NewString(), "substance", "Sulfa"))
	}
	switch kind {
	case "rewrite-write", "same-rewrite", "delete-write", "wrong-supersedes":
		if len(keys) == 0 {
			return nil
		}
		k := rapid.SampledFrom(keys).Draw(t, "write")
		switch kind {
		case "rewrite-write":
			return edit(func(tx *crdt.Tx) error { return tx.Put([]string{"w"}, k, all[k]+" ") })
		case "same-rewrite": // Automerge writes nothing for this; a forger can
			ch := forge(t, d, msg, func(next func() crdt.OpID) []crdt.Op {
				return []crdt.Op{setOp(next(), l.w, k, all[k], l.writes[k])}
			})
			return &ch
		case "delete-write":
			ch := forge(t, d, msg, func(next func() crdt.OpID) []crdt.Op {
				return []crdt.Op{{ID: next(), Obj: l.w, Key: crdt.Key{Prop: k}, Action: crdt.ActionDelete, Pred: []crdt.OpID{l.writes[k]}}}
			})
			return &ch
		}
		var w storedWrite
		require.NoError(t, json.Unmarshal([]byte(all[k]), &w))
		field := rapid.SampledFrom([]string{w.Field, "status_reason"}).Draw(t, "field")
		return edit(putWrites(writeBy(by, w.Kind, w.Entry, field, "x", k)))
	case "replace-container":
		c := rapid.SampledFrom([]string{"w", "notes", "chart"}).Draw(t, "container")
		return edit(func(tx *crdt.Tx) error { return tx.Put(nil, c, "gone") })
	case "other-author":
		other := rapid.SampledFrom(staff).Draw(t, "attributed to")
		return edit(func(tx *crdt.Tx) error { return tx.Put([]string{"w"}, uuid.NewString(), newWrite(other)) })
	case "missing-object":
		ch := forge(t, d, msg, func(next func() crdt.OpID) []crdt.Op {
			obj := crdt.OpID{Counter: uint64(rapid.IntRange(1, 500).Draw(t, "counter")), Actor: rapid.SampledFrom([]string{l.w.Actor, "abcd"}).Draw(t, "actor")}
			return []crdt.Op{setOp(next(), obj, uuid.NewString(), newWrite(by))}
		})
		return &ch
	case "unknown-pred":
		ch := forge(t, d, msg, func(next func() crdt.OpID) []crdt.Op {
			return []crdt.Op{setOp(next(), l.w, uuid.NewString(), newWrite(by), crdt.OpID{Counter: 7, Actor: "abcd"})}
		})
		return &ch
	case "forbidden-role":
		rx := writeBy(by, record.KindPrescription, uuid.NewString(), "drug", "Morphine")
		return edit(putWrites(rx))
	case "note-for-nothing":
		return edit(func(tx *crdt.Tx) error { return tx.PutText([]string{"notes"}, uuid.NewString(), "hello") })
	case "noop-note-edit", "note-as-string":
		if len(encs) == 0 {
			return nil
		}
		e := rapid.SampledFrom(encs).Draw(t, "encounter")
		if kind == "note-as-string" {
			return edit(func(tx *crdt.Tx) error { return tx.Put([]string{"notes"}, e, "gone") })
		}
		text, err := d.Text([]string{"notes"}, e)
		require.NoError(t, err)
		first := string([]rune(text)[:1])
		return edit(func(tx *crdt.Tx) error { return tx.SpliceText([]string{"notes"}, e, 0, 1, first) })
	case "identity":
		return edit(func(tx *crdt.Tx) error { return tx.Put([]string{"chart"}, "schema", "2") })
	case "root-key":
		return edit(func(tx *crdt.Tx) error { return tx.Put(nil, "extra", "x") })
	case "valid-allergy":
		return edit(func(tx *crdt.Tx) error { return tx.Put([]string{"w"}, uuid.NewString(), newWrite(by)) })
	case "bad-identifier", "valid-identifier":
		v := rapid.SampledFrom([]string{"aadhaar|234123412345", "aadhaar|2341 2341 2346", "phone|x"}).Draw(t, "identifier")
		if kind == "valid-identifier" {
			v = rapid.SampledFrom([]string{"aadhaar|234123412346", "phone|+254700000001", "urn:x|a b"}).Draw(t, "identifier")
		}
		return edit(putWrites(writeBy(by, record.KindIdentifier, uuid.NewString(), "identifier", v)))
	case "foreign-key", "own-key":
		return edit(func(tx *crdt.Tx) error {
			actor, seq, err := tx.Change()
			if err != nil {
				return err
			}
			k := fmt.Sprintf("%s.%d.%d", actor, seq, rapid.IntRange(0, 20).Draw(t, "index"))
			if kind == "foreign-key" {
				k = rapid.SampledFrom([]string{
					fmt.Sprintf("%s.%d.0", d.Actor(), seq),
					fmt.Sprintf("%s.%d.0", actor, seq+uint64(rapid.IntRange(1, 3).Draw(t, "ahead"))),
					fmt.Sprintf("%s.%d.00", actor, seq),
					fmt.Sprintf("%s.%d", actor, seq),
				}).Draw(t, "foreign key")
			}
			return tx.Put([]string{"w"}, k, newWrite(by))
		})
	case "double-put":
		return edit(func(tx *crdt.Tx) error {
			k := uuid.NewString()
			if err := tx.Put([]string{"w"}, k, newWrite(by)); err != nil {
				return err
			}
			return tx.Put([]string{"w"}, k, newWrite(by))
		})
	}
	panic("unknown forge kind " + kind)
}

// TestPropertyCheckerAgreesWithCheckChange: devices change a chart at
// random, with honest operations, operations their role forbids, and
// hostile changes made by writing to the document directly; a checking
// replica receives every change in causal order (now and then one before
// its dependencies). A Checker and CheckChange on the replica's
// document judge every change alike: the same Touched, the same error.
// The Checker keeps its own copy of the chart (NewChecker), or reads the
// replica's document (NewCheckerOn) as a receive uses it: the changes it
// accepts are applied to the document in runs, each once it is checked,
// and now and then it rests and resumes between runs, as between
// bundles.
func TestPropertyCheckerAgreesWithCheckChange(t *testing.T) {
	var fastTotal, slowTotal int
	rapid.Check(t, func(t *rapid.T) {
		base := newChart(t)
		n := rapid.IntRange(1, 3).Draw(t, "devices")
		devs := make([]*record.Chart, n)
		for i := range devs {
			devs[i] = fork(t, base)
		}
		// The receiving replica holds the registration, or nothing yet.
		ref, err := crdt.New(crdt.NewActorID())
		require.NoError(t, err)
		if rapid.Bool().Draw(t, "registered") {
			_, err := ref.Merge(base.Doc())
			require.NoError(t, err)
		}
		// held is the document the Checker is made on: ref itself, or,
		// on the replica's document, a copy that takes what the Checker
		// accepted in runs.
		on := rapid.Bool().Draw(t, "on the replica's document")
		held, newChecker := ref, record.NewChecker
		if on {
			held, err = crdt.New(crdt.NewActorID())
			require.NoError(t, err)
			_, err = held.Merge(ref)
			require.NoError(t, err)
			newChecker = record.NewCheckerOn
		}
		c, err := newChecker(held)
		require.NoError(t, err)
		var run []crdt.Change // accepted, not yet applied to held
		endRun := func() {
			if !on {
				return
			}
			_, err := held.Apply(run...)
			require.NoError(t, err)
			run = nil
			require.Equal(t, ref.Heads(), held.Heads())
			if rapid.Bool().Draw(t, "rest") {
				require.True(t, c.Rest(held), "the document holds what the Checker holds")
				require.True(t, c.Resume(held))
			}
		}

		judge := func(ch crdt.Change) {
			want, wantErr := record.CheckChange(ref, ch)
			got, gotErr := c.Check(ch)
			sameVerdict(t, want, wantErr, got, gotErr)
			if wantErr == nil {
				_, err := ref.Apply(ch)
				require.NoError(t, err)
				run = append(run, ch)
			}
			if on && rapid.IntRange(0, 3).Draw(t, "end of a run") == 0 {
				endRun()
			}
		}
		// deliver gives the replica the device's changes it lacks, in
		// causal order, or now and then the last of them first.
		deliver := func(d *crdt.Doc) {
			chs, err := d.Changes(nil)
			require.NoError(t, err)
			var fresh []crdt.Change
			for _, ch := range chs {
				if !ref.Has(ch.Hash) {
					fresh = append(fresh, ch)
				}
			}
			if len(fresh) > 1 && rapid.IntRange(0, 4).Draw(t, "early") == 0 {
				judge(fresh[len(fresh)-1])
			}
			for _, ch := range fresh {
				judge(ch)
			}
		}

		for range rapid.IntRange(5, 30).Draw(t, "steps") {
			i := rapid.IntRange(0, n-1).Draw(t, "device")
			dev := devs[i]
			switch rapid.IntRange(0, 9).Draw(t, "action") {
			case 0: // sync with another device, or with the replica
				if rapid.Bool().Draw(t, "from the replica") {
					_, err := dev.Doc().Merge(ref)
					require.NoError(t, err)
				} else if j := rapid.IntRange(0, n-1).Draw(t, "other"); j != i {
					merge(t, dev, devs[j])
				}
			case 1, 2: // a hostile change, sent at once
				v := view(t, dev)
				if ch := drawForged(t, dev.Doc(), v, rapid.SampledFrom(forgeKinds).Draw(t, "forgery")); ch != nil {
					deliver(dev.Doc())
					judge(*ch)
				}
			default: // an honest operation, by anyone
				v := view(t, dev)
				kind := rapid.SampledFrom(append(slices.Clone(opKinds), "refer", "home-clinic")).Draw(t, "op")
				var op record.Op
				switch kind {
				case "refer":
					op = record.Refer{ToClinic: rapid.SampledFrom([]string{"district-hospital", "gatundu-clinic"}).Draw(t, "clinic")}
				case "home-clinic":
					op = record.UpdateDemographics{HomeClinic: record.Ptr(rapid.SampledFrom([]string{"kamuga-dispensary", "asafo-clinic"}).Draw(t, "home"))}
				default:
					op = drawOp(t, kind, v)
				}
				if op == nil {
					continue
				}
				by := rapid.SampledFrom(staff).Draw(t, "author")
				at := t0.Add(time.Duration(rapid.IntRange(0, 60).Draw(t, "minute")) * time.Minute)
				if _, err := dev.Do(by, at, op); err != nil {
					continue
				}
				if rapid.IntRange(0, 2).Draw(t, "send") == 0 {
					continue // sent later, with others
				}
				deliver(dev.Doc())
			}
		}
		for _, dev := range devs {
			deliver(dev.Doc())
		}
		endRun()
		fast, slow := record.CheckerCounts(c)
		fastTotal += fast
		slowTotal += slow
	})
	t.Logf("changes judged from their operations: %d, by CheckChange: %d", fastTotal, slowTotal)
	assert.Positive(t, fastTotal, "no change was judged from its operations")
}

func ExampleChecker() {
	nurse := record.Author{UserID: "u-amina", Role: record.RoleNurse, Device: "tablet-1"}
	chart, reg, _ := record.New(uuid.NewString(), crdt.NewActorID(), nurse, t0, record.Register{
		GivenName: "Wanjiru", Sex: "female", EstimatedBirthYear: 1988, HomeClinic: "kamuga-dispensary"})
	var sent []crdt.Change
	sent = append(sent, reg.Change)
	for i := range 3 {
		res, _ := chart.Do(nurse, t0.Add(time.Duration(i)*time.Minute), record.AddAllergy{Substance: fmt.Sprint("Substance ", i), Severity: "mild"})
		sent = append(sent, res.Change)
	}

	// The receiving replica holds nothing of the chart yet.
	held, _ := crdt.New(crdt.NewActorID())
	checker, _ := record.NewChecker(held)
	for _, ch := range sent {
		touched, err := checker.Check(ch)
		fmt.Println(touched.Sections, touched.Scope, err)
	}
	// Output:
	// [demographics] [kamuga-dispensary] <nil>
	// [allergies] [kamuga-dispensary] <nil>
	// [allergies] [kamuga-dispensary] <nil>
	// [allergies] [kamuga-dispensary] <nil>
}

// ChangeOps reads record's own changes as what they do: every write a
// change adds is a string set at a new key of the map of writes, a new
// note is a text made in the map of notes, and a note edit inserts and
// deletes as many characters as the note gains and loses.
func TestChangeOpsReadsRecordChanges(t *testing.T) {
	f := newFixture(t)
	do(t, f.chart, nurse, f.tick(), record.EditNote{EncounterID: f.encounter, Pos: 3, Delete: 4, Insert: "für "})
	do(t, f.chart, nurse, f.tick(), record.EditNote{EncounterID: f.encounter, Pos: 0, Insert: "🙂 "})
	do(t, f.chart, registry, f.tick(), record.Refer{ToClinic: "district-hospital"})
	chs, err := f.chart.Doc().Changes(nil)
	require.NoError(t, err)

	d, err := crdt.New(crdt.NewActorID())
	require.NoError(t, err)
	var w, notes crdt.OpID
	texts := map[crdt.OpID]string{} // note texts, to their encounter
	for _, ch := range chs {
		info, err := crdt.ChangeOps(ch.Raw)
		require.NoError(t, err)
		require.Equal(t, ch.Message, info.Message)
		require.ElementsMatch(t, ch.Deps, info.Deps)
		if len(ch.Deps) == 0 {
			for _, op := range info.Ops {
				if op.Obj.IsRoot() {
					switch op.Key.Prop {
					case "w":
						w = op.ID
					case "notes":
						notes = op.ID
					}
				}
			}
		}
		before, _ := d.Strings("w")
		beforeNotes := map[string]string{}
		for _, k := range noteKeys(t, d) {
			beforeNotes[k], _ = d.Text([]string{"notes"}, k)
		}
		_, err = d.Apply(ch)
		require.NoError(t, err)
		after, err := d.Strings("w")
		require.NoError(t, err)

		added := map[string]string{}
		grown := map[string]int{} // characters each note gains, by the operations
		for _, op := range info.Ops {
			switch {
			case op.Obj == w:
				require.Equal(t, crdt.ActionSet, op.Action)
				require.Empty(t, op.Pred, "a write overwrites nothing")
				require.Equal(t, crdt.ValueString, op.Value.Type)
				added[op.Key.Prop] = op.Value.Str
			case op.Obj == notes:
				require.Equal(t, crdt.ActionMakeText, op.Action)
				texts[op.ID] = op.Key.Prop
				grown[op.Key.Prop] += 0
			case texts[op.Obj] != "":
				if op.Insert {
					require.Equal(t, crdt.ActionSet, op.Action)
					grown[texts[op.Obj]] += utf8.RuneCountInString(op.Value.Str)
				} else {
					require.Equal(t, crdt.ActionDelete, op.Action)
					require.Equal(t, []crdt.OpID{op.Key.Elem}, op.Pred)
					grown[texts[op.Obj]]--
				}
			case op.Obj.IsRoot() || len(ch.Deps) == 0:
				// the registration makes the chart's maps and identity
			default:
				t.Fatalf("change %q: operation %s on %s, which is no map or note of the chart", ch.Message, op.ID, op.Obj)
			}
		}
		for k, v := range after {
			if old, ok := before[k]; ok {
				require.Equal(t, old, v, "a write changed")
				continue
			}
			require.Equal(t, v, added[k], "change %q adds write %s", ch.Message, k)
			delete(added, k)
		}
		require.Empty(t, added, "writes the operations add but the chart does not show")
		for k, n := range grown {
			text, err := d.Text([]string{"notes"}, k)
			require.NoError(t, err)
			require.Equal(t, utf8.RuneCountInString(beforeNotes[k])+n, utf8.RuneCountInString(text), "the note of %s", k)
		}
	}
	require.NotEmpty(t, texts, "the history makes notes")
}

func noteKeys(t tb, d *crdt.Doc) []string {
	keys, err := d.Keys("notes")
	if errors.Is(err, crdt.ErrNotFound) {
		return nil
	}
	require.NoError(t, err)
	return keys
}

// Whether a note edit changes the note's text decides whether it touches
// the encounters section; the Checker works it out from the characters
// inserted and deleted, and reads the text when it cannot (as many bytes
// deleted as inserted). Each edit, through one Checker, gets CheckChange's
// verdict.
func TestCheckerJudgesNoteEdits(t *testing.T) {
	f := newFixture(t)
	dev := fork(t, f.chart)
	ref, err := f.chart.Doc().Fork(nil, crdt.NewActorID())
	require.NoError(t, err)
	c, err := record.NewChecker(ref)
	require.NoError(t, err)
	l := layoutOf(t, dev.Doc())
	text := l.texts[f.encounter]
	splice := func(by record.Author, pos, del int, s string) func(tx *crdt.Tx) error {
		return func(tx *crdt.Tx) error { return tx.SpliceText([]string{"notes"}, f.encounter, pos, del, s) }
	}
	var firstChar crdt.OpID
	for _, e := range l.elems {
		firstChar = e
		break
	}
	steps := []struct {
		name     string
		ch       func() crdt.Change
		sections []record.Section
	}{
		{"inserts", func() crdt.Change { return edit(t, dev, nurse, splice(nurse, 0, 0, "Child. ")) }, []record.Section{record.SectionEncounters}},
		{"deletes", func() crdt.Change { return edit(t, dev, nurse, splice(nurse, 0, 7, "")) }, []record.Section{record.SectionEncounters}},
		{"replaces as many bytes", func() crdt.Change { return edit(t, dev, nurse, splice(nurse, 0, 1, "f")) }, []record.Section{record.SectionEncounters}},
		{"replaces a character by itself", func() crdt.Change { return edit(t, dev, labTech, splice(labTech, 0, 1, "f")) }, nil},
		{"inserts nothing", func() crdt.Change {
			return forgeOn(t, dev, messageBy(labTech, "x"), func(next func() crdt.OpID) []crdt.Op {
				return []crdt.Op{{ID: next(), Obj: text, Key: crdt.Key{IsElem: true}, Insert: true, Action: crdt.ActionSet, Value: crdt.Value{Type: crdt.ValueString}}}
			})
		}, nil},
		{"deletes a deleted character", func() crdt.Change {
			return forgeOn(t, dev, messageBy(labTech, "x"), func(next func() crdt.OpID) []crdt.Op {
				return []crdt.Op{{ID: next(), Obj: text, Key: crdt.Key{IsElem: true, Elem: firstChar}, Action: crdt.ActionDelete, Pred: []crdt.OpID{firstChar}}}
			})
		}, nil},
		{"inserts and deletes what it inserted", func() crdt.Change {
			return forgeOn(t, dev, messageBy(labTech, "x"), func(next func() crdt.OpID) []crdt.Op {
				in := next()
				return []crdt.Op{
					{ID: in, Obj: text, Key: crdt.Key{IsElem: true}, Insert: true, Action: crdt.ActionSet, Value: crdt.Value{Type: crdt.ValueString, Str: "x"}},
					{ID: next(), Obj: text, Key: crdt.Key{IsElem: true, Elem: in}, Action: crdt.ActionDelete, Pred: []crdt.OpID{in}},
				}
			})
		}, nil},
		{"a new encounter's note", func() crdt.Change {
			res, err := dev.Do(nurse, f.tick(), record.AddEncounter{Complaint: "rash", Note: "itchy"})
			require.NoError(t, err)
			return res.Change
		}, []record.Section{record.SectionEncounters}},
		{"a new encounter without a note", func() crdt.Change {
			res, err := dev.Do(nurse, f.tick(), record.AddEncounter{Complaint: "rash"})
			require.NoError(t, err)
			return res.Change
		}, []record.Section{record.SectionEncounters}},
	}
	for _, s := range steps {
		ch := s.ch()
		want, wantErr := record.CheckChange(ref, ch)
		got, gotErr := c.Check(ch)
		sameVerdict(t, want, wantErr, got, gotErr)
		require.NoError(t, wantErr, s.name)
		assert.Equal(t, s.sections, want.Sections, s.name)
		_, err := ref.Apply(ch)
		require.NoError(t, err)
	}
	// All but one: a lab technician's edit deleting as many bytes as it
	// inserts is refused if the text changes, which only applying it
	// tells, and nothing refuses a change the Checker has applied.
	fast, slow := record.CheckerCounts(c)
	assert.Equal(t, [2]int{len(steps) - 1, 1}, [2]int{fast, slow}, "changes judged from their operations, and by CheckChange")
}

// edit makes a change on dev's document directly, as by.
func edit(t tb, dev *record.Chart, by record.Author, fn func(tx *crdt.Tx) error) crdt.Change {
	t.Helper()
	ch, err := dev.Doc().Edit(messageBy(by, "x"), t0.Add(time.Hour), fn)
	require.NoError(t, err)
	return ch
}

// forgeOn forges a change on dev's document and applies it there.
func forgeOn(t tb, dev *record.Chart, message string, ops func(next func() crdt.OpID) []crdt.Op) crdt.Change {
	t.Helper()
	ch := forge(t, dev.Doc(), message, ops)
	_, err := dev.Doc().Apply(ch)
	require.NoError(t, err)
	return ch
}

// A chart that adopts a Checker's state reads as the chart read afresh,
// and a Checker that does not hold the chart's version is not adopted.
func TestChartAdoptsACheckersState(t *testing.T) {
	f := newFixture(t)
	do(t, f.chart, nurse, f.tick(), record.EditNote{EncounterID: f.encounter, Pos: 0, Insert: "Child. "})
	do(t, f.chart, registry, f.tick(), record.Refer{ToClinic: "district-hospital", Reason: "x-ray"})
	do(t, f.chart, registry, f.tick(), record.UpdateDemographics{Phone: record.Ptr("+254 700 000 111")})
	chs, err := f.chart.Doc().Changes(nil)
	require.NoError(t, err)

	empty, err := crdt.New(crdt.NewActorID())
	require.NoError(t, err)
	c, err := record.NewChecker(empty)
	require.NoError(t, err)
	received, err := crdt.New(crdt.NewActorID())
	require.NoError(t, err)
	for _, ch := range chs {
		_, err := c.Check(ch)
		require.NoError(t, err)
	}
	_, err = received.Apply(chs...)
	require.NoError(t, err)
	chart, err := record.Open(received)
	require.NoError(t, err)
	require.True(t, chart.Adopt(c), "the checker holds the received version")
	assert.Equal(t, view(t, fork(t, chart)), view(t, chart), "the adopted state reads as the chart read afresh")
	scope, err := chart.Scope()
	require.NoError(t, err)
	assert.Equal(t, []string{"district-hospital", "kamuga-dispensary"}, scope)

	// A checker behind the chart is not adopted.
	behind, err := record.NewChecker(empty)
	require.NoError(t, err)
	for _, ch := range chs[:len(chs)-1] {
		_, err := behind.Check(ch)
		require.NoError(t, err)
	}
	other, err := record.Open(fork(t, chart).Doc())
	require.NoError(t, err)
	assert.False(t, other.Adopt(behind), "a checker of an earlier version")
}
