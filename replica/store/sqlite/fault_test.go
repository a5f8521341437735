package sqlite_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/replica/store"
	"github.com/chartsync/chartsync/replica/store/sqlite"
	"github.com/chartsync/chartsync/replica/store/sqlite/faultvfs"
)

func TestMain(m *testing.M) {
	if err := faultvfs.Install(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	os.Exit(m.Run())
}

// tb is what the helpers need of a *testing.T or a *rapid.T.
type tb interface {
	require.TestingT
	Helper()
}

// entry is a batch whose presence can be checked: a change (found by its
// hash) and a meta key, which a store holds both or neither of.
func entry(n int) store.Batch {
	raw := []byte(fmt.Sprintf("allergy %d: penicillin, anaphylaxis", n))
	return store.Batch{
		Changes: []store.NewChange{{Chart: "chart-1", Hash: sha256.Sum256(raw), Raw: raw}},
		Meta:    map[string]string{fmt.Sprintf("entry-%d", n): "saved"},
	}
}

// holds reports whether s holds entry n, failing the test if it holds
// half of it.
func holds(t tb, s store.Store, n int) bool {
	t.Helper()
	ctx := context.Background()
	b := entry(n)
	known, err := s.Known(ctx, []crdt.Hash{b.Changes[0].Hash})
	require.NoError(t, err)
	_, err = s.Meta(ctx, fmt.Sprintf("entry-%d", n))
	hasMeta := err == nil
	if !hasMeta {
		require.ErrorIs(t, err, store.ErrNotFound)
	}
	require.Equal(t, known[b.Changes[0].Hash], hasMeta, "entry %d is stored whole or not at all", n)
	return hasMeta
}

// crashView opens what a process killed now would leave of the store at
// path (a copy in scratch, a directory no fault is armed on) and returns
// it.
func crashView(t tb, path, scratch string) store.Store {
	t.Helper()
	cp, err := faultvfs.CrashCopy(path, scratch)
	require.NoError(t, err)
	s, err := sqlite.Open(context.Background(), cp)
	require.NoError(t, err, "a crashed store opens")
	require.NoError(t, s.IntegrityCheck(context.Background()))
	return s
}

// afterCrash reports whether a process killed now would find entry n on
// its next start.
func afterCrash(t *testing.T, path string, n int) bool {
	t.Helper()
	s := crashView(t, path, t.TempDir())
	defer s.Close()
	return holds(t, s, n)
}

// outcome checks what a write of entry n that returned err left, now and
// after a crash (seen in crashed), against what err promised, and returns
// whether the entry is held.
func outcome(t tb, s *sqlite.Store, crashed store.Store, n int, err error) bool {
	t.Helper()
	afterCrash := holds(t, crashed, n)
	switch {
	case err == nil:
		assert.True(t, afterCrash, "entry %d was reported saved but a crash loses it", n)
		assert.True(t, holds(t, s, n), "entry %d was reported saved but is not held", n)
		return true
	case errors.Is(err, store.ErrOutcomeUnknown):
		if held, ok := heldNow(t, s, n); ok {
			assert.Equal(t, afterCrash, held, "after %q a re-read of entry %d must show what a restart would find", err, n)
		}
		return afterCrash
	default:
		assert.False(t, afterCrash, "entry %d was reported failed (%v) yet a crash now brings it back", n, err)
		if held, ok := heldNow(t, s, n); ok {
			assert.False(t, held, "entry %d was reported failed (%v) yet is held", n, err)
		}
		return false
	}
}

// heldNow is holds for a store that may no longer answer (ok false).
func heldNow(t tb, s *sqlite.Store, n int) (held, ok bool) {
	t.Helper()
	if _, err := s.Head(context.Background()); err != nil {
		return false, false
	}
	return holds(t, s, n), true
}

func openAt(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), path)
	require.NoError(t, err)
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// TestFailedCommitHasAKnownOutcome fails one step of a write's commit and
// checks that the entry is then either absent for good, as a plain error
// promises, or the error says its outcome is unknown and a re-read shows
// what a restart would find. Every failure is followed by a healthy write
// and a crash, which must not bring a failed entry back.
func TestFailedCommitHasAKnownOutcome(t *testing.T) {
	const (
		absent  = "absent"  // a plain error, and the entry is gone for good
		unknown = "unknown" // store.ErrOutcomeUnknown
	)
	tests := []struct {
		name  string
		rules []faultvfs.Rule
		want  string
		held  bool // with unknown: whether the entry turns out to be held
		full  bool // the error matches store.ErrDiskFull
		fresh bool // entry 1 is copied from the WAL before the fault (as a clean Close does)
	}{
		{name: "WAL fsync fails once", rules: []faultvfs.Rule{faultvfs.FailSync(faultvfs.WAL, 0, 1)}, want: absent},
		{name: "every fsync fails", rules: []faultvfs.Rule{faultvfs.FailSync(faultvfs.All, 0, -1)}, want: unknown},
		{name: "first WAL write fails, nothing written", rules: []faultvfs.Rule{faultvfs.FailWrite(faultvfs.WAL, 0, 1, false)}, want: absent},
		{name: "first WAL write fails after writing", rules: []faultvfs.Rule{faultvfs.FailWrite(faultvfs.WAL, 0, 1, true)}, want: absent},
		{name: "third WAL write fails after writing", rules: []faultvfs.Rule{faultvfs.FailWrite(faultvfs.WAL, 2, 1, true)}, want: absent},
		{name: "WAL fsync fails, then every write fails", rules: []faultvfs.Rule{
			faultvfs.FailSync(faultvfs.WAL, 0, 1), faultvfs.FailWrite(faultvfs.All, 0, -1, false).Then(0),
		}, want: unknown, held: true},
		// On a fresh WAL the first fsync is of its header, before the
		// commit's frames: the second is the commit's.
		{name: "WAL fsync fails, then the disk turns read-only", rules: append([]faultvfs.Rule{faultvfs.FailSync(faultvfs.WAL, 1, 1)}, faultvfs.Dies(0)...),
			fresh: true, want: unknown, held: true},
		// Closing the database to reopen it finds nothing earlier to
		// copy from the WAL, so it deletes the WAL, failed commit and all.
		{name: "WAL fsync fails, then every write fails, on a fresh WAL", rules: []faultvfs.Rule{
			faultvfs.FailSync(faultvfs.WAL, 1, 1), faultvfs.FailWrite(faultvfs.All, 0, -1, false).Then(0),
		}, fresh: true, want: unknown, held: false},
		{name: "the fsync of a fresh WAL's header fails", rules: []faultvfs.Rule{faultvfs.FailSync(faultvfs.WAL, 0, 1)}, fresh: true, want: absent},
		// The fence takes the place the failed commit already has in the
		// WAL: it needs no new space.
		{name: "WAL fsync fails, then the disk is full", rules: []faultvfs.Rule{
			faultvfs.FailSync(faultvfs.WAL, 0, 1), faultvfs.DiskFull(0)[0].Then(0),
		}, want: absent},
		{name: "disk full", rules: faultvfs.DiskFull(0), want: absent, full: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			path := filepath.Join(dir, "charts.db")
			s := openAt(t, path)
			_, err := s.Write(ctx, entry(1))
			require.NoError(t, err)
			if tt.fresh {
				require.NoError(t, s.Close())
				s = openAt(t, path)
			}

			faultvfs.Arm(dir, tt.rules...)
			_, err = s.Write(ctx, entry(2))
			faultvfs.Disarm()
			require.Error(t, err, "the injected fault fails the write")
			require.Positive(t, faultvfs.Fired())
			t.Logf("the write failed with: %v", err)
			assert.Equal(t, tt.want == unknown, errors.Is(err, store.ErrOutcomeUnknown), "whether the outcome is unknown")
			assert.Equal(t, tt.full, errors.Is(err, store.ErrDiskFull), "whether the disk is said to be full")
			crashed := crashView(t, path, t.TempDir())
			held := outcome(t, s, crashed, 2, err)
			require.NoError(t, crashed.Close())
			assert.Equal(t, tt.held, held, "whether entry 2 is held")
			assert.True(t, afterCrash(t, path, 1), "an earlier entry survives")

			_, err = s.Write(ctx, entry(3))
			require.NoError(t, err, "the store writes again once the disk is healthy")
			assert.Equal(t, held, afterCrash(t, path, 2), "a later write does not change entry 2's fate")
			assert.True(t, afterCrash(t, path, 3))
			require.NoError(t, s.Close())
			s = openAt(t, path)
			assert.Equal(t, held, holds(t, s, 2), "a clean restart agrees")
			assert.True(t, holds(t, s, 3))
		})
	}
}

