package file_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/internal/atomicfile"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/transport/file"
	"github.com/chartsync/chartsync/transport/transporttest"
)

var nurse = record.Author{UserID: "u-amina", Name: "Amina", Role: record.RoleNurse, Device: "tablet-1"}

// refusals are the errors a refused bundle file may match.
var refusals = []error{
	file.ErrCorrupt, file.ErrNotRegular,
	replica.ErrMalformedBundle, replica.ErrBundleVersion, replica.ErrBundleTooLarge, replica.ErrWrongRecipient,
}

func openReplica(t testing.TB, name string) *replica.Replica {
	t.Helper()
	r, err := replica.Open(t.Context(), filepath.Join(t.TempDir(), name+".db"), replica.Config{})
	require.NoError(t, err, "open replica %s", name)
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func register(t testing.TB, r *replica.Replica, given string) string {
	t.Helper()
	id, err := r.Register(t.Context(), nurse, record.Register{
		GivenName: given, FamilyName: "Mwangi", Sex: "female", EstimatedBirthYear: 1988,
		Village: "Kamuga", HomeClinic: "kamuga-dispensary",
	})
	require.NoError(t, err, "register %s", given)
	return id
}

func addAllergy(t *testing.T, r *replica.Replica, chart, substance string) {
	t.Helper()
	_, err := r.Edit(t.Context(), chart, nurse, record.AddAllergy{Substance: substance, Reaction: "rash", Severity: "mild"})
	require.NoError(t, err, "record allergy to %s", substance)
}

func hasChart(t *testing.T, r *replica.Replica, chart string) bool {
	t.Helper()
	_, err := r.Chart(t.Context(), chart)
	if err != nil {
		require.ErrorIs(t, err, replica.ErrNotFound)
		return false
	}
	return true
}

// names lists a directory's entries.
func names(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	require.NoError(t, err)
	var out []string
	for _, e := range es {
		out = append(out, e.Name())
	}
	return out
}

func export(t *testing.T, r *replica.Replica, peer, dir string) file.Exported {
	t.Helper()
	ex, err := file.Export(t.Context(), r, peer, dir)
	require.NoError(t, err, "export for %s", peer)
	return ex
}

func importAll(t *testing.T, r *replica.Replica, dir string) file.Imported {
	t.Helper()
	im, err := file.Import(t.Context(), r, dir)
	require.NoError(t, err, "import from %s", dir)
	return im
}

func newFilePair(t *testing.T, shared bool) transporttest.Pair {
	a, b := openReplica(t, "a"), openReplica(t, "b")
	stick := t.TempDir()
	aToB, bToA := stick, stick
	if !shared {
		aToB, bToA = filepath.Join(stick, "a-to-b"), filepath.Join(stick, "b-to-a")
		require.NoError(t, os.Mkdir(aToB, 0o700))
		require.NoError(t, os.Mkdir(bToA, 0o700))
	}
	la, lb := file.NewLink(a, b.ID(), aToB, bToA), file.NewLink(b, a.ID(), bToA, aToB)
	return transporttest.Pair{
		A: a, B: b,
		Round: func(ctx context.Context) error {
			if _, err := la.Sync(ctx); err != nil {
				return err
			}
			if _, err := lb.Sync(ctx); err != nil {
				return err
			}
			_, err := file.ImportFrom(ctx, a, b.ID(), bToA)
			return err
		},
		Capture: func(ctx context.Context) ([]byte, error) {
			ex, err := file.Export(ctx, a, b.ID(), t.TempDir())
			if err != nil {
				return nil, err
			}
			return os.ReadFile(ex.Path)
		},
		Inject: func(ctx context.Context, raw []byte) error {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, file.NameFor(a.ID(), b.ID(), raw)), raw, 0o600); err != nil {
				return err
			}
			im, err := file.ImportFrom(ctx, b, a.ID(), dir)
			if len(im.Files) != 1 {
				return fmt.Errorf("inject: %d files tried, want 1", len(im.Files))
			}
			return err
		},
		BadInput: refusals,
	}
}

func TestConformance(t *testing.T) {
	for _, shared := range []bool{false, true} {
		t.Run(fmt.Sprintf("shared folder=%v", shared), func(t *testing.T) {
			transporttest.Run(t, func(t *testing.T) transporttest.Pair { return newFilePair(t, shared) })
		})
	}
}

