package file_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/transport/file"
)

// TestCopiedFolderFoundByFile: a tablet's folder is copied after its
// first USB sync and put back with a file copy once the tablet has gone
// on. Carried by files, (a) the copy's edit of a chart its original had
// edited too is refused by the cloud with ErrForkedReplica, nothing of it
// taken; (b, c) the cloud's answer file tells the copy it is forked (its
// log is behind the cloud's acknowledgement, or holds another change where
// the cloud acknowledged one), and the copy then refuses edits and exports.
func TestCopiedFolderFoundByFile(t *testing.T) {
	for _, tc := range []struct {
		name     string
		newCount int  // charts the copy registers
		edit     bool // the copy edits the chart its original edited
	}{
		{name: "a: an existing chart edited", edit: true},
		{name: "b: a new chart", newCount: 1},
		{name: "c: the log grown past the acknowledgement", newCount: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			// Signed bundles: positions that prove their sender's.
			auth, err := device.NewAuthority()
			require.NoError(t, err)
			trust := device.RosterConfig{Authorities: []device.TrustedAuthority{{Key: auth.PublicKey()}}}
			config := func() replica.Config {
				id, err := device.Generate(replica.NewID(), "kamuga-dispensary")
				require.NoError(t, err)
				rec, err := auth.Enrol(id.Public(), time.Now().Truncate(time.Second), time.Hour)
				require.NoError(t, err)
				roster, err := device.NewRoster(trust)
				require.NoError(t, err)
				_, err = roster.Add(rec)
				require.NoError(t, err)
				return replica.Config{Signer: id, Keys: roster}
			}
			cloud, err := replica.Open(ctx, filepath.Join(dir, "cloud.db"), config())
			require.NoError(t, err)
			defer cloud.Close()
			tabletPath := filepath.Join(dir, "tablet.db")
			tabletCfg := config()
			tablet, err := replica.Open(ctx, tabletPath, tabletCfg)
			require.NoError(t, err)
			toCloud, toTablet := filepath.Join(dir, "to-cloud"), filepath.Join(dir, "to-tablet")
			require.NoError(t, os.MkdirAll(toCloud, 0o700))
			require.NoError(t, os.MkdirAll(toTablet, 0o700))
			usb := func(from, to *replica.Replica, out string) (file.Imported, error) {
				_, err := file.Export(ctx, from, to.ID(), out)
				require.NoError(t, err)
				return file.Import(ctx, to, out)
			}
			wanjiru := register(t, tablet, "Wanjiru")
			for range 2 {
				_, err = usb(tablet, cloud, toCloud)
				require.NoError(t, err)
				_, err = usb(cloud, tablet, toTablet)
				require.NoError(t, err)
			}
			copied := filepath.Join(dir, "copy.db")
			require.NoError(t, replica.Backup(ctx, tabletPath, copied))
			addAllergy(t, tablet, wanjiru, "Penicillin")
			register(t, tablet, "Amina")
			_, err = usb(tablet, cloud, toCloud)
			require.NoError(t, err)
			_, err = usb(cloud, tablet, toTablet)
			require.NoError(t, err)
			require.NoError(t, tablet.Close())
			data, err := os.ReadFile(copied)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(tabletPath, data, 0o600))
			for _, s := range []string{"-wal", "-shm"} {
				_ = os.Remove(tabletPath + s)
			}
			cp, err := replica.Open(ctx, tabletPath, tabletCfg)
			require.NoError(t, err)
			defer cp.Close()

			if tc.edit {
				addAllergy(t, cp, wanjiru, "Sulfa")
			}
			for range tc.newCount {
				register(t, cp, "Baraka")
			}
			before, err := cloud.Chart(ctx, wanjiru)
			require.NoError(t, err)
			_, err = usb(cp, cloud, toCloud)
			if tc.edit {
				require.ErrorIs(t, err, replica.ErrForkedReplica, "the cloud refuses the copy's file")
				after, err := cloud.Chart(ctx, wanjiru)
				require.NoError(t, err)
				assert.Equal(t, before, after, "nothing of it is taken")
			} else {
				require.NoError(t, err, "its new charts are its own")
			}
			_, err = usb(cloud, cp, toTablet)
			require.ErrorIs(t, err, replica.ErrForkedReplica, "the cloud's file tells the copy")
			addErr := func() error {
				_, err := cp.Edit(ctx, wanjiru, nurse, record.AddAllergy{Substance: "Latex", Reaction: "rash", Severity: "mild"})
				return err
			}
			require.ErrorIs(t, addErr(), replica.ErrForkedReplica)
			_, err = file.Export(ctx, cp, cloud.ID(), toCloud)
			require.ErrorIs(t, err, replica.ErrForkedReplica)
		})
	}
}
