package replica_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/store"
	"github.com/chartsync/chartsync/replica/store/sqlite"
)

// The property: replicas that edit at random and swap bundles at random,
// with bundles lost, repeated and reordered on the way, and that restart
// at random, all hold the same charts once they have synced pairwise until
// nothing moves, and no acknowledged edit is lost.

// simStats counts what the runs of a property did, to show that they did
// something.
type simStats struct{ runs, acked, delivered, parts, restarts, charts int }

func (st *simStats) add(s *sim) {
	st.runs++
	st.acked += len(s.acked)
	st.charts += len(s.charts)
	st.delivered += s.delivered
	st.parts += s.parts
	st.restarts += s.restarts
}

// flight is a bundle on its way.
type flight struct {
	from, to int
	data     []byte
}

// sim is one run of the property.
type sim struct {
	ctx     context.Context
	cfg     replica.Config
	reps    []*replica.Replica
	logs    []store.ChangeLog
	open    func(i int) (*replica.Replica, store.ChangeLog) // (re)opens replica i over its store
	acked   []crdt.Hash
	charts  []string // registered, in order: drawn by index, so that runs repeat
	flights []flight

	delivered, parts, restarts int
}

// replicaID is replica i's fixed ID: with a frozen clock and a seeded UUID
// source, the same actions then make the same changes, so that rapid can
// reproduce and shrink a failure.
func replicaID(i int) string { return fmt.Sprintf("%032x", 0xc11c+i) }

// newSimStore prepares st to be replica i.
func newSimStore(t require.TestingT, st store.Store, i int) {
	_, err := st.Meta(context.Background(), "replica_id")
	if err == nil {
		return
	}
	_, err = st.Write(context.Background(), store.Batch{Meta: map[string]string{"replica_id": replicaID(i)}})
	require.NoError(t, err)
}

// seedUUIDs makes UUIDs (chart and entry IDs) repeat from run to run.
func seedUUIDs() (restore func()) {
	uuid.SetRand(rand.NewChaCha8([32]byte{'c', 'h', 'a', 'r', 't'}))
	return func() { uuid.SetRand(nil) }
}

func (s *sim) close() {
	for _, r := range s.reps {
		_ = r.Close()
	}
}

// editErrors are the errors an edit may give for an operation that does
// not fit the chart; any other error fails the property.
var editErrors = []error{record.ErrInvalid, record.ErrNotFound, record.ErrTransition, replica.ErrNotFound}