func TestExportWritesOneNamedFileThatImportApplies(t *testing.T) {
	a, b := openReplica(t, "a"), openReplica(t, "b")
	stick := t.TempDir()
	chart := register(t, a, "Wanjiru")
	addAllergy(t, a, chart, "Penicillin")

	ex := export(t, a, b.ID(), stick)
	assert.Equal(t, stick, filepath.Dir(ex.Path), "the file is in the folder given")
	assert.Equal(t, []string{filepath.Base(ex.Path)}, names(t, stick), "the folder holds the bundle file and nothing else")
	assert.Equal(t, 2, ex.Changes)
	assert.True(t, ex.Complete)
	assert.True(t, ex.Written)
	n, err := file.ParseName(filepath.Base(ex.Path))
	require.NoError(t, err, "an exported file's name parses")
	assert.Equal(t, a.ID(), n.From)
	assert.Equal(t, b.ID(), n.To)
	data, err := os.ReadFile(ex.Path)
	require.NoError(t, err)
	assert.Len(t, data, ex.Bytes)
	out, err := a.MakeBundle(t.Context(), b.ID())
	require.NoError(t, err)
	assert.Equal(t, out.Data, data, "the file holds the bundle the replica made, unchanged")
	info, err := os.Stat(ex.Path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), info.Mode().Perm(), "a chart file is readable by its owner only")

	im := importAll(t, b, stick)
	require.Len(t, im.Files, 1)
	assert.Equal(t, ex.Path, im.Files[0].Path)
	assert.Equal(t, a.ID(), im.Files[0].From)
	assert.NoError(t, im.Files[0].Err)
	assert.Equal(t, 1, im.Accepted)
	assert.Equal(t, 2, im.Applied)
	assert.Equal(t, ex.Bytes, im.Bytes)
	transporttest.RequireSame(t, a, b)
	assert.Equal(t, []string{filepath.Base(ex.Path)}, names(t, stick), "import leaves the folder as it was")
}

func TestImportingAFileTwiceChangesNothing(t *testing.T) {
	a, b := openReplica(t, "a"), openReplica(t, "b")
	stick := t.TempDir()
	chart := register(t, a, "Wanjiru")
	addAllergy(t, a, chart, "Penicillin")
	export(t, a, b.ID(), stick)

	first := importAll(t, b, stick)
	assert.Equal(t, 2, first.Applied)
	before := transporttest.Snapshot(t, b)
	again := importAll(t, b, stick)
	assert.Zero(t, again.Accepted, "a file already applied is not applied again")
	assert.Equal(t, 1, again.Replayed, "it is reported as already applied")
	assert.Zero(t, again.Applied, "a file already applied brings nothing new")
	assert.Equal(t, before, transporttest.Snapshot(t, b), "importing a file twice changed the replica")
}

func TestAcknowledgementFileStopsResending(t *testing.T) {
	a, b := openReplica(t, "a"), openReplica(t, "b")
	toHub, toClinic := t.TempDir(), t.TempDir()
	chart := register(t, a, "Wanjiru")
	addAllergy(t, a, chart, "Penicillin")
	addAllergy(t, a, chart, "Sulfa")

	first := export(t, a, b.ID(), toHub)
	require.Equal(t, 3, first.Changes)
	again := export(t, a, b.ID(), toHub)
	assert.Equal(t, 3, again.Changes, "without an acknowledgement the next export resends everything")
	assert.Equal(t, first.Path, again.Path, "the same bundle makes the same file")
	assert.False(t, again.Written, "an identical file is not rewritten")

	importAll(t, b, toHub)
	reply := export(t, b, a.ID(), toClinic)
	assert.Zero(t, reply.Changes, "the hub has nothing new for the clinic, only an acknowledgement")
	im := importAll(t, a, toClinic)
	assert.Equal(t, 1, im.Accepted, "the clinic applies the acknowledgement")

	after := export(t, a, b.ID(), toHub)
	assert.Zero(t, after.Changes, "after the acknowledgement the next export carries no changes")
	assert.Less(t, after.Bytes, 100, "an export with nothing new is a few dozen bytes")
	assert.Less(t, after.Bytes, first.Bytes/4, "the acknowledged changes are not resent")
	assert.Equal(t, 1, after.Superseded, "the new file replaces the one it supersedes")
	assert.Equal(t, []string{filepath.Base(after.Path)}, names(t, toHub), "one file per direction is left in the folder")
	ps, err := a.Peers(t.Context())
	require.NoError(t, err)
	require.Len(t, ps, 1)
	assert.Zero(t, ps[0].Unacknowledged, "the clinic knows the hub holds all its changes")

	// A later change is the only one sent.
	addAllergy(t, a, chart, "Aspirin")
	assert.Equal(t, 1, export(t, a, b.ID(), toHub).Changes, "only the change made since the acknowledgement is sent")
}

