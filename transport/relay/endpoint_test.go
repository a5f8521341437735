package relay

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
)

func TestSendOnlyWhatIsNeeded(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, testDir(t))
	a, b := w.site(t, "a"), w.site(t, "b")
	defer a.close()
	defer b.close()
	peer := b.r.ID()

	st, err := a.e.Send(ctx, peer)
	require.NoError(t, err)
	assert.Zero(t, st.BundlesSent, "nothing to tell a peer: no bundle")

	register(t, a.r, "Wanjiru")
	st, err = a.e.Send(ctx, peer)
	require.NoError(t, err)
	assert.Equal(t, 1, st.BundlesSent)
	assert.Equal(t, 1, st.ChangesSent)
	st, err = a.e.Send(ctx, peer)
	require.NoError(t, err)
	assert.Zero(t, st.BundlesSent, "the bundle already in the outbox covers everything: no new one")

	register(t, a.r, "Achieng")
	st, err = a.e.Send(ctx, peer)
	require.NoError(t, err)
	assert.Equal(t, 1, st.BundlesSent, "a new edit needs a new bundle")
	assert.Equal(t, 2, st.ChangesSent, "the new bundle carries everything unacknowledged")

	// Its lifetime runs out unacknowledged: it is sent afresh.
	w.clock.Advance(31 * 24 * time.Hour)
	st, err = a.e.Send(ctx, peer)
	require.NoError(t, err)
	assert.Equal(t, 1, st.BundlesSent, "an expired, unacknowledged bundle is sent again")
	items, err := a.e.Node().Items(ctx)
	require.NoError(t, err)
	assert.Len(t, items, 1, "expired bundles are left out, the fresh one is held")
}

func TestLostPhoneLosesNothing(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, testDir(t))
	b := w.site(t, "b")
	a := w.site(t, "a", b.r.ID())
	defer a.close()
	defer b.close()
	chart := register(t, a.r, "Wanjiru")
	_, err := a.r.Edit(ctx, chart, nurse, record.AddAllergy{Substance: "Penicillin", Reaction: "rash", Severity: "mild"})
	require.NoError(t, err)
	_, err = a.e.Sync(ctx)
	require.NoError(t, err)

	lost := w.node(t, "lost-phone", NodeConfig{})
	res, err := Carry(ctx, a.e.Node(), lost)
	require.NoError(t, err)
	require.Len(t, res.Carried, 1)
	require.NoError(t, lost.Close()) // the phone falls in the river

	// A's node still holds the bundle; the next phone carries it.
	a.e.Sync(ctx)
	phone := w.node(t, "phone", NodeConfig{})
	defer phone.Close()
	for range 3 {
		_, err = Carry(ctx, a.e.Node(), phone)
		require.NoError(t, err)
		_, err = Carry(ctx, phone, b.e.Node())
		require.NoError(t, err)
		_, err = b.e.Sync(ctx)
		require.NoError(t, err)
		_, err = Carry(ctx, b.e.Node(), phone)
		require.NoError(t, err)
		_, err = Carry(ctx, phone, a.e.Node())
		require.NoError(t, err)
		_, err = a.e.Sync(ctx)
		require.NoError(t, err)
	}
	assert.Equal(t, heads(t, a.r), heads(t, b.r), "B must get A's edits although the first phone was lost")
	ps, err := a.r.Peers(ctx)
	require.NoError(t, err)
	require.Len(t, ps, 1)
	assert.Zero(t, ps[0].Unacknowledged, "B's acknowledgement must come back to A")
	items, err := a.e.Node().Items(ctx)
	require.NoError(t, err)
	for _, it := range items {
		assert.False(t, it.Kind == KindChanges && it.Sender == a.r.ID() && it.Recipient == b.r.ID(),
			"A's bundle for B must be pruned once acknowledged")
	}
}

func TestCollectKeepsBundleOnReplicaFailure(t *testing.T) {
	ctx := context.Background()
	w := newWorld(t, testDir(t))
	a, b := w.site(t, "a"), w.site(t, "b")
	defer a.close()
	register(t, a.r, "Wanjiru")
	_, err := a.e.Send(ctx, b.r.ID())
	require.NoError(t, err)
	_, err = Carry(ctx, a.e.Node(), b.e.Node())
	require.NoError(t, err)

	// B's replica fails (closed here; a full disk in the field): the
	// bundle is neither remembered nor acknowledged, and stays.
	require.NoError(t, b.r.Close())
	_, err = b.e.Collect(ctx, "")
	require.ErrorIs(t, err, replica.ErrClosed)
	assert.False(t, isBadInput(err))
	assert.Empty(t, b.e.st.Seen)
	items, err := b.e.Node().Items(ctx)
	require.NoError(t, err)
	require.Len(t, items, 1, "the bundle must stay in B's node for the next try")

	// B comes back over the same store: the bundle is opened then.
	r, err := replica.New(ctx, keepOpen{b.st}, replica.Config{Now: w.clock.Now})
	require.NoError(t, err)
	defer r.Close()
	require.NoError(t, b.e.Close())
	e, err := OpenEndpoint(filepath.Join(w.dir, "b"), r, b.id, w.roster, Config{Now: w.clock.Now})
	require.NoError(t, err)
	defer e.Close()
	st, err := e.Collect(ctx, "")
	require.NoError(t, err)
	assert.Equal(t, 1, st.BundlesReceived)
	assert.Equal(t, heads(t, a.r), heads(t, r))
}

func TestConfigValidate(t *testing.T) {
	for _, c := range []Config{
		{Lifetime: -time.Second},
		{Peers: []string{"not-an-id"}},
		{Node: NodeConfig{Budget: -1}},
	} {
		assert.Error(t, c.Validate())
	}
	assert.NoError(t, Config{}.Validate())
}
