package replica_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
)

// forkFixture is a tablet whose data folder was copied after its first
// sync with the cloud; the tablet went on (an allergy on Wanjiru's chart,
// Amina registered, synced) and the copy was then put back in its place
// with a file copy, so it opens as the same replica with an older log.
type forkFixture struct {
	// config makes the configuration of a new enrolled device, whose
	// signed bundles prove their positions.
	config            func() replica.Config
	tabletCfg         replica.Config
	dir, tabletPath   string
	cloud, restored   *replica.Replica
	wanjiru, amina    string
	tabletID, cloudID string
}

func newForkFixture(t *testing.T) *forkFixture {
	ctx := context.Background()
	f := &forkFixture{dir: t.TempDir()}
	d := newDeployment(t)
	f.config = func() replica.Config {
		id, rec := d.enrol(t, "kamuga-dispensary")
		roster := d.roster(t)
		_, err := roster.Add(rec)
		require.NoError(t, err)
		return replica.Config{Now: frozen, Signer: id, Keys: roster}
	}
	var err error
	f.cloud, err = replica.Open(ctx, filepath.Join(f.dir, "cloud.db"), f.config())
	require.NoError(t, err)
	t.Cleanup(func() { f.cloud.Close() })
	f.tabletPath = filepath.Join(f.dir, "tablet", "replica.db")
	f.tabletCfg = f.config()
	tablet, err := replica.Open(ctx, f.tabletPath, f.tabletCfg)
	require.NoError(t, err)
	f.wanjiru = register(t, tablet, "Wanjiru", "Mwangi", "Kamuga")
	edit(t, tablet, f.wanjiru, allergy(1))
	syncAll(t, [2]*replica.Replica{tablet, f.cloud})
	copied := filepath.Join(f.dir, "copy.db")
	require.NoError(t, replica.Backup(ctx, f.tabletPath, copied))

	edit(t, tablet, f.wanjiru, allergy(2))
	f.amina = register(t, tablet, "Amina", "Hassan", "Kamuga")
	syncAll(t, [2]*replica.Replica{tablet, f.cloud})
	f.tabletID, f.cloudID = tablet.ID(), f.cloud.ID()
	require.NoError(t, tablet.Close())

	// The folder copied back over the tablet's, as a file copy would.
	for _, suffix := range []string{"", "-wal", "-shm"} {
		_ = os.Remove(f.tabletPath + suffix)
	}
	copyFile(t, copied, f.tabletPath)
	f.restored, err = replica.Open(ctx, f.tabletPath, f.tabletCfg)
	require.NoError(t, err)
	t.Cleanup(func() { f.restored.Close() })
	require.Equal(t, f.tabletID, f.restored.ID(), "a copied folder keeps its replica ID")
	return f
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	require.NoError(t, err)
	defer in.Close()
	out, err := os.Create(to)
	require.NoError(t, err)
	_, err = io.Copy(out, in)
	require.NoError(t, err)
	require.NoError(t, out.Close())
}

// forkCase is what the copy does before it syncs, and what gives it away.
type forkCase struct {
	name string
	// act edits the copy and returns the charts it registered.
	act func(t *testing.T, f *forkFixture) []string
	// reusesSeq: the copy edited a chart its original had edited after
	// the copy, so the cloud refuses the copy's bundle.
	reusesSeq bool
}

var forkCases = []forkCase{
	{name: "a: an existing chart edited", reusesSeq: true, act: func(t *testing.T, f *forkFixture) []string {
		edit(t, f.restored, f.wanjiru, allergy(9))
		return nil
	}},
	{name: "b: a new chart, the log still behind the acknowledgement", act: func(t *testing.T, f *forkFixture) []string {
		return []string{register(t, f.restored, "Baraka", "Otieno", "Kamuga")}
	}},
	{name: "c: new charts, the log grown past the acknowledgement", act: func(t *testing.T, f *forkFixture) []string {
		return []string{
			register(t, f.restored, "Baraka", "Otieno", "Kamuga"),
			register(t, f.restored, "Chebet", "Kiprop", "Kamuga"),
			register(t, f.restored, "Daudi", "Mutua", "Kamuga"),
		}
	}},
}

