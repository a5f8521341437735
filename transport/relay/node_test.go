package relay

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/record"
)

// nodeFixture: three enrolled sites, each with changes for the hub.
type nodeFixture struct {
	w         *world
	a, b, hub *site
	fromA     []byte // A's bundle for the hub
	fromB     []byte // B's bundle for the hub, created an hour later
}

func newNodeFixture(t *testing.T) *nodeFixture {
	ctx := context.Background()
	w := newWorld(t, testDir(t))
	f := &nodeFixture{w: w, a: w.site(t, "a"), b: w.site(t, "b"), hub: w.site(t, "hub")}
	for _, s := range []*site{f.a, f.b, f.hub} {
		t.Cleanup(s.close)
	}
	register(t, f.a.r, "Akinyi")
	var err error
	f.fromA, err = f.a.e.Seal(ctx, f.hub.r.ID())
	require.NoError(t, err)
	w.clock.Advance(time.Hour)
	chart := register(t, f.b.r, "Bahati")
	for i := range 20 { // a bigger bundle
		_, err := f.b.r.Edit(ctx, chart, nurse, record.AddEncounter{Complaint: "cough", Note: "visit " + string(rune('a'+i))})
		require.NoError(t, err)
	}
	f.fromB, err = f.b.e.Seal(ctx, f.hub.r.ID())
	require.NoError(t, err)
	return f
}

func keys(items []Item) []string {
	if len(items) == 0 {
		return nil
	}
	out := make([]string, len(items))
	for i, it := range items {
		out[i] = it.Key()
	}
	return out
}

func mustParse(t *testing.T, raw []byte) *Envelope {
	t.Helper()
	env, err := Parse(raw)
	require.NoError(t, err)
	return env
}

func TestCarryPriorityAndBudget(t *testing.T) {
	f := newNodeFixture(t)
	ctx := context.Background()
	clinic := f.w.node(t, "clinic", NodeConfig{})
	defer clinic.Close()
	// Newest first into the clinic node: order of arrival must not matter.
	for _, raw := range [][]byte{f.fromB, f.fromA} {
		res, err := clinic.Put(ctx, raw)
		require.NoError(t, err)
		require.True(t, res.Stored)
	}
	// An acknowledgement from the hub of some earlier bundle of A's.
	earlier := mustParse(t, f.fromA)
	ack, err := seal(f.hub.id, Header{Kind: KindAck, Sender: f.hub.r.ID(), Recipient: f.a.r.ID(), ID: newID(), Created: t0, Expires: t0.Add(24 * time.Hour)}, mustAck(t, newID()))
	require.NoError(t, err)
	_, err = clinic.Put(ctx, ack)
	require.NoError(t, err)

	items, err := clinic.Items(ctx)
	require.NoError(t, err)
	require.Len(t, items, 3)
	assert.Equal(t, KindAck, items[0].Kind, "acknowledgements are carried first")
	assert.Equal(t, earlier.Key(), items[1].Key(), "then the oldest bundle of changes")
	assert.Equal(t, mustParse(t, f.fromB).Key(), items[2].Key())

	tests := []struct {
		name    string
		budget  int64
		carried []string
		full    []string
	}{
		{"no limit", 0, keys(items), nil},
		{"room for everything", int64(len(f.fromA) + len(f.fromB) + len(ack)), keys(items), nil},
		// The big newer bundle does not fit; the ack is always taken.
		{"room for the small bundle", int64(len(f.fromA) + 10), keys(items[:2]), keys(items[2:])},
		// The oldest does not fit after... nothing fits but the ack.
		{"room for nothing", 10, keys(items[:1]), keys(items[1:])},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			phone := f.w.node(t, "phone-"+tt.name, NodeConfig{Budget: tt.budget})
			defer phone.Close()
			res, err := Carry(ctx, clinic, phone)
			require.NoError(t, err)
			assert.Equal(t, tt.carried, keys(res.Carried), "carried in priority order within the budget")
			assert.Equal(t, tt.full, keys(res.Full), "left behind for lack of room")
			held, err := phone.Items(ctx)
			require.NoError(t, err)
			var used int64
			for _, it := range held {
				if it.Kind == KindChanges {
					used += it.Size
				}
			}
			if tt.budget > 0 {
				assert.LessOrEqual(t, used, tt.budget, "the phone holds more than its budget")
			}
			for _, it := range res.Carried {
				assert.Equal(t, 1, heldHops(t, phone, it.Key()), "a carried copy counts one more hop")
			}
			// Carrying again copies nothing: the phone has it all or is full.
			again, err := Carry(ctx, clinic, phone)
			require.NoError(t, err)
			assert.Empty(t, again.Carried)
			// The clinic still holds everything: carrying never removes.
			still, err := clinic.Items(ctx)
			require.NoError(t, err)
			assert.Equal(t, keys(items), keys(still))
		})
	}
}

