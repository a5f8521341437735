package file_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/transport/file"
)

// errCrash stands for a process that died at a failpoint.
var errCrash = errors.New("the process died here")

// exportFailpoints makes every durable step of Export (the temporary
// file's fsync, the rename, each directory fsync) call at before and after
// it, with the point's name; an error from at stops Export there, as the
// step's own failure would.
func exportFailpoints(at func(point string) error) (restore func()) {
	n := map[string]int{}
	step := func(name string, do func() error) error {
		n[name]++
		p := fmt.Sprintf("%s %d", name, n[name])
		if err := at("before " + p); err != nil {
			return err
		}
		if err := do(); err != nil {
			return err
		}
		return at("after " + p)
	}
	r1 := file.SetSyncFile(func(f *os.File) error { return step("fsync of the temporary file", f.Sync) })
	r2 := file.SetRename(func(from, to string) error {
		return step("rename", func() error { return os.Rename(from, to) })
	})
	r3 := file.SetSyncDir(func(dir string) error {
		return step("fsync of the folder", func() error { return syncDirForTest(dir) })
	})
	return func() { r3(); r2(); r1() }
}

// syncDirForTest fsyncs a directory.
func syncDirForTest(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// copyFolder copies the regular files of dir into a new folder, as a
// process killed at this instant leaves them, and returns it.
func copyFolder(t *testing.T, dir string) string {
	t.Helper()
	out := t.TempDir()
	es, err := os.ReadDir(dir)
	require.NoError(t, err)
	for _, e := range es {
		if !e.Type().IsRegular() {
			continue
		}
		in, err := os.Open(filepath.Join(dir, e.Name()))
		require.NoError(t, err)
		f, err := os.Create(filepath.Join(out, e.Name()))
		require.NoError(t, err)
		_, err = io.Copy(f, in)
		require.NoError(t, err)
		require.NoError(t, f.Close())
		require.NoError(t, in.Close())
	}
	return out
}

// bundleFiles lists the bundle files in dir (temporary files left out).
func bundleFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for _, n := range names(t, dir) {
		if _, err := file.ParseName(n); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// sameCharts checks that b shows every chart of a as a does.
func sameCharts(t *testing.T, a, b *replica.Replica) {
	t.Helper()
	charts, err := a.Find(t.Context(), "", 0)
	require.NoError(t, err)
	for _, c := range charts {
		va, err := a.Chart(t.Context(), c.ID)
		require.NoError(t, err)
		vb, err := b.Chart(t.Context(), c.ID)
		require.NoError(t, err, "chart %s reached the peer", c.ID)
		ja, _ := json.Marshal(va)
		jb, _ := json.Marshal(vb)
		require.Equal(t, string(ja), string(jb), "chart %s differs at the peer", c.ID)
	}
}

// TestEveryExportFailpointLeavesAUsableStick runs an export that
// supersedes an earlier file once to name its durable steps, then once per
// failpoint (before and after each fsync and the rename) and per fault:
// the step fails, or the process dies there (the stick as it was at that
// instant is what the peer gets). Either way the peer imports what the
// stick holds with nothing refused and loses nothing the earlier export
// delivered; an export failed before its rename leaves the stick as it
// was; and the next export succeeds, leaves one file, and brings the peer
// level with the sender.
func TestEveryExportFailpointLeavesAUsableStick(t *testing.T) {
	// setup makes a's first export to a stick, then more edits, so the
	// export under test writes a new file and removes the first.
	setup := func(t *testing.T) (a, b *replica.Replica, stick, first string) {
		a, b = openReplica(t, "a"), openReplica(t, "b")
		first = register(t, a, "Wanjiru")
		addAllergy(t, a, first, "Penicillin")
		stick = t.TempDir()
		export(t, a, b.ID(), stick)
		addAllergy(t, a, first, "Sulfa")
		register(t, a, "Achieng")
		return a, b, stick, first
	}
	a, b, stick, _ := setup(t)
	var points []string
	restore := exportFailpoints(func(p string) error { points = append(points, p); return nil })
	ex, err := file.Export(t.Context(), a, b.ID(), stick)
	restore()
	require.NoError(t, err)
	require.Equal(t, 1, ex.Superseded, "the export replaces the first file")
	require.Contains(t, points, "after rename 1")
	t.Logf("%d failpoints: %s", len(points), strings.Join(points, ", "))

	for _, point := range points {
		for _, crash := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/crash=%v", point, crash), func(t *testing.T) {
				a, b, stick, first := setup(t)
				before := names(t, stick)
				left := stick // what the peer gets
				restore := exportFailpoints(func(p string) error {
					if p != point {
						return nil
					}
					if crash {
						left = copyFolder(t, stick)
						return errCrash
					}
					return fmt.Errorf("stick: %s failed", p)
				})
				_, err := file.Export(t.Context(), a, b.ID(), stick)
				restore()
				require.Error(t, err, "the export stops at %s", point)
				renamed := slices.Index(points, point) >= slices.Index(points, "after rename 1")
				if !crash && !renamed {
					assert.Equal(t, before, names(t, stick), "an export failed before its rename leaves the stick as it was")
				}

				im, err := file.Import(t.Context(), b, left)
				require.NoError(t, err, "the peer takes what the stick holds")
				assert.Zero(t, im.Rejected, "no file on the stick is refused")
				require.True(t, hasChart(t, b, first), "the chart the first export delivered is still delivered")

				again := export(t, a, b.ID(), left)
				assert.Equal(t, []string{filepath.Base(again.Path)}, bundleFiles(t, left), "the next export leaves one file")
				_, err = file.Import(t.Context(), b, left)
				require.NoError(t, err)
				sameCharts(t, a, b)
			})
		}
	}
}
