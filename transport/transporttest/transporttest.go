package transporttest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
)

// Pair is two replicas joined by a transport under test.
type Pair struct {
	A, B *replica.Replica
	// Round runs the courier until one exchange has happened both ways
	// (e.g. A syncs, the carrier carries, B syncs, the carrier carries back, A syncs).
	// It should leave no message from A in flight towards B, so that
	// Inject delivers only what it is given.
	Round func(ctx context.Context) error
	// Capture returns one valid message from A to B exactly as this transport carries it
	// (an HTTP request body, a bundle file's bytes, a relay bundle), without delivering it.
	Capture func(ctx context.Context) ([]byte, error)
	// Inject delivers raw bytes to B through the transport as if they came from A, runs B's
	// receiving side, and returns the error B's side reported for them (nil if accepted).
	// Delivering a message B has already accepted must change nothing; it
	// may return nil or an error matching BadInput (a refused replay).
	Inject func(ctx context.Context, raw []byte) error
	// BadInput lists the sentinel errors a rejected message may match (errors.Is).
	BadInput []error
	// Seal, if set, turns a replica bundle from A to B (replica.Bundle's
	// wire form) into the message this transport carries, as A would
	// send it (a relay bundle signed by A). Nil means the bundle is the
	// message (HTTPS bodies, bundle files).
	Seal func(ctx context.Context, bundle []byte) ([]byte, error)
	// Sign, if set, signs a change of chart with hash as A's device
	// (device.Identity.SignChange), for B replicas that check signatures:
	// the crafted changes of the adversarial suite are then signed as a
	// broken or lying device would sign them.
	Sign func(chart string, hash [32]byte) []byte
}

// maxRounds bounds how many Rounds the suite waits for convergence or for
// acknowledgements to settle.
const maxRounds = 30

// Run runs the sync conformance suite: convergence (edits on both sides, Rounds until quiet,
// bounded → equal heads and equal views for every chart on A and B), idempotence (extra
// Rounds and re-injecting an already delivered captured message change nothing),
// nothing lost (random edits interleaved with Rounds; every edit that returned nil is on
// both sides at the end), bad input refused (truncated at several points, bit-flipped at
// many positions, garbage, empty: each Inject returns an error matching one of BadInput,
// and B's store is unchanged: same charts, same heads, same peer positions).
func Run(t *testing.T, newPair func(t *testing.T) Pair) {
	t.Run("Convergence", func(t *testing.T) { testConvergence(t, checked(t, newPair)) })
	t.Run("Idempotence", func(t *testing.T) { testIdempotence(t, checked(t, newPair)) })
	t.Run("NothingLost", func(t *testing.T) {
		for _, seed := range []uint64{1, 2} {
			t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) { testNothingLost(t, checked(t, newPair), seed) })
		}
	})
	t.Run("BadInputRefused", func(t *testing.T) { testBadInput(t, checked(t, newPair)) })
	t.Run("Adversarial", func(t *testing.T) { testAdversarial(t, newPair) })
}

func checked(t *testing.T, newPair func(t *testing.T) Pair) Pair {
	t.Helper()
	p := newPair(t)
	require.NotNil(t, p.A, "pair has no replica A")
	require.NotNil(t, p.B, "pair has no replica B")
	require.NotEqual(t, p.A.ID(), p.B.ID(), "pair joins a replica to itself")
	require.NotNil(t, p.Round, "pair has no Round")
	require.NotNil(t, p.Capture, "pair has no Capture")
	require.NotNil(t, p.Inject, "pair has no Inject")
	require.NotEmpty(t, p.BadInput, "pair lists no errors for bad input")
	return p
}

var (
	nurse     = record.Author{UserID: "u-amina", Name: "Amina Okafor", Role: record.RoleNurse, Device: "tablet-a"}
	clinician = record.Author{UserID: "u-baraka", Name: "Dr Baraka Otieno", Role: record.RoleClinician, Device: "laptop-b"}
)

func patient(given, family, village string) record.Register {
	return record.Register{
		GivenName: given, FamilyName: family, Sex: "female", EstimatedBirthYear: 1990,
		Village: village, HomeClinic: "kamuga-dispensary",
	}
}

func register(t *testing.T, r *replica.Replica, given, family, village string) string {
	t.Helper()
	id, err := r.Register(t.Context(), nurse, patient(given, family, village))
	require.NoError(t, err, "register %s %s", given, family)
	return id
}