// TestFullDiskOpensForReading: on a disk with no free space an existing
// store still opens and reads, whether it was closed cleanly or its last
// commits are still in the WAL; writes fail saying the disk is full and
// what to do, store nothing, and succeed again once there is room.
func TestFullDiskOpensForReading(t *testing.T) {
	ctx := context.Background()
	for _, crashed := range []bool{false, true} {
		t.Run(fmt.Sprintf("crashed=%v", crashed), func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "charts.db")
			s, err := sqlite.Open(ctx, path)
			require.NoError(t, err)
			for n := 1; n <= 3; n++ {
				_, err = s.Write(ctx, entry(n))
				require.NoError(t, err)
			}
			if crashed {
				path, err = faultvfs.CrashCopy(path, t.TempDir())
				require.NoError(t, err)
				dir = filepath.Dir(path)
			}
			require.NoError(t, s.Close())

			faultvfs.Arm(dir, faultvfs.DiskFull(0)...)
			defer faultvfs.Disarm()
			s, err = sqlite.Open(ctx, path)
			require.NoError(t, err, "a store on a full disk opens")
			defer s.Close()
			require.ErrorIs(t, s.ReadOnly(), store.ErrDiskFull, "the store says why it cannot write")
			for n := 1; n <= 3; n++ {
				assert.True(t, holds(t, s, n), "entry %d can be read on a full disk", n)
			}
			head, err := s.Head(ctx)
			require.NoError(t, err)
			assert.Equal(t, uint64(3), head)

			_, err = s.Write(ctx, entry(4))
			require.ErrorIs(t, err, store.ErrDiskFull)
			assert.NotErrorIs(t, err, store.ErrOutcomeUnknown, "nothing was written, and the error says so")
			assert.Contains(t, err.Error(), "disk is full")
			assert.Contains(t, err.Error(), "free space", "the error says what to do")
			assert.False(t, holds(t, s, 4))

			faultvfs.Disarm()
			_, err = s.Write(ctx, entry(4))
			require.NoError(t, err, "once there is room the store writes again")
			assert.NoError(t, s.ReadOnly())
			assert.True(t, holds(t, s, 4))
			assert.True(t, afterCrash(t, path, 4))
		})
	}
}