func (s *sim) actions() map[string]func(*rapid.T) {
	pick := func(t *rapid.T, label string) int { return rapid.IntRange(0, len(s.reps)-1).Draw(t, label) }
	return map[string]func(*rapid.T){
		"register": func(t *rapid.T) {
			i := pick(t, "replica")
			id, err := s.reps[i].Register(s.ctx, nurse, record.Register{
				GivenName: rapid.SampledFrom([]string{"Wanjiru", "Baraka", "Amina"}).Draw(t, "given"),
				Sex:       "female", EstimatedBirthYear: 1980, HomeClinic: fmt.Sprintf("clinic-%d", i),
			})
			require.NoError(t, err)
			h, err := s.reps[i].Heads(s.ctx, id)
			require.NoError(t, err)
			s.acked = append(s.acked, h...)
			s.charts = append(s.charts, id)
		},
		"edit": func(t *rapid.T) {
			i := pick(t, "replica")
			r := s.reps[i]
			indexed := map[string]bool{}
			for _, id := range chartIDs(t, r) {
				indexed[id] = true
			}
			var held []string // in registration order, so that runs repeat
			for _, id := range s.charts {
				if indexed[id] {
					held = append(held, id)
				}
			}
			if len(held) == 0 {
				t.Skip("no chart to edit here")
			}
			id := rapid.SampledFrom(held).Draw(t, "chart")
			v, err := r.Chart(s.ctx, id)
			if errors.Is(err, replica.ErrNotFound) {
				return // changes of it are here, its registration is not
			}
			require.NoError(t, err)
			op := drawOp(t, v)
			res, err := r.Edit(s.ctx, id, doctor, op)
			if err != nil {
				for _, e := range editErrors {
					if errors.Is(err, e) {
						return
					}
				}
				t.Fatalf("edit %T on replica %d: unexpected error %v", op, i, err)
			}
			s.acked = append(s.acked, res.Change.Hash)
		},
		"send": func(t *rapid.T) {
			i, j := pick(t, "from"), pick(t, "to")
			if i == j {
				t.Skip("a replica does not sync with itself")
			}
			out, err := s.reps[i].MakeBundle(s.ctx, s.reps[j].ID())
			require.NoError(t, err)
			s.flights = append(s.flights, flight{from: i, to: j, data: out.Data})
		},
		"deliver": func(t *rapid.T) {
			if len(s.flights) == 0 {
				t.Skip("nothing in flight")
			}
			k := rapid.IntRange(0, len(s.flights)-1).Draw(t, "flight") // any order
			f := s.flights[k]
			_, err := s.reps[f.to].Receive(s.ctx, f.data)
			require.NoError(t, err, "bundle from %d to %d", f.from, f.to)
			s.delivered++
			if !rapid.Bool().Draw(t, "deliver again later") {
				s.flights = append(s.flights[:k], s.flights[k+1:]...)
			}
		},
		"deliver part": func(t *rapid.T) {
			// Some of a bundle's changes, in any order, without its
			// positions: as a relay that split a bundle would deliver
			// them. Changes then arrive before their dependencies.
			if len(s.flights) == 0 {
				t.Skip("nothing in flight")
			}
			f := s.flights[rapid.IntRange(0, len(s.flights)-1).Draw(t, "flight")]
			b, err := replica.DecodeBundle(f.data)
			require.NoError(t, err)
			if len(b.Changes) == 0 {
				t.Skip("no change in the bundle")
			}
			part := rapid.SliceOfNDistinct(rapid.IntRange(0, len(b.Changes)-1), 1, -1, rapid.ID[int]).Draw(t, "changes")
			// A change vouched for by a later signed one travels with it
			// and with the history between them: the chart's whole part.
			for _, k := range part {
				if b.Changes[k].Cover == 0 {
					continue
				}
				for j, c := range b.Changes {
					if c.Chart == b.Changes[k].Chart && !slices.Contains(part, j) {
						part = append(part, j)
					}
				}
			}
			sub := replica.Bundle{From: b.From, To: b.To, Signers: b.Signers}
			at := map[int]int{} // index in b → index in sub
			for _, k := range part {
				at[k] = len(sub.Changes)
				sub.Changes = append(sub.Changes, b.Changes[k])
			}
			for i, c := range sub.Changes {
				if c.Cover != 0 {
					sub.Changes[i].Cover = at[c.Cover-1] + 1
				}
			}
			data, err := sub.Encode()
			require.NoError(t, err)
			_, err = s.reps[f.to].Receive(s.ctx, data)
			require.NoError(t, err, "part of a bundle from %d to %d", f.from, f.to)
			s.parts++
		},
		"drop": func(t *rapid.T) {
			if len(s.flights) == 0 {
				t.Skip("nothing in flight")
			}
			k := rapid.IntRange(0, len(s.flights)-1).Draw(t, "flight")
			s.flights = append(s.flights[:k], s.flights[k+1:]...)
		},
		"restart": func(t *rapid.T) {
			i := pick(t, "replica")
			require.NoError(t, s.reps[i].Close())
			s.reps[i], s.logs[i] = s.open(i)
			s.restarts++
		},
	}
}