func TestExportReplacesOnlyItsOwnSupersededFiles(t *testing.T) {
	a, b, c := openReplica(t, "a"), openReplica(t, "b"), openReplica(t, "c")
	stick := t.TempDir()
	chart := register(t, a, "Wanjiru")
	toB := export(t, a, b.ID(), stick)
	toC := export(t, a, c.ID(), stick)
	fromC := export(t, c, a.ID(), stick)
	fromB := export(t, b, a.ID(), stick)
	addAllergy(t, a, chart, "Penicillin")
	newToB := export(t, a, b.ID(), stick)

	assert.NotEqual(t, toB.Path, newToB.Path, "a new bundle gets a new name")
	got := names(t, stick)
	assert.NotContains(t, got, filepath.Base(toB.Path), "the superseded file for b is removed")
	for _, keep := range []string{newToB.Path, toC.Path, fromC.Path, fromB.Path} {
		assert.Contains(t, got, filepath.Base(keep), "files for other peers and from other replicas are left alone")
	}
	assert.Len(t, got, 4)
}

func TestImportLeavesOtherFilesAlone(t *testing.T) {
	a, b, c := openReplica(t, "a"), openReplica(t, "b"), openReplica(t, "c")
	stick := t.TempDir()
	chart := register(t, a, "Wanjiru")
	forC := export(t, a, c.ID(), stick)
	fromB := export(t, b, c.ID(), stick)
	mine := export(t, a, b.ID(), stick)
	strays := map[string]string{
		"notes.txt":   "not a bundle",
		".cs-123.tmp": "an export in progress",
		strings.ToUpper(filepath.Base(mine.Path)): "upper-case name",
		filepath.Base(mine.Path) + ".part":        "partial copy",
	}
	for name, content := range strays {
		require.NoError(t, os.WriteFile(filepath.Join(stick, name), []byte(content), 0o600))
	}
	before := names(t, stick)

	im := importAll(t, c, stick)
	assert.Equal(t, 2, im.Accepted, "c applies the two files addressed to it")
	assert.Zero(t, im.Rejected, "names that are not bundle files are not even tried")
	assert.True(t, hasChart(t, c, chart))
	var tried []string
	for _, f := range im.Files {
		tried = append(tried, f.Path)
	}
	assert.ElementsMatch(t, []string{forC.Path, fromB.Path}, tried)
	assert.Equal(t, before, names(t, stick), "import changes nothing in the folder")

	im, err := file.ImportFrom(t.Context(), c, b.ID(), stick)
	require.NoError(t, err)
	require.Len(t, im.Files, 1, "ImportFrom applies only the named sender's files")
	assert.Equal(t, fromB.Path, im.Files[0].Path)
}

func TestImportRefusesLinksAndDirectories(t *testing.T) {
	a, b := openReplica(t, "a"), openReplica(t, "b")
	elsewhere, stick := t.TempDir(), t.TempDir()
	register(t, a, "Wanjiru")
	real := export(t, a, b.ID(), elsewhere)
	data, err := os.ReadFile(real.Path)
	require.NoError(t, err)
	name := filepath.Base(real.Path)

	tests := []struct {
		name  string
		setup func(path string)
	}{
		{"symbolic link to a valid bundle file", func(path string) { require.NoError(t, os.Symlink(real.Path, path)) }},
		{"directory", func(path string) { require.NoError(t, os.Mkdir(path, 0o700)) }},
		{"directory holding a bundle", func(path string) {
			require.NoError(t, os.Mkdir(path, 0o700))
			require.NoError(t, os.WriteFile(filepath.Join(path, name), data, 0o600))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(stick, strings.ReplaceAll(tt.name, " ", "-"))
			require.NoError(t, os.Mkdir(dir, 0o700))
			tt.setup(filepath.Join(dir, name))
			before := transporttest.Snapshot(t, b)
			im, err := file.Import(t.Context(), b, dir)
			require.ErrorIs(t, err, file.ErrNotRegular)
			var ferr *file.FileError
			require.ErrorAs(t, err, &ferr, "the error names the file")
			assert.Equal(t, filepath.Join(dir, name), ferr.Path)
			assert.Equal(t, 1, im.Rejected)
			assert.Zero(t, im.Accepted)
			assert.Equal(t, before, transporttest.Snapshot(t, b), "a refused entry changed the replica")
		})
	}
}