func edit(t *testing.T, r *replica.Replica, chart string, by record.Author, op record.Op) record.Result {
	t.Helper()
	res, err := r.Edit(t.Context(), chart, by, op)
	require.NoError(t, err, "edit chart %s with %T", chart, op)
	return res
}

func amoxicillin(dose float64) record.Prescribe {
	return record.Prescribe{Drug: "Amoxicillin", Dose: dose, DoseUnit: "mg", Route: "oral", Frequency: "TDS", DurationDays: 5}
}

// round runs one Round and fails the test if it errs.
func round(t *testing.T, p Pair) {
	t.Helper()
	require.NoError(t, p.Round(t.Context()), "a round of the courier between healthy replicas")
}

// converge runs Rounds until A and B hold the same charts with the same
// heads, and fails the test if they do not within maxRounds.
func converge(t *testing.T, p Pair) int {
	t.Helper()
	for n := 1; n <= maxRounds; n++ {
		round(t, p)
		if sameHeads(t, p.A, p.B) {
			return n
		}
	}
	RequireSame(t, p.A, p.B) // reports the difference
	require.FailNow(t, "no convergence", "A and B still differ after %d rounds", maxRounds)
	return 0
}

// settle runs Rounds until A and B agree and each has acknowledged all the
// other holds.
func settle(t *testing.T, p Pair) {
	t.Helper()
	for range maxRounds {
		round(t, p)
		if sameHeads(t, p.A, p.B) && unacknowledged(t, p.A, p.B.ID()) == 0 && unacknowledged(t, p.B, p.A.ID()) == 0 {
			return
		}
	}
	require.FailNow(t, "acknowledgements never settle", "after %d rounds A has %d changes B has not acknowledged, B has %d A has not",
		maxRounds, unacknowledged(t, p.A, p.B.ID()), unacknowledged(t, p.B, p.A.ID()))
}

func unacknowledged(t *testing.T, r *replica.Replica, peer string) int {
	t.Helper()
	n, err := r.Pending(t.Context(), peer)
	require.NoError(t, err)
	return n
}

// ChartIDs lists the IDs of the charts r holds, sorted.
func ChartIDs(t testing.TB, r *replica.Replica) []string {
	t.Helper()
	cs, err := r.Find(t.Context(), "", 0)
	require.NoError(t, err, "list charts")
	ids := make([]string, len(cs))
	for i, c := range cs {
		ids[i] = c.ID
	}
	slices.Sort(ids)
	return ids
}

func sameHeads(t testing.TB, a, b *replica.Replica) bool {
	t.Helper()
	ids := ChartIDs(t, a)
	if !slices.Equal(ids, ChartIDs(t, b)) {
		return false
	}
	for _, id := range ids {
		ha, err := a.Heads(t.Context(), id)
		require.NoError(t, err)
		hb, err := b.Heads(t.Context(), id)
		require.NoError(t, err)
		if !ha.Equal(hb) {
			return false
		}
	}
	return true
}

// RequireSame checks that two replicas hold the same charts, with equal
// heads and byte-identical views, and stops the test if not.
func RequireSame(t testing.TB, a, b *replica.Replica) {
	t.Helper()
	ids := ChartIDs(t, a)
	require.Equal(t, ids, ChartIDs(t, b), "A and B hold different charts")
	for _, id := range ids {
		ha, err := a.Heads(t.Context(), id)
		require.NoError(t, err)
		hb, err := b.Heads(t.Context(), id)
		require.NoError(t, err)
		require.True(t, ha.Equal(hb), "chart %s has heads %s on A but %s on B", id, ha, hb)
		va, err := a.Chart(t.Context(), id)
		require.NoError(t, err, "A cannot show chart %s", id)
		vb, err := b.Chart(t.Context(), id)
		require.NoError(t, err, "B cannot show chart %s", id)
		ja, err := json.Marshal(va)
		require.NoError(t, err)
		jb, err := json.Marshal(vb)
		require.NoError(t, err)
		require.Equal(t, string(ja), string(jb), "chart %s looks different on A and B", id)
	}
}

// State is what a replica holds, as its public API shows it: every chart's
// index entry, heads and view, and what it knows of its peers. Two States
// of one replica are equal when nothing it holds has changed.
type State struct {
	Charts []ChartState
	Peers  []replica.PeerStatus
}

// ChartState is one chart in a State.
type ChartState struct {
	ID    string
	Heads crdt.Heads
	Index string // the index entry, as JSON
	View  string // the view as JSON, or why it cannot be shown
}