// TestFullDiskStoreBeforeClinicLog: a database made before the log was
// indexed by clinic, opened on a full disk for reading only (so not yet
// indexed), still pages each clinic's log; once there is room, a write
// brings it up to date.
func TestFullDiskStoreBeforeClinicLog(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "old.db")
	writeStoreBeforeClinicLog(t, path)
	faultvfs.Arm(dir, faultvfs.DiskFull(0)...)
	defer faultvfs.Disarm()
	s, err := sqlite.Open(ctx, path)
	require.NoError(t, err, "a store made before the index opens on a full disk")
	defer s.Close()
	require.ErrorIs(t, s.ReadOnly(), store.ErrDiskFull)
	check := func() {
		t.Helper()
		assert.Equal(t, []string{"a1", "b1", "a2", "b2"}, clinicLog(t, s, "north", ""))
		assert.Equal(t, []string{"b2"}, clinicLog(t, s, "south", "p1"))
		assert.Empty(t, clinicLog(t, s, "east", ""))
	}
	check()

	faultvfs.Disarm()
	_, err = s.Write(ctx, store.Batch{Meta: map[string]string{"k": "v"}})
	require.NoError(t, err, "once there is room the store writes again")
	require.NoError(t, s.ReadOnly())
	check()
	require.NoError(t, s.IntegrityCheck(ctx))
}