// drawOp draws an operation that usually fits the chart.
func drawOp(t *rapid.T, v record.View) record.Op {
	substances := []string{"Penicillin", "Sulfa", "Latex", "Peanut"}
	drugs := []string{"Amoxicillin", "Paracetamol", "Metformin"}
	kinds := []string{"allergy", "prescribe", "demographics", "encounter", "diagnose"}
	var rxID, encID string
	if len(v.Prescriptions) > 0 {
		rxID = rapid.SampledFrom(v.Prescriptions).Draw(t, "prescription").ID
		kinds = append(kinds, "revise", "discontinue", "hold", "error")
	}
	if len(v.Encounters) > 0 {
		encID = rapid.SampledFrom(v.Encounters).Draw(t, "encounter").ID
		kinds = append(kinds, "note", "note")
	}
	switch rapid.SampledFrom(kinds).Draw(t, "op") {
	case "allergy":
		return record.AddAllergy{Substance: rapid.SampledFrom(substances).Draw(t, "substance"),
			Severity: rapid.SampledFrom([]string{"mild", "moderate", "severe"}).Draw(t, "severity")}
	case "revise":
		return record.ReviseDose{PrescriptionID: rxID, Dose: float64(rapid.IntRange(1, 4).Draw(t, "dose") * 250), Reason: "review"}
	case "discontinue":
		return record.Discontinue{PrescriptionID: rxID, Reason: "finished"}
	case "hold":
		return record.PutOnHold{PrescriptionID: rxID, Reason: "surgery"}
	case "error":
		return record.MarkEnteredInError{EntryID: rxID, Reason: "wrong patient"}
	case "demographics":
		village := rapid.SampledFrom([]string{"Kamuga", "Siaya", "Kisumu"}).Draw(t, "village")
		return record.UpdateDemographics{Village: &village}
	case "encounter":
		return record.AddEncounter{Date: "2026-03-02", Complaint: "fever", Note: "seen"}
	case "note":
		return record.EditNote{EncounterID: encID, Pos: rapid.IntRange(0, 4).Draw(t, "pos"), Insert: rapid.SampledFrom([]string{"a", "bc", " "}).Draw(t, "text")}
	case "diagnose":
		return record.Diagnose{Code: "B54", Text: "Malaria"}
	default:
		return record.Prescribe{Drug: rapid.SampledFrom(drugs).Draw(t, "drug"), Dose: 500, DoseUnit: "mg", Route: "oral", Frequency: "TDS"}
	}
}

// settle syncs every pair until a whole pass moves no change, then checks
// that the replicas agree and that nothing acknowledged is missing.
func (s *sim) settle(t *rapid.T) {
	quiet := false
	for pass := 0; pass < 20 && !quiet; pass++ {
		quiet = true
		for i := range s.reps {
			for j := i + 1; j < len(s.reps); j++ {
				st, err := replica.SyncPair(s.ctx, s.reps[i], s.reps[j])
				require.NoError(t, err, "sync %d and %d", i, j)
				if st.ChangesAToB+st.ChangesBToA > 0 {
					quiet = false
				}
			}
		}
	}
	require.True(t, quiet, "replicas still exchanging changes after 20 passes")
	requireSameCharts(t, s.reps...)

	// Every acknowledged edit is stored everywhere and applied: it is in
	// some chart's history.
	applied := map[crdt.Hash]bool{}
	for _, id := range chartIDs(t, s.reps[0]) {
		for _, h := range view(t, s.reps[0], id).History {
			applied[h.Change] = true
		}
	}
	for i := range s.reps {
		requireHasChanges(t, s.logs[i], s.acked, fmt.Sprintf("replica %d", i))
	}
	for _, h := range s.acked {
		require.True(t, applied[h], "acknowledged edit %s is in no chart's history", h)
	}
	// Every replica's acknowledgements have caught up.
	for i, r := range s.reps {
		ps, err := r.Peers(s.ctx)
		require.NoError(t, err)
		for _, p := range ps {
			require.Zero(t, p.Unacknowledged, "replica %d still waits for %s to acknowledge changes", i, p.ID)
		}
	}
}

func drawConfig(t *rapid.T) replica.Config {
	return replica.Config{
		Now:          frozen,
		CacheCharts:  rapid.IntRange(1, 4).Draw(t, "cache charts"),
		CompactAfter: rapid.SampledFrom([]int{1, 2, 3, 8}).Draw(t, "compact after"),
		BundleBytes:  rapid.SampledFrom([]int{0, 1, 1500, 4000}).Draw(t, "bundle bytes"),
	}
}