// Snapshot returns r's State.
func Snapshot(t testing.TB, r *replica.Replica) State {
	t.Helper()
	ctx := t.Context()
	cs, err := r.Find(ctx, "", 0)
	require.NoError(t, err, "list charts")
	var s State
	for _, c := range cs {
		idx, err := json.Marshal(c)
		require.NoError(t, err)
		cst := ChartState{ID: c.ID, Heads: c.Heads, Index: string(idx)}
		if v, err := r.Chart(ctx, c.ID); err != nil {
			cst.View = "unviewable: " + err.Error()
		} else {
			j, err := json.Marshal(v)
			require.NoError(t, err)
			cst.View = string(j)
		}
		s.Charts = append(s.Charts, cst)
	}
	slices.SortFunc(s.Charts, func(x, y ChartState) int { return strings.Compare(x.ID, y.ID) })
	s.Peers, err = r.Peers(ctx)
	require.NoError(t, err, "list peers")
	slices.SortFunc(s.Peers, func(x, y replica.PeerStatus) int { return strings.Compare(x.ID, y.ID) })
	return s
}

// WithoutSyncTimes forgets when peers last synced: accepting a bundle that
// changes nothing else still records the time.
func (s State) WithoutSyncTimes() State {
	s.Peers = slices.Clone(s.Peers)
	for i := range s.Peers {
		s.Peers[i].LastSync = time.Time{}
	}
	return s
}

func testConvergence(t *testing.T, p Pair) {
	ctx := t.Context()
	// Each side registers patients and edits offline.
	wanjiru := register(t, p.A, "Wanjiru", "Mwangi", "Kamuga")
	achieng := register(t, p.A, "Achieng", "Odhiambo", "Kamuga")
	nafula := register(t, p.B, "Nafula", "Wekesa", "Siaya")
	rx := edit(t, p.A, wanjiru, clinician, amoxicillin(500))
	edit(t, p.B, nafula, nurse, record.AddEncounter{Complaint: "fever for three days", Vitals: record.Vitals{Temperature: 38.4}})
	converge(t, p)
	RequireSame(t, p.A, p.B)

	// Both sides edit the same charts concurrently.
	edit(t, p.A, wanjiru, clinician, record.ReviseDose{PrescriptionID: rx.EntryID, Dose: 250, Reason: "weight 40 kg"})
	edit(t, p.B, wanjiru, clinician, record.ReviseDose{PrescriptionID: rx.EntryID, Dose: 1000, Reason: "severe infection"})
	edit(t, p.A, nafula, nurse, record.AddAllergy{Substance: "Penicillin", Reaction: "rash", Severity: "moderate"})
	edit(t, p.B, nafula, nurse, record.AddAllergy{Substance: "Sulfa", Reaction: "hives", Severity: "mild"})
	edit(t, p.A, achieng, nurse, record.UpdateDemographics{Village: record.Ptr("Siaya")})
	edit(t, p.B, achieng, nurse, record.UpdateDemographics{Village: record.Ptr("Bondo")})
	edit(t, p.B, achieng, clinician, record.Diagnose{Code: "B54", Text: "Malaria"})
	converge(t, p)
	RequireSame(t, p.A, p.B)

	for _, r := range []struct {
		name string
		r    *replica.Replica
	}{{"A", p.A}, {"B", p.B}} {
		v, err := r.r.Chart(ctx, wanjiru)
		require.NoError(t, err)
		require.Len(t, v.Prescriptions, 1, "%s: the prescription is one entry", r.name)
		assert.NotEmpty(t, v.Conflicts, "%s: concurrent doses are shown as a conflict", r.name)
		v, err = r.r.Chart(ctx, nafula)
		require.NoError(t, err)
		assert.Len(t, v.Allergies, 2, "%s: both concurrently recorded allergies are kept", r.name)
		assert.Len(t, v.Encounters, 1, "%s: the encounter recorded on B is on the chart", r.name)
		v, err = r.r.Chart(ctx, achieng)
		require.NoError(t, err)
		assert.Len(t, v.Diagnoses, 1, "%s: the diagnosis recorded on B is on the chart", r.name)
	}
}

