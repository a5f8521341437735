package replica

import (
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/internal/forge"
	"github.com/chartsync/chartsync/record"
)

// Planning a received bundle needs no store: these tests hand it charts
// built in memory and read its decision.

var (
	planAt     = time.Date(2026, 5, 4, 8, 0, 0, 0, time.UTC)
	planNurse  = record.Author{UserID: "u-1", Name: "Nurse Wambui", Role: record.RoleNurse, Device: "tablet"}
	planLabTec = record.Author{UserID: "u-2", Name: "Otieno", Role: record.RoleLabTechnician, Device: "lab"}
)

// planChartOf builds a chart of clinic with a prescription, as sender.
func planChartOf(t *testing.T, sender, clinic string) *record.Chart {
	t.Helper()
	c, _, err := record.New(uuid.NewString(), sender, planNurse, planAt, record.Register{
		GivenName: "Amina", Sex: "female", EstimatedBirthYear: 1990, HomeClinic: clinic,
	})
	require.NoError(t, err)
	_, err = c.Do(planNurse, planAt, record.Prescribe{Drug: "Amoxicillin", Dose: 250, DoseUnit: "mg", Route: "oral", Frequency: "TDS", DurationDays: 5})
	require.NoError(t, err)
	return c
}

// decodedOf encodes the charts' changes as a bundle from sender to to and
// decodes it as receiving does.
func decodedOf(t *testing.T, from, to string, charts ...*record.Chart) *decoded {
	t.Helper()
	b := &Bundle{From: from, To: to, Upto: 3, Head: 3}
	for _, c := range charts {
		chs, err := c.Doc().Changes(nil)
		require.NoError(t, err)
		for _, ch := range chs {
			b.Changes = append(b.Changes, BundleChange{Chart: c.ID(), Raw: ch.Raw})
		}
	}
	data, err := b.Encode()
	require.NoError(t, err)
	d, err := decodeReceived(data, to, "")
	require.NoError(t, err)
	return d
}

// nothingHeld is what a replica that holds none of the charts hands the plan.
func nothingHeld(t *testing.T, actor string, fresh []chartBatch) map[string]*heldChart {
	t.Helper()
	out := map[string]*heldChart{}
	for _, cb := range fresh {
		doc, err := crdt.New(actor)
		require.NoError(t, err)
		out[cb.chart] = &heldChart{l: &loaded{id: cb.chart, doc: doc}, isNew: true}
	}
	return out
}

// heldCopy is a chart held as received before: a copy of c.
func heldCopy(t *testing.T, actor string, c *record.Chart) *heldChart {
	t.Helper()
	doc, err := c.Doc().Fork(nil, actor)
	require.NoError(t, err)
	l := &loaded{id: c.ID(), doc: doc}
	require.NoError(t, l.open())
	scope, err := l.chart.Scope()
	require.NoError(t, err)
	l.scope = scope
	return &heldChart{l: l, base: doc.Heads()}
}

