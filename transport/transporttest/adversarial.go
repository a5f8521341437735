package transporttest

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/replica"
)

// testAdversarial drives B with messages a broken or lying A could send
// through the transport: positions no honest sender could claim, changes
// reusing or skipping a sequence number, and a change whose dependencies
// B lacks. B must refuse what it cannot take with an error matching
// BadInput, keep what it holds intact, and still converge with A after.
func testAdversarial(t *testing.T, newPair func(t *testing.T) Pair) {
	t.Run("LyingPositions", func(t *testing.T) {
		p := checked(t, newPair)
		chart := register(t, p.A, "Wanjiru", "Mwangi", "Kamuga")
		converge(t, p)
		edit(t, p.A, chart, nurse, amoxicillin(250))
		edit(t, p.B, chart, clinician, amoxicillin(500))
		bPending := unacknowledged(t, p.B, p.A.ID())
		require.Positive(t, bPending)
		lies := []replica.Bundle{
			{From: p.A.ID(), To: p.B.ID(), Ack: 1 << 40},                 // "I hold all of B's log and more"
			{From: p.A.ID(), To: p.B.ID(), Upto: 1 << 62, Head: 1 << 62}, // "B holds all of mine"
		}
		for _, lie := range lies {
			err := inject(t, p, lie)
			if err != nil {
				require.True(t, matchesAny(err, p.BadInput), "a refusal is typed: %v", err)
			}
			assert.Equal(t, bPending, unacknowledged(t, p.B, p.A.ID()), "B still knows what A has not acknowledged")
		}
		// No lie wedges the pair: their edits still meet.
		converge(t, p)
		RequireSame(t, p.A, p.B)
	})
	t.Run("SequenceNumbers", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			mangle func(*crdt.ChangeInfo)
			forked bool // the change shows its author forked
		}{
			{"reused", func(info *crdt.ChangeInfo) { info.Time = info.Time.Add(time.Second) }, true},
			{"skipped", func(info *crdt.ChangeInfo) { info.Seq++ }, false},
		} {
			t.Run(tc.name, func(t *testing.T) {
				p := checked(t, newPair)
				chart := register(t, p.A, "Wanjiru", "Mwangi", "Kamuga")
				last := edit(t, p.A, chart, nurse, amoxicillin(250)).Change
				converge(t, p)
				info, err := crdt.ChangeOps(last.Raw)
				require.NoError(t, err)
				tc.mangle(&info)
				raw, err := crdt.EncodeChange(info)
				require.NoError(t, err)
				before := Snapshot(t, p.B).WithoutSyncTimes()
				err = inject(t, p, replica.Bundle{From: p.A.ID(), To: p.B.ID(), Changes: []replica.BundleChange{signed(t, p, chart, raw)}})
				require.Error(t, err, "a change the chart cannot take is refused")
				t.Logf("refused: %v", err)
				assert.Equal(t, before.Charts, Snapshot(t, p.B).Charts, "B's charts are as they were")
				if !tc.forked {
					require.True(t, matchesAny(err, p.BadInput), "the refusal is typed: %v", err)
					edit(t, p.A, chart, nurse, amoxicillin(500))
					converge(t, p)
					return
				}
				// Two changes of A with one sequence number, both
				// signed with A's key: only a copy of A writing as A
				// makes them. The refusal says so.
				require.ErrorIs(t, err, replica.ErrForkedReplica, "the refusal is of a forked author")
				assert.Contains(t, err.Error(), p.A.ID(), "the refusal names A")
				if p.A.Forked() != nil {
					// The transport told A: it writes as itself no more.
					_, err := p.A.Edit(context.WithoutCancel(t.Context()), chart, nurse, amoxicillin(500))
					require.ErrorIs(t, err, replica.ErrForkedReplica, "A, told it is forked, edits no more")
					return
				}
				edit(t, p.A, chart, nurse, amoxicillin(500))
				converge(t, p)
			})
		}
	})
	t.Run("Orphan", func(t *testing.T) {
		p := checked(t, newPair)
		chart := register(t, p.A, "Wanjiru", "Mwangi", "Kamuga")
		converge(t, p)
		edit(t, p.A, chart, nurse, amoxicillin(250))
		orphan := edit(t, p.A, chart, nurse, amoxicillin(500)).Change
		before := Snapshot(t, p.B).WithoutSyncTimes()
		err := inject(t, p, replica.Bundle{From: p.A.ID(), To: p.B.ID(), Changes: []replica.BundleChange{signed(t, p, chart, orphan.Raw)}})
		if err != nil {
			require.True(t, matchesAny(err, p.BadInput), "a refusal is typed: %v", err)
		}
		assert.Equal(t, before.Charts, Snapshot(t, p.B).Charts, "a change whose dependencies are missing does not touch the chart")
		converge(t, p)
		RequireSame(t, p.A, p.B)
	})
}

// signed returns raw as a bundle change of chart, signed with p.Sign if
// the pair signs.
func signed(t *testing.T, p Pair, chart string, raw []byte) replica.BundleChange {
	t.Helper()
	bc := replica.BundleChange{Chart: chart, Raw: raw}
	if p.Sign != nil {
		c, err := crdt.ParseChange(raw)
		require.NoError(t, err)
		bc.Sig = p.Sign(chart, [32]byte(c.Hash))
	}
	return bc
}

// inject encodes b (signed as A's would be by the transport, through
// Seal) and delivers it to B.
func inject(t *testing.T, p Pair, b replica.Bundle) error {
	t.Helper()
	ctx := context.WithoutCancel(t.Context())
	data, err := b.Encode()
	require.NoError(t, err)
	if p.Seal != nil {
		data, err = p.Seal(ctx, data)
		require.NoError(t, err)
	}
	return p.Inject(ctx, data)
}