func TestDamagedFilesAreRefusedAndChangeNothing(t *testing.T) {
	a, b, c := openReplica(t, "a"), openReplica(t, "b"), openReplica(t, "c")
	chart := register(t, a, "Wanjiru")
	addAllergy(t, a, chart, "Penicillin")
	src := t.TempDir()
	good := export(t, a, b.ID(), src)
	data, err := os.ReadFile(good.Path)
	require.NoError(t, err)
	name := filepath.Base(good.Path)
	forC := export(t, a, c.ID(), src)
	dataForC, err := os.ReadFile(forC.Path)
	require.NoError(t, err)
	flip := func(i int) []byte { d := slices.Clone(data); d[i] ^= 0x10; return d }

	tests := []struct {
		name    string
		file    string
		content []byte
		want    error
	}{
		{"empty", name, nil, file.ErrCorrupt},
		{"truncated to one byte", name, data[:1], file.ErrCorrupt},
		{"truncated by half", name, data[:len(data)/2], file.ErrCorrupt},
		{"last byte missing", name, data[:len(data)-1], file.ErrCorrupt},
		{"byte appended", name, append(slices.Clone(data), 0), file.ErrCorrupt},
		{"first byte flipped", name, flip(0), file.ErrCorrupt},
		{"middle byte flipped", name, flip(len(data) / 2), file.ErrCorrupt},
		{"last byte flipped", name, flip(len(data) - 1), file.ErrCorrupt},
		{"bundle for another replica renamed to b", name, dataForC, file.ErrCorrupt},
		{"damaged and renamed to match", file.NameFor(a.ID(), b.ID(), flip(len(data)/2)), flip(len(data) / 2), replica.ErrMalformedBundle},
		{"bundle for another replica under a matching name", file.NameFor(a.ID(), b.ID(), dataForC), dataForC, file.ErrCorrupt},
		{"garbage under a matching name", file.NameFor(a.ID(), b.ID(), []byte("garbage")), []byte("garbage"), replica.ErrMalformedBundle},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, tt.file)
			require.NoError(t, os.WriteFile(path, tt.content, 0o600))
			before := transporttest.Snapshot(t, b)
			im, err := file.Import(t.Context(), b, dir)
			require.ErrorIs(t, err, tt.want)
			var ferr *file.FileError
			require.ErrorAs(t, err, &ferr)
			assert.Equal(t, path, ferr.Path, "the error names the damaged file")
			assert.Equal(t, 1, im.Rejected)
			require.Len(t, im.Files, 1)
			assert.ErrorIs(t, im.Files[0].Err, tt.want, "the file's result carries its error")
			assert.Equal(t, before, transporttest.Snapshot(t, b), "a damaged file changed the replica")
			assert.False(t, hasChart(t, b, chart), "a damaged file delivered a chart")
			assert.Equal(t, []string{tt.file}, names(t, dir), "a refused file is left in place")
		})
	}
}

func TestImportGoesOnPastARefusedFile(t *testing.T) {
	a, b, c := openReplica(t, "a"), openReplica(t, "b"), openReplica(t, "c")
	stick := t.TempDir()
	fromA := register(t, a, "Wanjiru")
	fromC := register(t, c, "Nafula")
	bad := export(t, a, b.ID(), stick)
	require.NoError(t, os.WriteFile(bad.Path, []byte("damaged on the stick"), 0o600))
	export(t, c, b.ID(), stick)

	im, err := file.Import(t.Context(), b, stick)
	require.ErrorIs(t, err, file.ErrCorrupt)
	assert.Equal(t, 1, im.Rejected)
	assert.Equal(t, 1, im.Accepted, "the good file is still applied")
	assert.True(t, hasChart(t, b, fromC))
	assert.False(t, hasChart(t, b, fromA))

	// The sender's next export, the same bundle, rewrites the damaged file.
	again := export(t, a, b.ID(), stick)
	assert.Equal(t, bad.Path, again.Path)
	assert.True(t, again.Written, "the damaged file is rewritten")
	im = importAll(t, b, stick)
	assert.Zero(t, im.Rejected)
	assert.True(t, hasChart(t, b, fromA))
}