func TestPropertyConvergence(t *testing.T) {
	setRapidFlag(t, "checks", 100)
	setRapidFlag(t, "steps", 100)
	var stats simStats
	rapid.Check(t, func(t *rapid.T) {
		s := &sim{ctx: context.Background(), cfg: drawConfig(t)}
		n := rapid.IntRange(3, 5).Draw(t, "replicas")
		// Signed: every replica signs its changes and checks everyone's,
		// knowing at first (and after each restart) only its own
		// enrolment: the others' travel in bundles and its store.
		signed := rapid.Bool().Draw(t, "signed")
		defer seedUUIDs()()
		mems := make([]*store.Mem, n)
		var (
			auth *device.Authority
			ids  []*device.Identity
			recs [][]byte
		)
		if signed {
			var err error
			auth, err = device.NewAuthority()
			require.NoError(t, err)
			for i := range n {
				id, err := device.Generate(replicaID(i), "north")
				require.NoError(t, err)
				rec, err := auth.Enrol(id.Public(), time.Unix(0, 0), 100*365*24*time.Hour)
				require.NoError(t, err)
				ids, recs = append(ids, id), append(recs, rec)
			}
		}
		s.open = func(i int) (*replica.Replica, store.ChangeLog) {
			newSimStore(t, mems[i], i)
			cfg := s.cfg
			if signed {
				roster, err := device.NewRoster(device.RosterConfig{Authorities: []device.TrustedAuthority{{Key: auth.PublicKey()}}, Now: frozen})
				require.NoError(t, err)
				_, err = roster.Add(recs[i])
				require.NoError(t, err)
				cfg.Signer, cfg.Keys = ids[i], roster
			}
			r, err := replica.New(s.ctx, keepOpen{mems[i]}, cfg)
			require.NoError(t, err)
			return r, mems[i]
		}
		s.reps, s.logs = make([]*replica.Replica, n), make([]store.ChangeLog, n)
		for i := range n {
			mems[i] = store.NewMem()
			s.reps[i], s.logs[i] = s.open(i)
		}
		defer s.close()
		t.Repeat(s.actions())
		s.settle(t)
		stats.add(s)
	})
	t.Logf("%+v", stats)
}

func TestPropertyConvergenceSQLite(t *testing.T) {
	setRapidFlag(t, "checks", 10)
	setRapidFlag(t, "steps", 80)
	var stats simStats
	rapid.Check(t, func(rt *rapid.T) {
		s := &sim{ctx: context.Background(), cfg: drawConfig(rt)}
		defer seedUUIDs()()
		n := rapid.IntRange(3, 4).Draw(rt, "replicas")
		dir, err := os.MkdirTemp(t.TempDir(), "run")
		require.NoError(rt, err)
		s.open = func(i int) (*replica.Replica, store.ChangeLog) {
			st, err := sqlite.Open(s.ctx, filepath.Join(dir, fmt.Sprintf("r%d.db", i)))
			require.NoError(rt, err)
			newSimStore(rt, st, i)
			r, err := replica.New(s.ctx, st, s.cfg)
			require.NoError(rt, err)
			return r, st
		}
		s.reps, s.logs = make([]*replica.Replica, n), make([]store.ChangeLog, n)
		for i := range n {
			s.reps[i], s.logs[i] = s.open(i)
		}
		defer s.close()
		rt.Repeat(s.actions())
		s.settle(rt)
		stats.add(s)
	})
	t.Logf("%+v", stats)
}

// setRapidFlag sets a rapid flag (checks, steps) for one test, unless it
// was given on the command line.
func setRapidFlag(t *testing.T, name string, n int) {
	name = "rapid." + name
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	if set {
		return
	}
	f := flag.Lookup(name)
	if f == nil {
		return
	}
	old := f.Value.String()
	require.NoError(t, f.Value.Set(strconv.Itoa(n)))
	t.Cleanup(func() { _ = f.Value.Set(old) })
}
