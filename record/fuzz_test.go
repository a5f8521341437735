package record_test

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/record"
)

// seedChart is a chart with entries of every kind, a merged conflict and
// a note, as fuzz seeds start from.
func seedChart(t tb) *record.Chart {
	t.Helper()
	c := newChart(t)
	at := t0
	next := func() time.Time { at = at.Add(time.Minute); return at }
	rx := do(t, c, doctor, next(), record.Prescribe{Drug: "Amoxicillin", Dose: 500, DoseUnit: "mg", Route: "oral", Frequency: "TDS"})
	do(t, c, nurse, next(), record.AddAllergy{Substance: "Sulfa", Severity: "severe"})
	do(t, c, doctor, next(), record.Diagnose{Code: "B54", Text: "Malaria"})
	do(t, c, labTech, next(), record.RecordLabResult{Test: "Potassium", Value: record.Ptr(7.1), Unit: "mmol/L", CriticalHigh: record.Ptr(6.5), SpecimenAt: t0})
	enc := do(t, c, nurse, next(), record.AddEncounter{Complaint: "fever", Note: "hot for 2 days"})
	other := fork(t, c)
	do(t, c, doctor, next(), record.ReviseDose{PrescriptionID: rx, Dose: 250})
	do(t, other, nurse, next(), record.ReviseDose{PrescriptionID: rx, Dose: 1000})
	do(t, other, nurse, next(), record.EditNote{EncounterID: enc, Pos: 0, Insert: "Child "})
	merge(t, c, other)
	return c
}

// mutations returns truncations and bit flips of b.
func mutations(b []byte) [][]byte {
	var out [][]byte
	for _, n := range []int{1, 4, 8, 9, 10, 16, 40, len(b) / 2, len(b) - 1} {
		if n > 0 && n < len(b) {
			out = append(out, b[:n])
		}
	}
	for _, i := range []int{0, 4, 8, 9, 12, 40, len(b) / 3, len(b) / 2, len(b) - 2} {
		if i >= 0 && i < len(b) {
			f := append([]byte(nil), b...)
			f[i] ^= 0x04
			out = append(out, f)
		}
	}
	return out
}

// FuzzOpenChart reads arbitrary bytes as a saved chart: they are refused
// with ErrMalformed (not a document) or ErrNotAChart (not a chart), or
// they open as a chart whose view can be read, never a panic.
func FuzzOpenChart(f *testing.F) {
	c := seedChart(f)
	save := c.Doc().Save()
	f.Add(save)
	for _, m := range mutations(save) {
		f.Add(m)
	}
	f.Add(newChart(f).Doc().Save())
	chs, err := c.Doc().Changes(nil)
	require.NoError(f, err)
	f.Add(crdt.SaveChanges(chs))
	f.Add(chs[0].Raw)
	notChart, err := crdt.New("")
	require.NoError(f, err)
	_, err = notChart.Edit("x", t0, func(tx *crdt.Tx) error { return tx.PutMap(nil, "chart") })
	require.NoError(f, err)
	f.Add(notChart.Save())
	f.Add([]byte{})
	f.Add([]byte{0x85, 0x6f, 0x4a, 0x83})

	f.Fuzz(func(t *testing.T, data []byte) {
		doc, err := crdt.Load(data, "")
		if err != nil {
			require.ErrorIs(t, err, crdt.ErrMalformed)
			return
		}
		chart, err := record.Open(doc)
		if err != nil {
			require.ErrorIs(t, err, record.ErrNotAChart)
			return
		}
		v, err := chart.View()
		if err != nil {
			require.ErrorIs(t, err, crdt.ErrMalformed, "a chart that opened could not be viewed")
			return
		}
		require.Equal(t, chart.ID(), v.ChartID)
		_, err = json.Marshal(v)
		require.NoError(t, err)
	})
}