func TestExportLeavesNothingBehindOnError(t *testing.T) {
	tests := []struct {
		name  string
		setup func(t *testing.T, dir, name string) (restore func())
	}{
		{"fsync fails", func(t *testing.T, dir, name string) func() {
			return file.SetSyncFile(func(*os.File) error { return errors.New("disk full") })
		}},
		{"rename fails", func(t *testing.T, dir, name string) func() {
			return file.SetRename(func(string, string) error { return errors.New("stick pulled out") })
		}},
		{"a directory has the file's name", func(t *testing.T, dir, name string) func() {
			require.NoError(t, os.Mkdir(filepath.Join(dir, name), 0o700))
			require.NoError(t, os.WriteFile(filepath.Join(dir, name, "keep"), nil, 0o600))
			return func() {}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := openReplica(t, "a"), openReplica(t, "b")
			register(t, a, "Wanjiru")
			probe := export(t, a, b.ID(), t.TempDir())
			name := filepath.Base(probe.Path)
			dir := t.TempDir()
			restore := tt.setup(t, dir, name)
			before := names(t, dir)
			_, err := file.Export(t.Context(), a, b.ID(), dir)
			restore()
			require.Error(t, err)
			assert.Equal(t, before, names(t, dir), "a failed export left something behind")

			// Once the fault is gone the export succeeds.
			if len(before) == 0 {
				export(t, a, b.ID(), dir)
				assert.Equal(t, []string{name}, names(t, dir))
			}
		})
	}
	t.Run("peer ID not canonical", func(t *testing.T) {
		a, b := openReplica(t, "a"), openReplica(t, "b")
		dir := t.TempDir()
		_, err := file.Export(t.Context(), a, strings.ToUpper(b.ID()), dir)
		require.ErrorIs(t, err, file.ErrBadName, "an upper-case peer ID would make a file no importer reads")
		assert.Empty(t, names(t, dir))
	})
	t.Run("folder missing", func(t *testing.T) {
		a, b := openReplica(t, "a"), openReplica(t, "b")
		dir := filepath.Join(t.TempDir(), "missing")
		_, err := file.Export(t.Context(), a, b.ID(), dir)
		require.ErrorIs(t, err, os.ErrNotExist)
		assert.NoDirExists(t, dir, "export does not create folders")
	})
}

func TestParseName(t *testing.T) {
	from, to := strings.Repeat("0a", 16), strings.Repeat("b1", 16)
	hash := strings.Repeat("c2", 16)
	valid := "cs-" + from + "-" + to + "-" + hash + ".bundle"
	tests := []struct {
		name string
		ok   bool
	}{
		{valid, true},
		{file.Name{From: from, To: to, Hash: hash}.String(), true},
		{"", false},
		{strings.ToUpper(valid), false},
		{"cs-" + strings.ToUpper(from) + "-" + to + "-" + hash + ".bundle", false},
		{"cs-" + from + "-" + from + "-" + hash + ".bundle", false}, // to itself
		{"cs-" + from + "-" + to + "-" + hash + ".bundlx", false},
		{"xs-" + from + "-" + to + "-" + hash + ".bundle", false},
		{"cs-" + from + "_" + to + "-" + hash + ".bundle", false},
		{"cs-" + from + "-" + to + "-" + hash[:31] + "g.bundle", false},
		{"cs-" + from + "-" + to + "-" + hash + ".bundle.tmp", false},
		{"../" + valid[3:], false},
		{"cs-" + from[:30] + "/.." + "-" + to + "-" + hash + ".bundle", false},
		{"cs-" + from + "-" + to + "-" + hash[:29] + "/.." + ".bundle", false},
		{"cs-" + from + "-" + to + "-" + hash[:29] + "\\.." + ".bundle", false},
		{"cs-" + from + "-" + to + "-" + hash[:31] + "\x00.bundle", false},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%q", tt.name), func(t *testing.T) {
			n, err := file.ParseName(tt.name)
			if !tt.ok {
				require.ErrorIs(t, err, file.ErrBadName)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, from, n.From)
			assert.Equal(t, to, n.To)
			assert.Equal(t, hash, n.Hash)
			assert.Equal(t, tt.name, n.String(), "a parsed name prints back the same")
			assert.Equal(t, tt.name, filepath.Base(tt.name), "a valid name has no directory part")
		})
	}
}

