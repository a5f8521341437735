package file_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/transport/file"
	"github.com/chartsync/chartsync/transport/transporttest"
)

// TestReplayedFileIsRefused: a bundle file already applied (every
// position it carries already taken from its sender, every change it
// carries already held) is refused by ImportFile with an error matching
// ErrReplayed that names the file, passed over (and reported) by Import,
// and the replica is exactly as it was, sync times included: the file
// just applied imported again, an older file after a newer one, and a
// reply carrying only an acknowledgement.
func TestReplayedFileIsRefused(t *testing.T) {
	for _, tc := range []struct {
		name string
		// replay returns a folder holding a file b has applied, and the
		// file's path.
		replay func(t *testing.T, a, b *replica.Replica) (dir, path string)
	}{
		{"the file just applied, imported again", func(t *testing.T, a, b *replica.Replica) (string, string) {
			stick := t.TempDir()
			chart := register(t, a, "Wanjiru")
			addAllergy(t, a, chart, "Penicillin")
			ex := export(t, a, b.ID(), stick)
			im := importAll(t, b, stick)
			require.Equal(t, 2, im.Applied)
			return stick, ex.Path
		}},
		{"an older file after a newer one", func(t *testing.T, a, b *replica.Replica) (string, string) {
			stick, kept := t.TempDir(), t.TempDir()
			chart := register(t, a, "Wanjiru")
			old := export(t, a, b.ID(), stick)
			importAll(t, b, stick)
			data, err := os.ReadFile(old.Path)
			require.NoError(t, err)
			oldPath := filepath.Join(kept, filepath.Base(old.Path))
			require.NoError(t, os.WriteFile(oldPath, data, 0o600))
			addAllergy(t, a, chart, "Penicillin")
			export(t, a, b.ID(), stick) // replaces the older file on the stick
			im := importAll(t, b, stick)
			require.Equal(t, 1, im.Applied, "the newer file brings the allergy")
			return kept, oldPath
		}},
		{"a reply carrying only an acknowledgement", func(t *testing.T, a, b *replica.Replica) (string, string) {
			toB, toA := t.TempDir(), t.TempDir()
			register(t, a, "Wanjiru")
			export(t, a, b.ID(), toB)
			importAll(t, b, toB)
			reply := export(t, b, a.ID(), toA)
			require.Zero(t, reply.Changes, "b has nothing a lacks")
			importAll(t, a, toA)
			return toA, reply.Path
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := openReplica(t, "a"), openReplica(t, "b")
			dir, path := tc.replay(t, a, b)
			r := b
			if n, err := file.ParseName(filepath.Base(path)); err == nil && n.To == a.ID() {
				r = a
			}
			before := transporttest.Snapshot(t, r)

			res, err := file.ImportFile(t.Context(), r, path)
			require.ErrorIs(t, err, file.ErrReplayed, "a file already applied is refused")
			var fe *file.FileError
			require.True(t, errors.As(err, &fe), "the error is a *FileError")
			assert.Equal(t, path, fe.Path, "the error names the file")
			assert.Contains(t, err.Error(), filepath.Base(path))
			assert.ErrorIs(t, res.Err, file.ErrReplayed)
			assert.Equal(t, before, transporttest.Snapshot(t, r), "a replayed file changes nothing, its sync time included")

			// In a folder, where files stay until replaced, it is
			// passed over and reported.
			im, err := file.Import(t.Context(), r, dir)
			require.NoError(t, err, "a file already applied is no refusal of the folder")
			require.Len(t, im.Files, 1)
			assert.ErrorIs(t, im.Files[0].Err, file.ErrReplayed)
			assert.Equal(t, path, im.Files[0].Path)
			assert.Equal(t, 1, im.Replayed)
			assert.Zero(t, im.Accepted)
			assert.Zero(t, im.Rejected, "a replay is not a damaged or forged file")
			assert.Equal(t, before, transporttest.Snapshot(t, r), "a replayed file changes nothing, its sync time included")
		})
	}
}

// TestFileOfHeldChangesIsNotAReplay: a file whose changes all arrived
// before by another way (a hub forwarding them) but whose positions are
// new from its sender is taken, not refused: it tells the recipient how
// far it holds the sender's log.
func TestFileOfHeldChangesIsNotAReplay(t *testing.T) {
	a, hub, b := openReplica(t, "a"), openReplica(t, "hub"), openReplica(t, "b")
	chart := register(t, a, "Wanjiru")
	addAllergy(t, a, chart, "Penicillin")
	toHub, toB, direct := t.TempDir(), t.TempDir(), t.TempDir()
	export(t, a, hub.ID(), toHub)
	importAll(t, hub, toHub)
	export(t, hub, b.ID(), toB)
	require.Equal(t, 2, importAll(t, b, toB).Applied, "b has a's changes through the hub")

	ex := export(t, a, b.ID(), direct)
	res, err := file.ImportFile(t.Context(), b, ex.Path)
	require.NoError(t, err, "a's own file is new to b: its positions are")
	assert.Zero(t, res.Received.Applied)
	assert.Equal(t, 2, res.Received.Duplicates)
	out, err := b.MakeBundle(t.Context(), a.ID())
	require.NoError(t, err)
	reply, err := replica.DecodeBundle(out.Data)
	require.NoError(t, err)
	assert.EqualValues(t, 2, reply.Ack, "b now holds a's log up to its second change, and says so")
}

// TestLinkPassesOverFilesItApplied: a Link reads its inbox every cycle,
// where the peer's last file stays until the peer's next export replaces
// it; a file the Link applied before is passed over, not an error.
func TestLinkPassesOverFilesItApplied(t *testing.T) {
	a, b := openReplica(t, "a"), openReplica(t, "b")
	stick := t.TempDir()
	la, lb := file.NewLink(a, b.ID(), stick, stick), file.NewLink(b, a.ID(), stick, stick)
	register(t, a, "Wanjiru")
	_, err := la.Sync(t.Context())
	require.NoError(t, err)
	_, err = lb.Sync(t.Context())
	require.NoError(t, err)
	st, err := lb.Sync(t.Context())
	require.NoError(t, err, "a's file, applied in b's last cycle, is passed over")
	assert.Zero(t, st.BundlesReceived)
	assert.Zero(t, st.BundlesRejected)
}