func testIdempotence(t *testing.T, p Pair) {
	ctx := t.Context()
	wanjiru := register(t, p.A, "Wanjiru", "Mwangi", "Kamuga")
	nafula := register(t, p.B, "Nafula", "Wekesa", "Siaya")
	converge(t, p)
	edit(t, p.A, nafula, nurse, record.AddAllergy{Substance: "Penicillin", Reaction: "rash", Severity: "moderate"})
	edit(t, p.B, wanjiru, clinician, amoxicillin(500))
	settle(t, p)
	RequireSame(t, p.A, p.B)

	// Rounds between replicas that agree change nothing.
	beforeA, beforeB := Snapshot(t, p.A).WithoutSyncTimes(), Snapshot(t, p.B).WithoutSyncTimes()
	for range 3 {
		round(t, p)
	}
	assert.Equal(t, beforeA, Snapshot(t, p.A).WithoutSyncTimes(), "extra rounds changed A")
	assert.Equal(t, beforeB, Snapshot(t, p.B).WithoutSyncTimes(), "extra rounds changed B")

	// A message delivered twice is applied once.
	added := edit(t, p.A, wanjiru, nurse, record.AddAllergy{Substance: "Sulfa", Reaction: "hives", Severity: "mild"})
	raw, err := p.Capture(ctx)
	require.NoError(t, err, "capture a message from A to B")
	require.NoError(t, p.Inject(ctx, raw), "B refuses a valid message from A")
	requireHasChange(t, p.B, wanjiru, added.Change.Hash, "B after the captured message was delivered")
	delivered := Snapshot(t, p.B)
	if err := p.Inject(ctx, raw); err != nil {
		assert.True(t, matchesAny(err, p.BadInput), "a replayed message is refused with %v, which matches none of BadInput", err)
	}
	assert.Equal(t, delivered.WithoutSyncTimes(), Snapshot(t, p.B).WithoutSyncTimes(), "delivering a message twice changed B")

	settle(t, p)
	RequireSame(t, p.A, p.B)
}

func testNothingLost(t *testing.T, p Pair, seed uint64) {
	ctx := t.Context()
	rng := rand.New(rand.NewPCG(seed, 0x636861727473796e))
	sides := []struct {
		name string
		r    *replica.Replica
		by   record.Author
	}{{"A", p.A, nurse}, {"B", p.B, clinician}}
	saved := map[string][]crdt.Hash{} // chart → changes whose write returned nil
	villages := []string{"Kamuga", "Siaya", "Bondo", "Ugunja"}
	for step := range 60 {
		if rng.IntN(4) == 0 {
			round(t, p)
			continue
		}
		s := sides[rng.IntN(2)]
		ids := ChartIDs(t, s.r)
		if len(ids) == 0 || rng.IntN(5) == 0 {
			id, err := s.r.Register(ctx, s.by, patient(fmt.Sprintf("Patient%d", step), "Otieno", villages[rng.IntN(len(villages))]))
			if err != nil {
				t.Logf("step %d: register on %s: %v", step, s.name, err)
				continue
			}
			v, err := s.r.Chart(ctx, id)
			require.NoError(t, err, "%s cannot show the chart it just registered", s.name)
			require.Len(t, v.History, 1, "a new chart has its registration in its history")
			saved[id] = append(saved[id], v.History[0].Change)
			continue
		}
		id := ids[rng.IntN(len(ids))]
		var op record.Op
		switch rng.IntN(3) {
		case 0:
			op = record.AddAllergy{Substance: fmt.Sprintf("substance-%d", step), Reaction: "rash", Severity: "mild"}
		case 1:
			op = record.AddEncounter{Complaint: fmt.Sprintf("complaint %d", step), Note: "seen at step " + fmt.Sprint(step)}
		default:
			op = amoxicillin(float64(250 * (1 + rng.IntN(4))))
		}
		res, err := s.r.Edit(ctx, id, s.by, op)
		if err != nil {
			// Not saved, so not owed to anyone (a chart whose
			// registration has not arrived yet cannot be edited).
			t.Logf("step %d: %T on %s: %v", step, op, s.name, err)
			continue
		}
		saved[id] = append(saved[id], res.Change.Hash)
	}
	converge(t, p)
	RequireSame(t, p.A, p.B)
	for id, hashes := range saved {
		for _, h := range hashes {
			requireHasChange(t, p.A, id, h, "A")
			requireHasChange(t, p.B, id, h, "B")
		}
	}
}