func heldHops(t *testing.T, n *Node, key string) int {
	t.Helper()
	raw, err := n.Read(context.Background(), key)
	require.NoError(t, err)
	return mustParse(t, raw).Hops
}

func mustAck(t *testing.T, ids ...string) []byte {
	t.Helper()
	p, err := encodeAck(ids)
	require.NoError(t, err)
	return p
}

func TestPruneOnlyExpiredOrAcknowledged(t *testing.T) {
	f := newNodeFixture(t)
	ctx := context.Background()
	n := f.w.node(t, "phone", NodeConfig{})
	defer n.Close()
	a, b := mustParse(t, f.fromA), mustParse(t, f.fromB)
	for _, raw := range [][]byte{f.fromA, f.fromB} {
		_, err := n.Put(ctx, raw)
		require.NoError(t, err)
	}
	hubID, aID, bID := f.hub.r.ID(), f.a.r.ID(), f.b.r.ID()
	ackFrom := func(signer *site, to string, ids ...string) []byte {
		raw, err := seal(signer.id, Header{Kind: KindAck, Sender: signer.r.ID(), Recipient: to, ID: newID(), Created: f.w.clock.Now(), Expires: f.w.clock.Now().Add(48 * time.Hour)}, mustAck(t, ids...))
		require.NoError(t, err)
		return raw
	}

	// Acknowledgements that do not match a bundle's direction prune nothing:
	// B cannot acknowledge, for the hub, what A sent the hub.
	for _, raw := range [][]byte{ackFrom(f.b, aID, a.ID), ackFrom(f.hub, bID, a.ID), ackFrom(f.a, hubID, a.ID)} {
		res, err := n.Put(ctx, raw)
		require.NoError(t, err)
		assert.Empty(t, res.Pruned, "an acknowledgement from the wrong device pruned a bundle")
	}
	pruned, err := n.Prune(ctx)
	require.NoError(t, err)
	assert.Empty(t, pruned)
	assert.True(t, holds(t, n, a.Key()) && holds(t, n, b.Key()))

	// The hub's acknowledgement of A's bundle prunes it, and only it.
	res, err := n.Put(ctx, ackFrom(f.hub, aID, a.ID))
	require.NoError(t, err)
	assert.Equal(t, []string{a.Key()}, res.Pruned)
	assert.False(t, holds(t, n, a.Key()))
	assert.True(t, holds(t, n, b.Key()), "an acknowledgement of A's bundle pruned B's")

	// A copy of the acknowledged bundle is not taken in again.
	again, err := n.Put(ctx, f.fromA)
	require.NoError(t, err)
	assert.False(t, again.Stored, "a node took in a bundle it holds an acknowledgement of")

	// Until it expires, B's bundle stays, however much time passes short of it.
	f.w.clock.now = b.Expires.Add(-time.Second)
	pruned, err = n.Prune(ctx)
	require.NoError(t, err)
	assert.NotContains(t, pruned, b.Key())
	assert.True(t, holds(t, n, b.Key()))
	f.w.clock.now = b.Expires
	pruned, err = n.Prune(ctx)
	require.NoError(t, err)
	assert.Contains(t, pruned, b.Key(), "an expired bundle is dropped")
	_, err = n.Put(ctx, f.fromB)
	assert.ErrorIs(t, err, ErrExpired, "a node must refuse an expired bundle")
}

func holds(t *testing.T, n *Node, key string) bool {
	t.Helper()
	items, err := n.Items(context.Background())
	require.NoError(t, err)
	return slices.ContainsFunc(items, func(it Item) bool { return it.Key() == key })
}