// TestCopiedFolderIsFound: a copied data folder put back in place keeps
// writing as its original. Whatever it does, its next sync with the cloud
// does not end "converged": the copy learns it is forked (an
// acknowledgement beyond its log, or naming another change at a position
// of its log), refuses every edit and sync from then on, after a reopen
// too, and the cloud keeps nothing reusing a sequence number. Recovered
// under a new ID, it syncs and converges with the cloud, with every change
// of both: its own new charts, and its original's allergy and chart that
// the copy never held.
func TestCopiedFolderIsFound(t *testing.T) {
	ctx := context.Background()
	for _, tc := range forkCases {
		t.Run(tc.name, func(t *testing.T) {
			f := newForkFixture(t)
			made := tc.act(t, f)
			cloudBefore := view(t, f.cloud, f.wanjiru)

			st, err := replica.SyncPair(ctx, f.restored, f.cloud)
			require.ErrorIs(t, err, replica.ErrForkedReplica, "the sync of a copy is refused")
			assert.False(t, st.ConvergedAll)
			var fe *replica.ForkedError
			require.True(t, errors.As(err, &fe))
			assert.Equal(t, f.tabletID, fe.Replica, "the error names the forked replica")
			assert.Equal(t, view(t, f.cloud, f.wanjiru), cloudBefore, "the cloud's chart is as it was")
			if tc.reusesSeq {
				require.ErrorIs(t, err, replica.ErrMalformedBundle)
				assert.False(t, fe.Self, "the cloud refused the copy's bundle")
				// The cloud's answer tells the copy.
				out, err := f.cloud.MakeBundle(ctx, f.restored.ID())
				require.NoError(t, err)
				_, err = f.restored.Receive(ctx, out.Data)
				require.ErrorIs(t, err, replica.ErrForkedReplica)
			}
			require.ErrorIs(t, f.restored.Forked(), replica.ErrForkedReplica, "the copy knows it is forked")
			_, err = f.restored.Edit(ctx, f.wanjiru, nurse, allergy(10))
			require.ErrorIs(t, err, replica.ErrForkedReplica, "the copy no longer writes as its original")
			_, err = f.restored.Register(ctx, nurse, record.Register{GivenName: "Esther", FamilyName: "Wambui", Sex: "female", EstimatedBirthYear: 1990, Village: "Kamuga", HomeClinic: "kamuga"})
			require.ErrorIs(t, err, replica.ErrForkedReplica)
			_, err = f.restored.MakeBundle(ctx, f.cloudID)
			require.ErrorIs(t, err, replica.ErrForkedReplica)

			require.NoError(t, f.restored.Close())
			reopened, err := replica.Open(ctx, f.tabletPath, f.tabletCfg)
			require.NoError(t, err)
			require.ErrorIs(t, reopened.Forked(), replica.ErrForkedReplica, "a restart keeps it")
			require.NoError(t, reopened.Close())
			if tc.reusesSeq {
				return // see RecoverFork's caveat
			}

			recovered, err := replica.RecoverFork(ctx, f.tabletPath, filepath.Join(f.dir, "recovered", "replica.db"), f.config())
			require.NoError(t, err)
			defer recovered.Close()
			assert.NotEqual(t, f.tabletID, recovered.ID())
			require.NoError(t, recovered.Forked())
			syncAll(t, [2]*replica.Replica{recovered, f.cloud}, [2]*replica.Replica{recovered, f.cloud})
			requireSameCharts(t, recovered, f.cloud)
			ids := chartIDs(t, recovered)
			assert.Contains(t, ids, f.amina, "the chart the copy never held")
			for _, id := range made {
				assert.Contains(t, chartIDs(t, f.cloud), id, "the copy's own chart")
			}
			assert.Len(t, view(t, recovered, f.wanjiru).Allergies, 2, "both allergies, each once")
			edit(t, recovered, f.wanjiru, allergy(11))
			syncAll(t, [2]*replica.Replica{recovered, f.cloud})
		})
	}
}