func TestLinkSync(t *testing.T) {
	a, b := openReplica(t, "a"), openReplica(t, "b")
	stick := t.TempDir()
	outA, outB := filepath.Join(stick, "from-a"), filepath.Join(stick, "from-b")
	require.NoError(t, os.Mkdir(outA, 0o700))
	la, lb := file.NewLink(a, b.ID(), outA, outB), file.NewLink(b, a.ID(), outB, outA)
	chart := register(t, a, "Wanjiru")
	addAllergy(t, a, chart, "Penicillin")

	st, err := la.Sync(t.Context())
	require.NoError(t, err, "a missing inbox means nothing has arrived")
	assert.Equal(t, 1, st.BundlesSent)
	assert.Equal(t, 2, st.ChangesSent)
	assert.Zero(t, st.BundlesReceived)
	assert.Positive(t, st.BytesSent)

	_, err = lb.Sync(t.Context())
	require.ErrorIs(t, err, os.ErrNotExist, "b's outbox does not exist yet")
	require.NoError(t, os.Mkdir(outB, 0o700))
	st, err = lb.Sync(t.Context())
	require.NoError(t, err)
	assert.Zero(t, st.BundlesReceived, "b applied the file in its first sync, whose export then failed, and passes over it")
	assert.Zero(t, st.BundlesRejected)
	assert.Zero(t, st.ChangesSent)
	assert.True(t, hasChart(t, b, chart))

	st, err = la.Sync(t.Context())
	require.NoError(t, err)
	assert.Equal(t, 1, st.BundlesReceived, "a applies b's acknowledgement")
	assert.Zero(t, st.ChangesSent, "a sends nothing b acknowledged")
	transporttest.RequireSame(t, a, b)

	// A damaged file is reported but the cycle still sends.
	require.NoError(t, os.WriteFile(filepath.Join(outB, file.NameFor(b.ID(), a.ID(), []byte("x"))), []byte("y"), 0o600))
	st, err = la.Sync(t.Context())
	require.ErrorIs(t, err, file.ErrCorrupt)
	assert.Equal(t, 1, st.BundlesRejected)
	assert.Equal(t, 1, st.BundlesSent, "a still exports after a refused file")
}

// An export whose directory sync failed left its file in place but not
// durable: exporting again must sync the directory, and report success
// only once that worked.
func TestExportAfterAFailedDirectorySyncSyncsAgain(t *testing.T) {
	a, b := openReplica(t, "a"), openReplica(t, "b")
	stick := t.TempDir()
	addAllergy(t, a, register(t, a, "Wanjiru"), "Penicillin")

	restore := file.SetSyncDir(func(string) error { return fmt.Errorf("stick: %w", atomicfile.ErrDirNotSynced) })
	_, err := file.Export(t.Context(), a, b.ID(), stick)
	restore()
	require.ErrorIs(t, err, atomicfile.ErrDirNotSynced)

	for _, fail := range []bool{true, false} {
		synced := 0
		restore := file.SetSyncDir(func(dir string) error {
			synced++
			if fail {
				return fmt.Errorf("stick: %w", atomicfile.ErrDirNotSynced)
			}
			return atomicfile.SyncDir(dir)
		})
		ex, err := file.Export(t.Context(), a, b.ID(), stick)
		restore()
		assert.Equal(t, 1, synced, "the folder is synced again even though the file was already there")
		if fail {
			require.ErrorIs(t, err, atomicfile.ErrDirNotSynced, "no success without a synced folder")
			continue
		}
		require.NoError(t, err)
		assert.False(t, ex.Written, "the file in place is not rewritten")
	}
}