// TestFullDiskStoreBeforeSearchIndex: a database made before charts were
// indexed by search key, opened on a full disk for reading only (so not
// yet indexed), is still searched by its charts' entries; once there is
// room, a write builds the index.
func TestFullDiskStoreBeforeSearchIndex(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "old.db")
	writeStoreBeforeSearch(t, path)
	faultvfs.Arm(dir, faultvfs.DiskFull(0)...)
	defer faultvfs.Disarm()
	s, err := sqlite.Open(ctx, path)
	require.NoError(t, err, "a store made before the index opens on a full disk")
	defer s.Close()
	require.ErrorIs(t, s.ReadOnly(), store.ErrDiskFull)
	check := func() {
		t.Helper()
		assert.Equal(t, []string{"a"}, searchIDs(t, s, "n:wanjiru"))
		assert.Equal(t, []string{"b"}, searchIDs(t, s, "v:asafo", "i:gha7731"))
		assert.Empty(t, searchIDs(t, s, "n:wanjiru", "v:asafo"))
	}
	check()

	faultvfs.Disarm()
	_, err = s.Write(ctx, store.Batch{Meta: map[string]string{"k": "v"}})
	require.NoError(t, err, "once there is room the store writes again")
	require.NoError(t, s.ReadOnly())
	check()
	require.NoError(t, s.IntegrityCheck(ctx))
}

// TestFullDiskNewStore: a store cannot be created on a full disk, and the
// error says why.
func TestFullDiskNewStore(t *testing.T) {
	dir := t.TempDir()
	faultvfs.Arm(dir, faultvfs.DiskFull(0)...)
	defer faultvfs.Disarm()
	_, err := sqlite.Open(context.Background(), filepath.Join(dir, "charts.db"))
	require.ErrorIs(t, err, store.ErrDiskFull)
}

// TestFailedCheckpointLosesNothing: a checkpoint that cannot sync the
// database file (at Close here) leaves acknowledged writes in the WAL,
// and the next open has them.
func TestFailedCheckpointLosesNothing(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	path := filepath.Join(dir, "charts.db")
	s, err := sqlite.Open(ctx, path)
	require.NoError(t, err)
	faultvfs.Arm(dir, faultvfs.FailSync(faultvfs.DB, 0, -1), faultvfs.FailWrite(faultvfs.DB, 0, -1, false))
	for n := 1; n <= 3; n++ {
		_, err = s.Write(ctx, entry(n))
		require.NoError(t, err, "a commit needs only the WAL")
	}
	require.NoError(t, s.Close())
	require.Positive(t, faultvfs.Fired(), "the checkpoint at Close failed")
	faultvfs.Disarm()
	s = openAt(t, path)
	for n := 1; n <= 3; n++ {
		assert.True(t, holds(t, s, n))
	}
	require.NoError(t, s.IntegrityCheck(ctx))
}