func requireHasChange(t *testing.T, r *replica.Replica, chart string, h crdt.Hash, where string) {
	t.Helper()
	v, err := r.Chart(t.Context(), chart)
	require.NoError(t, err, "%s: chart %s cannot be shown", where, chart)
	for _, e := range v.History {
		if e.Change == h {
			return
		}
	}
	require.Failf(t, "saved edit lost", "%s: chart %s lacks change %s, whose write returned nil", where, chart, h)
}

func matchesAny(err error, targets []error) bool {
	for _, target := range targets {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// badInputs returns damaged versions of a valid message, each named.
func badInputs(raw []byte, rng *rand.Rand) []struct {
	name string
	data []byte
} {
	var out []struct {
		name string
		data []byte
	}
	add := func(name string, data []byte) {
		out = append(out, struct {
			name string
			data []byte
		}{name, data})
	}
	add("empty", []byte{})
	add("nil", nil)
	cuts := []int{1, 2, 4, 8, 16, len(raw) / 4, len(raw) / 2, 3 * len(raw) / 4, len(raw) - 8, len(raw) - 4, len(raw) - 1}
	seen := map[int]bool{}
	for _, n := range cuts {
		if n <= 0 || n >= len(raw) || seen[n] {
			continue
		}
		seen[n] = true
		add(fmt.Sprintf("truncated to %d of %d bytes", n, len(raw)), slices.Clone(raw[:n]))
	}
	add("one byte appended", append(slices.Clone(raw), 0))
	add("sent twice in one", append(slices.Clone(raw), raw...))
	// Bit flips: every byte of a short message, else the first and last
	// 32 bytes and 200 spread between.
	var positions []int
	if len(raw) <= 300 {
		for i := range raw {
			positions = append(positions, i)
		}
	} else {
		for i := range 32 {
			positions = append(positions, i, len(raw)-1-i)
		}
		for i := range 200 {
			positions = append(positions, 32+i*(len(raw)-64)/200)
		}
	}
	for _, pos := range positions {
		bit := byte(1) << (pos % 8)
		d := slices.Clone(raw)
		d[pos] ^= bit
		add(fmt.Sprintf("bit %d of byte %d flipped", pos%8, pos), d)
	}
	for _, n := range []int{1, 7, 64, len(raw)} {
		d := make([]byte, n)
		for i := range d {
			d[i] = byte(rng.UintN(256))
		}
		add(fmt.Sprintf("%d bytes of garbage", n), d)
	}
	if len(raw) > 8 {
		d := slices.Clone(raw[:8])
		for range len(raw) - 8 {
			d = append(d, byte(rng.UintN(256)))
		}
		add("garbage after a valid start", d)
	}
	return out
}

func testBadInput(t *testing.T, p Pair) {
	ctx := t.Context()
	wanjiru := register(t, p.A, "Wanjiru", "Mwangi", "Kamuga")
	register(t, p.B, "Nafula", "Wekesa", "Siaya")
	edit(t, p.A, wanjiru, clinician, amoxicillin(500))
	settle(t, p)

	// The captured message carries changes B lacks, so a damaged copy that
	// were wrongly accepted would show.
	added := edit(t, p.A, wanjiru, nurse, record.AddAllergy{Substance: "Penicillin", Reaction: "rash", Severity: "moderate"})
	edit(t, p.A, wanjiru, nurse, record.AddEncounter{Complaint: "cough", Note: "two weeks of cough, no fever"})
	register(t, p.A, "Achieng", "Odhiambo", "Bondo")
	raw, err := p.Capture(ctx)
	require.NoError(t, err, "capture a message from A to B")
	require.NotEmpty(t, raw, "a captured message has bytes")

	before := Snapshot(t, p.B)
	failures := 0
	for _, in := range badInputs(raw, rand.New(rand.NewPCG(7, 7))) {
		err := p.Inject(ctx, in.data)
		ok := assert.Error(t, err, "B accepted a message with %s", in.name)
		if ok {
			ok = assert.True(t, matchesAny(err, p.BadInput), "B refused a message with %s with %v, which matches none of BadInput", in.name, err)
		}
		ok = assert.Equal(t, before, Snapshot(t, p.B), "B's store changed after a message with %s", in.name) && ok
		if !ok {
			failures++
			if failures >= 5 {
				require.FailNow(t, "too many bad inputs mishandled")
			}
		}
	}

	// The undamaged message is accepted: the damaged ones were refused for
	// their damage.
	require.NoError(t, p.Inject(ctx, raw), "B refuses the undamaged message")
	requireHasChange(t, p.B, wanjiru, added.Change.Hash, "B after the undamaged message")
}