// FuzzApplyToChart applies arbitrary bytes, parsed as changes, to a real
// chart: either they are refused with ErrMalformed and the chart is
// exactly as it was, or they apply (or are held for missing
// dependencies) and the chart can still be viewed.
func FuzzApplyToChart(f *testing.F) {
	base := seedChart(f)
	// Changes the base lacks, made on another device.
	away := fork(f, base)
	v := view(f, base)
	do(f, away, doctor, t0.Add(time.Hour), record.Prescribe{Drug: "Paracetamol", Dose: 1, DoseUnit: "g", Route: "oral", Frequency: "QID"})
	do(f, away, doctor, t0.Add(time.Hour), record.MarkEnteredInError{EntryID: v.Diagnoses[0].ID, Reason: "wrong patient"})
	do(f, away, nurse, t0.Add(time.Hour), record.EditNote{EncounterID: v.Encounters[0].ID, Pos: 3, Delete: 2, Insert: "LD"})
	fresh, err := away.Doc().Changes(base.Doc().Heads())
	require.NoError(f, err)
	require.Len(f, fresh, 3)
	for _, c := range fresh {
		f.Add(c.Raw)
		for _, m := range mutations(c.Raw) {
			f.Add(m)
		}
	}
	all := crdt.SaveChanges(fresh)
	f.Add(all)
	f.Add(crdt.SaveChanges([]crdt.Change{fresh[2], fresh[0], fresh[1]}))
	f.Add(crdt.SaveChanges(fresh[1:])) // held: its dependency is missing
	for _, m := range mutations(all) {
		f.Add(m)
	}
	// Changes the chart already has.
	own, err := base.Doc().Changes(nil)
	require.NoError(f, err)
	f.Add(crdt.SaveChanges(own[len(own)-2:]))
	// Another chart's registration.
	foreign, err := newChart(f).Doc().Changes(nil)
	require.NoError(f, err)
	f.Add(foreign[0].Raw)

	f.Fuzz(func(t *testing.T, data []byte) {
		c := fork(t, base)
		heads, before, pending := c.Doc().Heads(), view(t, c), len(c.Doc().Pending())
		chs, err := crdt.ParseChanges(data)
		if err != nil {
			require.ErrorIs(t, err, crdt.ErrMalformed)
			return
		}
		if _, err := c.Doc().Apply(chs...); err != nil {
			require.ErrorIs(t, err, crdt.ErrMalformed)
			require.Equal(t, heads, c.Doc().Heads(), "a refused change moved the chart's heads")
			require.Equal(t, before, view(t, c), "a refused change altered the chart")
			require.Len(t, c.Doc().Pending(), pending, "a refused change is held")
			return
		}
		after, err := c.View()
		if err != nil {
			// Only another chart's registration, winning the chart's
			// containers, stops a chart from being read.
			require.ErrorIs(t, err, record.ErrNotAChart, "the chart cannot be viewed after changes applied")
			return
		}
		require.Equal(t, c.ID(), after.ChartID)
		require.GreaterOrEqual(t, len(after.History), len(before.History), "applying changes lost history")
	})
}

// FuzzCheckUsersChange applies arbitrary bytes, parsed as changes, to a
// user roster as a receiving replica would: each change is judged by
// CheckUsersChange with a typed error or accepted, the roster stays
// readable, and a change that passes leaves a roster whose users all have
// valid fields. Never a panic.
func FuzzCheckUsersChange(f *testing.F) {
	base, _, err := record.NewUsers("north", crdt.NewActorID(), admin, t0, record.UserUpdate{
		UserID: admin.UserID, Name: admin.Name, Role: record.RoleAdministrator, PasswordHash: hashOf(0)})
	require.NoError(f, err)
	next, err := base.Doc().Fork(nil, crdt.NewActorID())
	require.NoError(f, err)
	u, err := record.OpenUsers(next)
	require.NoError(f, err)
	_, err = u.Update(admin, t0.Add(time.Minute), record.UserUpdate{UserID: nurse.UserID, Name: nurse.Name, Role: record.RoleNurse, PasswordHash: hashOf(1)})
	require.NoError(f, err)
	_, err = u.Update(nurse, t0.Add(2*time.Minute), record.UserUpdate{UserID: nurse.UserID, PasswordHash: hashOf(2)})
	require.NoError(f, err)
	_, err = u.SetHidden(admin, t0.Add(3*time.Minute), record.RoleRegistrationClerk, []record.Section{record.SectionNotes})
	require.NoError(f, err)
	chs, err := next.Changes(base.Doc().Heads())
	require.NoError(f, err)
	for _, c := range chs {
		f.Add(c.Raw)
		for _, m := range mutations(c.Raw) {
			f.Add(m)
		}
	}
	f.Add(crdt.SaveChanges(chs))
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, data []byte) {
		chs, err := crdt.ParseChanges(data)
		if err != nil {
			require.ErrorIs(t, err, crdt.ErrMalformed)
			return
		}
		doc, err := base.Doc().Fork(nil, crdt.NewActorID())
		require.NoError(t, err)
		for _, c := range chs {
			if _, err := record.CheckUsersChange(doc, c); err != nil {
				if !errors.Is(err, record.ErrInvalid) && !errors.Is(err, record.ErrForbidden) && !errors.Is(err, record.ErrNotAUserRoster) &&
					!errors.Is(err, crdt.ErrNotFound) && !errors.Is(err, crdt.ErrMalformed) {
					t.Fatalf("untyped error %v", err)
				}
				continue
			}
			if _, err := doc.Apply(c); err != nil {
				require.ErrorIs(t, err, crdt.ErrMalformed)
				continue
			}
			roster, err := record.OpenUsers(doc)
			require.NoError(t, err, "a roster stays a roster after an accepted change")
			users, err := roster.List()
			require.NoError(t, err)
			for _, usr := range users {
				require.True(t, usr.Role.Valid(), "user %s has role %q", usr.ID, usr.Role)
			}
			_, err = roster.ReadPolicy()
			require.NoError(t, err)
		}
	})
}