// faultRules draws the rules of one fault: an fsync or a write that fails
// (once, a few times or for good, on chosen files, after some operations
// go through), a disk that fills up, or an fsync failure followed by
// failing writes, a full disk or a disk that writes nothing more.
func faultRules(t *rapid.T) []faultvfs.Rule {
	files := rapid.SampledFrom([]faultvfs.Files{faultvfs.WAL, faultvfs.DB, faultvfs.All}).Draw(t, "files")
	skip := rapid.IntRange(0, 8).Draw(t, "skip")
	times := rapid.SampledFrom([]int{1, 2, -1}).Draw(t, "times")
	switch rapid.IntRange(0, 5).Draw(t, "fault") {
	case 0:
		return []faultvfs.Rule{faultvfs.FailSync(files, skip, times)}
	case 1:
		return []faultvfs.Rule{faultvfs.FailWrite(files, skip, times, rapid.Bool().Draw(t, "performed"))}
	case 2:
		return faultvfs.DiskFull(skip)
	case 3:
		return []faultvfs.Rule{faultvfs.FailSync(faultvfs.WAL, skip, 1), faultvfs.FailWrite(files, 0, times, rapid.Bool().Draw(t, "performed")).Then(0)}
	case 4:
		return []faultvfs.Rule{faultvfs.FailSync(faultvfs.WAL, skip, 1), faultvfs.DiskFull(0)[0].Then(0), faultvfs.DiskFull(0)[1].Then(0)}
	default: // the disk dies
		return append([]faultvfs.Rule{faultvfs.FailSync(faultvfs.WAL, skip, 1)}, faultvfs.Dies(0)...)
	}
}

// TestFailedWritesKeepTheirWordProperty runs random sequences of writes,
// faults, repairs, restarts and crashes, and checks after each that every
// entry is where its write said it would be: held when the write returned
// nil, absent when it returned any error but store.ErrOutcomeUnknown, and
// after ErrOutcomeUnknown as a re-read showed; and that no later step
// changes an entry's fate.
func TestFailedWritesKeepTheirWordProperty(t *testing.T) {
	base := t.TempDir()
	faultvfs.SkipSyncs(base) // crashes here are of the process, not the power
	defer faultvfs.SkipSyncs("")
	run := 0
	outcomes := map[string]int{}
	defer func() { t.Logf("write outcomes: %v", outcomes) }()
	rapid.Check(t, func(t *rapid.T) {
		run++
		dir := filepath.Join(base, fmt.Sprint("store-", run))
		scratch := filepath.Join(base, fmt.Sprint("crash-", run))
		require.NoError(t, os.MkdirAll(dir, 0o700))
		require.NoError(t, os.MkdirAll(scratch, 0o700))
		path := filepath.Join(dir, "charts.db")
		ctx := context.Background()
		defer faultvfs.Disarm()
		s, err := sqlite.Open(ctx, path)
		require.NoError(t, err)
		defer func() { s.Close() }()
		fate := map[int]bool{} // entry -> held
		next := 1
		check := func(st store.Store, where string) {
			for n, held := range fate {
				assert.Equal(t, held, holds(t, st, n), "entry %d %s", n, where)
			}
		}
		t.Repeat(map[string]func(*rapid.T){
			"write": func(t *rapid.T) {
				n := next
				next++
				_, err := s.Write(ctx, entry(n))
				crashed := crashView(t, path, scratch)
				defer crashed.Close()
				fate[n] = outcome(t, s, crashed, n, err)
				switch {
				case err == nil:
					outcomes["saved"]++
				case errors.Is(err, store.ErrOutcomeUnknown):
					outcomes[fmt.Sprintf("unknown, held=%v", fate[n])]++
				default:
					outcomes["not stored"]++
				}
			},
			"fault": func(t *rapid.T) {
				faultvfs.Arm(dir, faultRules(t)...)
			},
			"repair": func(t *rapid.T) {
				faultvfs.Disarm()
			},
			"restart": func(t *rapid.T) {
				_ = s.Close() // a failed checkpoint at Close loses nothing
				s, err = sqlite.Open(ctx, path)
				if err != nil {
					faultvfs.Disarm()
					s, err = sqlite.Open(ctx, path)
				}
				require.NoError(t, err, "the store opens once the disk is healthy")
				check(s, "after a restart")
			},
			"crash": func(t *rapid.T) {
				crashed := crashView(t, path, scratch)
				defer crashed.Close()
				check(crashed, "after a crash")
			},
		})
		faultvfs.Disarm()
		require.NoError(t, s.Close())
		s, err = sqlite.Open(ctx, path)
		require.NoError(t, err)
		check(s, "at the end")
	})
}