func TestScanAdoptsArrivalsSafely(t *testing.T) {
	f := newNodeFixture(t)
	ctx := context.Background()
	bt := filepath.Join(f.w.dir, "bluetooth")
	require.NoError(t, os.MkdirAll(bt, 0o700))
	n := f.w.node(t, "phone", NodeConfig{Inboxes: []string{bt}})
	defer n.Close()
	outside := filepath.Join(f.w.dir, "outside.relay")
	require.NoError(t, os.WriteFile(outside, f.fromA, 0o600))

	write := func(dir, name string, data []byte) {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), data, 0o600))
	}
	write(bt, "chartsync (1).relay", f.fromA)                                // renamed by the phone
	write(n.Dir(), "from-lwanda.relay", f.fromB)                             // dropped in the node
	write(bt, "junk.relay", []byte("not a bundle"))                          // refused, removed
	write(bt, "holiday.jpg", []byte("a photo"))                              // not ours: left alone
	write(bt, "forged.relay", reframeHeader(t, f.fromA))                     // refused, removed
	require.NoError(t, os.Symlink(outside, filepath.Join(bt, "link.relay"))) // not a regular file
	// A file with a held name but dropped straight into the held folder
	// from outside is read, but a name that is not a key is ignored.
	write(filepath.Join(n.Dir(), heldDir), "not-a-key.relay", f.fromA)

	res, err := n.Scan(ctx)
	require.NoError(t, err)
	assert.Len(t, res.Adopted, 2)
	assert.Len(t, res.Rejected, 2)
	for _, r := range res.Rejected {
		assert.True(t, isBadInput(r.Err), "%s refused with %v", r.Path, r.Err)
	}
	for _, name := range []string{"chartsync (1).relay", "junk.relay", "forged.relay"} {
		_, err := os.Stat(filepath.Join(bt, name))
		assert.ErrorIs(t, err, os.ErrNotExist, "%s stayed in the inbox", name)
	}
	_, err = os.Stat(filepath.Join(bt, "holiday.jpg"))
	assert.NoError(t, err, "a file that is not a bundle must be left alone")
	_, err = os.Lstat(filepath.Join(bt, "link.relay"))
	assert.NoError(t, err, "a symlink must be left alone")
	_, err = os.Stat(outside)
	assert.NoError(t, err, "a file outside the node must not be touched")

	items, err := n.Items(ctx)
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{mustParse(t, f.fromA).Key(), mustParse(t, f.fromB).Key()}, keys(items))
	entries, err := os.ReadDir(filepath.Join(n.Dir(), heldDir))
	require.NoError(t, err)
	for _, e := range entries {
		assert.NotContains(t, e.Name(), tmpPrefix, "a temporary file was left in the node")
	}
}

// reframeHeader returns raw with its expiry moved, checksum fixed.
func reframeHeader(t *testing.T, raw []byte) []byte {
	t.Helper()
	env := mustParse(t, raw)
	h := env.Header
	h.Expires = h.Expires.Add(time.Hour)
	hb, err := encodeHeader(h)
	require.NoError(t, err)
	body := []byte{0}
	body = appendBytes(body, hb)
	body = appendBytes(body, env.Payload)
	body = append(body, env.sig...)
	return encodeFrame(body)
}

func TestOpenNodeRemovesTemporaryFiles(t *testing.T) {
	f := newNodeFixture(t)
	n := f.w.node(t, "phone", NodeConfig{})
	require.NoError(t, n.Close())
	held := filepath.Join(f.w.dir, "phone", heldDir)
	require.NoError(t, os.WriteFile(filepath.Join(held, tmpPrefix+"crashed"), []byte("half a bund"), 0o600))
	n = f.w.node(t, "phone", NodeConfig{})
	defer n.Close()
	entries, err := os.ReadDir(held)
	require.NoError(t, err)
	assert.Empty(t, entries, "a temporary file left by a crash must be removed")
}

func TestNodeRefusesUnsigned(t *testing.T) {
	f := newNodeFixture(t)
	n := f.w.node(t, "phone", NodeConfig{})
	defer n.Close()
	_, err := n.Put(context.Background(), reframeHeader(t, f.fromA))
	assert.True(t, isBadInput(err))
	items, err := n.Items(context.Background())
	require.NoError(t, err)
	assert.Empty(t, items, "a relay node stored a forged bundle")
}