// resealed recomputes the checksum of every change chunk in data, so the
// fuzzer explores changes a malicious peer could send; bytes that do not
// split into chunks are returned as they are.
func resealed(data []byte) []byte {
	out := append([]byte(nil), data...)
	for rest := out; len(rest) >= 10; {
		n, k := binary.Uvarint(rest[9:])
		if k <= 0 || n > uint64(len(rest)-9-k) {
			break
		}
		end := 9 + k + int(n)
		sum := sha256.Sum256(rest[8:end])
		copy(rest[4:8], sum[:4])
		rest = rest[end:]
	}
	return out
}

// FuzzCheckerAgrees parses arbitrary bytes (checksums made valid) as
// changes and judges each, in turn, with a Checker and with CheckChange
// on a chart holding the changes accepted before it: the two verdicts are
// the same (Touched and error), and neither panics; so does a Checker
// made by NewCheckerOn on a document that takes each accepted change.
func FuzzCheckerAgrees(f *testing.F) {
	base := seedChart(f)
	away := fork(f, base)
	v := view(f, base)
	do(f, away, doctor, t0.Add(time.Hour), record.Prescribe{Drug: "Paracetamol", Dose: 1, DoseUnit: "g", Route: "oral", Frequency: "QID"})
	do(f, away, nurse, t0.Add(time.Hour), record.EditNote{EncounterID: v.Encounters[0].ID, Pos: 3, Delete: 2, Insert: "LD"})
	do(f, away, registry, t0.Add(time.Hour), record.Refer{ToClinic: "district-hospital"})
	do(f, away, chw, t0.Add(time.Hour), record.AddIdentifier{System: record.SystemAadhaar, Value: "2341 2341 2346"})
	do(f, away, doctor, t0.Add(time.Hour), record.Diagnose{Text: "Asthma", ExternalID: record.Identifier{System: "urn:x", Value: "D-1"}})
	fresh, err := away.Doc().Changes(base.Doc().Heads())
	require.NoError(f, err)
	f.Add(crdt.SaveChanges(fresh))
	for _, c := range fresh {
		f.Add(c.Raw)
		for _, m := range mutations(c.Raw) {
			f.Add(m)
		}
	}
	l := layoutOf(f, base.Doc())
	forged := forge(f, base.Doc(), messageBy(nurse, "x"), func(next func() crdt.OpID) []crdt.Op {
		return []crdt.Op{setOp(next(), l.w, "k", jsonOf(f, writeBy(nurse, record.KindAllergy, "a-1", "substance", "Sulfa"))),
			{ID: next(), Obj: l.notes, Key: crdt.Key{Prop: v.Encounters[0].ID}, Action: crdt.ActionSet, Value: crdt.Value{Type: crdt.ValueString, Str: "x"}}}
	})
	f.Add(forged.Raw)
	for _, m := range mutations(forged.Raw) {
		f.Add(m)
	}
	saved := base.Doc().Save()

	f.Fuzz(func(t *testing.T, data []byte) {
		chs, err := crdt.ParseChanges(resealed(data))
		if err != nil {
			return
		}
		ref, err := crdt.Load(saved, crdt.NewActorID())
		require.NoError(t, err)
		c, err := record.NewChecker(ref)
		require.NoError(t, err)
		// A Checker on a document of its caller's, which takes each
		// change once the Checker accepted it, as a receive's does.
		held, err := crdt.Load(saved, crdt.NewActorID())
		require.NoError(t, err)
		on, err := record.NewCheckerOn(held)
		require.NoError(t, err)
		for _, ch := range chs {
			want, wantErr := record.CheckChange(ref, ch)
			got, gotErr := c.Check(ch)
			sameVerdict(t, want, wantErr, got, gotErr)
			got, gotErr = on.Check(ch)
			sameVerdict(t, want, wantErr, got, gotErr)
			if wantErr == nil {
				_, err := ref.Apply(ch)
				require.NoError(t, err)
				_, err = held.Apply(ch)
				require.NoError(t, err)
			}
		}
	})
}