func TestPlanReceive(t *testing.T) {
	sender, me := NewID(), NewID()
	rules := func(clinic string) receiveRules {
		return receiveRules{cfg: Config{}.withDefaults(), actor: me, clinic: clinic, checkAuthors: true}
	}

	t.Run("new charts of the clinic are stored with their index and grant", func(t *testing.T) {
		a, b := planChartOf(t, sender, "north"), planChartOf(t, sender, "north")
		d := decodedOf(t, sender, me, a, b)
		fresh := d.fresh(nil)
		p := planReceive(d, fresh, nothingHeld(t, me, fresh), nil, rules("north"))
		require.NoError(t, p.err)
		assert.Equal(t, 4, p.res.Applied)
		assert.Zero(t, p.res.Duplicates)
		assert.ElementsMatch(t, []string{a.ID(), b.ID()}, p.res.Charts)
		assert.Len(t, p.batch.Changes, 4, "every change is in the batch")
		require.Len(t, p.batch.Charts, 2, "each chart gets its index row")
		assert.Equal(t, []string{"north"}, p.batch.Charts[0].Scope)
		assert.Len(t, p.batch.Grants, 2, "the clinic joins each new chart's scope")
		assert.Empty(t, p.batch.Peers, "what the sender knows is for commit to record")
		for _, h := range p.charts {
			assert.True(t, a.Doc().Heads().Equal(h.l.doc.Heads()) || b.Doc().Heads().Equal(h.l.doc.Heads()),
				"the planned chart holds the sender's changes")
		}
	})

	t.Run("index rows read from the checker's state are those of a fresh read", func(t *testing.T) {
		a := planChartOf(t, sender, "north")
		_, err := a.Do(planNurse, planAt, record.UpdateDemographics{Village: record.Ptr("Kamuga"), Phone: record.Ptr("+254 700 000 222")})
		require.NoError(t, err)
		d := decodedOf(t, sender, me, a)
		fresh := d.fresh(nil)
		p := planReceive(d, fresh, nothingHeld(t, me, fresh), nil, rules("north"))
		require.NoError(t, p.err)
		require.Len(t, p.batch.Charts, 1)
		doc, err := p.charts[0].l.doc.Fork(nil, me)
		require.NoError(t, err)
		l := &loaded{id: a.ID(), doc: doc}
		require.NoError(t, l.open())
		want, err := indexEntry(rules("north").cfg, l)
		require.NoError(t, err)
		got := p.batch.Charts[0]
		got.Updated, want.Updated = time.Time{}, time.Time{}
		assert.Equal(t, want, got)
		assert.Equal(t, "Kamuga", got.Village)
	})

	t.Run("changes already held are counted, not stored again", func(t *testing.T) {
		a := planChartOf(t, sender, "north")
		d := decodedOf(t, sender, me, a)
		first := d.charts[0].changes[0].Hash
		fresh := d.fresh(map[crdt.Hash]bool{first: true})
		require.Len(t, fresh, 1)
		require.Len(t, fresh[0].changes, 1)
		held := map[string]*heldChart{}
		reg, err := a.Doc().Fork(crdt.Heads{first}, me)
		require.NoError(t, err)
		l := &loaded{id: a.ID(), doc: reg, scope: []string{"north"}}
		require.NoError(t, l.open())
		held[a.ID()] = &heldChart{l: l, base: reg.Heads()}
		p := planReceive(d, fresh, held, nil, rules("north"))
		require.NoError(t, p.err)
		assert.Equal(t, 1, p.res.Applied)
		assert.Equal(t, 1, p.res.Duplicates)
		assert.Empty(t, p.batch.Grants, "the clinic was in the chart's scope already")
	})

	t.Run("a change stored after the known set was read is not new", func(t *testing.T) {
		// Another bundle with the same registration committed between
		// reading what is known and reading the chart: the copy has it.
		a := planChartOf(t, sender, "north")
		d := decodedOf(t, sender, me, a)
		fresh := d.fresh(nil)
		p := planReceive(d, fresh, map[string]*heldChart{a.ID(): heldCopy(t, me, a)}, nil, rules("north"))
		require.NoError(t, p.err, "the registration is not taken for a second one")
		assert.Zero(t, p.res.Applied)
		assert.Equal(t, 2, p.res.Duplicates)
		assert.Empty(t, p.batch.Changes)
	})

	t.Run("refusals", func(t *testing.T) {
		for _, tc := range []struct {
			name       string
			plan       func() receivePlan
			want       error
			quarantine bool
		}{
			{"a new chart of another clinic", func() receivePlan {
				d := decodedOf(t, sender, me, planChartOf(t, sender, "south"))
				fresh := d.fresh(nil)
				return planReceive(d, fresh, nothingHeld(t, me, fresh), nil, rules("north"))
			}, ErrOutOfScope, true}, // kept for review, as a forged one is
			{"a second registration of a held chart", func() receivePlan {
				held := planChartOf(t, sender, "north")
				again, _, err := record.New(held.ID(), NewID(), planNurse, planAt.Add(time.Hour), record.Register{
					GivenName: "Someone", Sex: "male", EstimatedBirthYear: 1970, HomeClinic: "north"})
				require.NoError(t, err)
				d := decodedOf(t, sender, me, again)
				fresh := d.fresh(nil)
				return planReceive(d, fresh, map[string]*heldChart{held.ID(): heldCopy(t, me, held)}, nil, rules("north"))
			}, ErrUnauthorizedChange, true},
			{"a role that may not change the section", func() receivePlan {
				c, err := forge.Prescription(sender, planNurse, planLabTec, "north", planAt)
				require.NoError(t, err)
				d := decodedOf(t, sender, me, c)
				fresh := d.fresh(nil)
				return planReceive(d, fresh, nothingHeld(t, me, fresh), nil, rules("north"))
			}, ErrUnauthorizedChange, true},
		} {
			t.Run(tc.name, func(t *testing.T) {
				p := tc.plan()
				require.ErrorIs(t, p.err, tc.want)
				assert.Equal(t, tc.quarantine, p.quarantine, "whether the bundle is kept for review")
				assert.Empty(t, p.batch.Changes, "a refused plan writes nothing")
				assert.Empty(t, p.charts)
			})
		}
	})
}

func TestCausalOrder(t *testing.T) {
	h := func(n byte) crdt.Hash { return crdt.Hash{n} }
	ch := func(n byte, deps ...byte) crdt.Change {
		c := crdt.Change{Hash: h(n)}
		for _, d := range deps {
			c.Deps = append(c.Deps, h(d))
		}
		return c
	}
	for _, tc := range []struct {
		name string
		chs  []crdt.Change
		want []int
	}{
		{"already causal", []crdt.Change{ch(1), ch(2, 1), ch(3, 2)}, []int{0, 1, 2}},
		{"backfilled ancestors listed last", []crdt.Change{ch(3, 2), ch(4, 3), ch(1), ch(2, 1)}, []int{2, 3, 0, 1}},
		{"a merge of two branches", []crdt.Change{ch(4, 2, 3), ch(2, 1), ch(3, 1), ch(1)}, []int{3, 1, 2, 0}},
		{"dependencies outside the set are ignored", []crdt.Change{ch(2, 9), ch(1)}, []int{0, 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, causalOrder(tc.chs))
		})
	}
	long := make([]crdt.Change, 100000)
	for i := range long {
		long[i] = crdt.Change{Hash: crdt.Hash{byte(i), byte(i >> 8), byte(i >> 16)}}
		if i > 0 {
			long[i].Deps = []crdt.Hash{long[i-1].Hash}
		}
	}
	slices.Reverse(long)
	order := causalOrder(long)
	assert.Equal(t, len(long)-1, order[0], "a 100,000-change chain listed backwards is put in order without deep recursion")
}