// FuzzCheckerForgedOps builds changes operation by operation from the
// fuzzer's bytes (objects that exist or not, keys, actions, values that
// are writes of every kind, attributed to anyone, superseding anything,
// predecessors and characters of notes), as a modified client could, and
// judges them in turn on a chart, the second made on the first if that
// was accepted, with a Checker and with CheckChange: the same verdicts.
func FuzzCheckerForgedOps(f *testing.F) {
	base := seedChart(f)
	v := view(f, base)
	l := layoutOf(f, base.Doc())
	enc := v.Encounters[0].ID
	rx := v.Prescriptions[0].ID
	writeKeys := slices.Sorted(maps.Keys(l.writes))
	doses := writeIDs(f, base, rx, "dose")
	saved := base.Doc().Save()
	f.Add([]byte{0, 0, 0, 0, 0, 0})
	f.Add([]byte{1, 1, 2, 0, 0, 3, 1, 2, 4, 1, 0, 0})
	f.Add([]byte{3, 2, 2, 2, 1, 1, 0, 2, 3, 0, 4, 4, 4, 2})
	f.Add([]byte{0, 0, 3, 0, 0, 0, 0, 0, 1, 0, 0, 3, 0, 0, 0, 0, 1, 3, 3, 1, 3, 1, 0, 0, 0})

	f.Fuzz(func(t *testing.T, data []byte) {
		next := func() int {
			if len(data) == 0 {
				return 0
			}
			b := data[0]
			data = data[1:]
			return int(b)
		}
		ref, err := crdt.Load(saved, crdt.NewActorID())
		require.NoError(t, err)
		c, err := record.NewChecker(ref)
		require.NoError(t, err)
		elems := slices.Clone(l.elems) // characters of the note
		for range 2 {
			by := staff[next()%len(staff)]
			ch := forge(t, ref, messageBy(by, "forged"), func(id func() crdt.OpID) []crdt.Op {
				var ops []crdt.Op
				for range 1 + next()%5 {
					op := crdt.Op{ID: id()}
					made := []crdt.OpID{}
					for _, o := range ops {
						if o.Action.MakesObject() {
							made = append(made, o.ID)
						}
					}
					objs := append([]crdt.OpID{l.w, l.w, l.notes, l.texts[enc], l.texts[enc], crdt.Root, {Counter: 3, Actor: "abcd"}}, made...)
					op.Obj = objs[next()%len(objs)]
					op.Action = []crdt.Action{crdt.ActionSet, crdt.ActionSet, crdt.ActionMakeText, crdt.ActionDelete, crdt.ActionMakeMap}[next()%5]
					if op.Obj == l.texts[enc] || slices.Contains(made, op.Obj) && next()%2 == 0 {
						cands := append(slices.Clone(elems), crdt.OpID{}, op.ID, l.writes[writeKeys[0]], crdt.OpID{Counter: 2, Actor: "abcd"})
						op.Key = crdt.Key{IsElem: true, Elem: cands[next()%len(cands)]}
						op.Insert = next()%2 == 0
						if !op.Insert && op.Action == crdt.ActionDelete && !op.Key.IsHead() && next()%4 != 0 {
							op.Pred = []crdt.OpID{op.Key.Elem}
						}
					} else {
						keys := []string{"k-" + string(rune('a'+next()%3)), enc, "id", "w", writeKeys[next()%len(writeKeys)]}
						op.Key = crdt.Key{Prop: keys[next()%len(keys)]}
					}
					if op.Action == crdt.ActionSet {
						other := staff[next()%len(staff)]
						vals := []string{
							jsonOf(t, writeBy(by, record.KindAllergy, "a-1", "substance", "Sulfa")),
							jsonOf(t, writeBy(other, record.KindAllergy, "a-2", "substance", "Latex")),
							jsonOf(t, writeBy(by, record.KindPrescription, rx, "dose", "250", doses...)),
							jsonOf(t, writeBy(by, record.KindEncounter, enc, "complaint", "cough")),
							jsonOf(t, writeBy(by, record.KindLabResult, rx, "status", "final")),
							"x", "{", "", "é",
						}
						op.Value = crdt.Value{Type: crdt.ValueString, Str: vals[next()%len(vals)]}
						if next()%7 == 0 {
							op.Value = crdt.Value{Type: crdt.ValueInt, Int: 1}
						}
					}
					if p := next() % 6; p > 0 && len(op.Pred) == 0 {
						preds := append([]crdt.OpID{l.writes[writeKeys[0]], l.texts[enc], {Counter: 5, Actor: "abcd"}}, elems[:min(2, len(elems))]...)
						op.Pred = []crdt.OpID{preds[p%len(preds)]}
					}
					ops = append(ops, op)
				}
				return ops
			})
			want, wantErr := record.CheckChange(ref, ch)
			got, gotErr := c.Check(ch)
			sameVerdict(t, want, wantErr, got, gotErr)
			if wantErr != nil {
				return
			}
			_, err := ref.Apply(ch)
			require.NoError(t, err)
			info, err := crdt.ChangeOps(ch.Raw)
			require.NoError(t, err)
			for _, op := range info.Ops {
				if op.Insert {
					elems = append(elems, op.ID)
				}
			}
		}
	})
}
