package faultstore_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/printer"
	"go/token"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/replica/store"
	"github.com/chartsync/chartsync/replica/store/faultstore"
	"github.com/chartsync/chartsync/replica/store/sqlite"
	"github.com/chartsync/chartsync/replica/store/storetest"
)

// keepOpen lets a test read a wrapped store after the wrapper closed it.
type keepOpen struct{ *store.Mem }

func (keepOpen) Close() error { return nil }

// TestConformance: the wrapper with no fault armed is a store like the one
// it wraps, and a fault on every write keeps the contract of a failed
// write.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Opened {
		s := faultstore.New(store.NewMem())
		t.Cleanup(func() { _ = s.Close() })
		return storetest.Opened{Store: s, FailWrites: func(*testing.T) func() {
			s.Arm(faultstore.Fault{At: faultstore.Point{Write: s.Count() + 1}, Times: -1})
			return s.Disarm
		}}
	})
}

// allergy is a batch whose presence can be told by its change's hash.
func allergy(n int) (store.Batch, crdt.Hash) {
	raw := []byte(fmt.Sprintf("allergy %d: penicillin", n))
	h := sha256.Sum256(raw)
	return store.Batch{
		Changes: []store.NewChange{{Chart: "chart-1", Hash: h, Raw: raw}},
		Charts:  []store.Chart{{ID: "chart-1"}},
		Meta:    map[string]string{"k": fmt.Sprint(n)},
	}, h
}

func holds(t *testing.T, s store.ChangeLog, h crdt.Hash) bool {
	t.Helper()
	known, err := s.Known(context.Background(), []crdt.Hash{h})
	require.NoError(t, err)
	return known[h]
}

// TestFailedWriteKeepsItsWord: a write failed before the batch stores
// nothing and says so with a plain error; one failed after stores the
// batch and says its outcome is unknown. Only the write at the point
// fails, and the next one succeeds.
func TestFailedWriteKeepsItsWord(t *testing.T) {
	for _, when := range []faultstore.When{faultstore.Before, faultstore.After} {
		t.Run(when.String(), func(t *testing.T) {
			ctx := context.Background()
			mem := store.NewMem()
			s := faultstore.New(mem)
			diskFull := fmt.Errorf("no room: %w", store.ErrDiskFull)
			s.Arm(faultstore.Fault{At: faultstore.Point{Write: 2, When: when}, Err: diskFull})
			for n := 1; n <= 3; n++ {
				b, h := allergy(n)
				_, err := s.Write(ctx, b)
				if n != 2 {
					require.NoError(t, err, "write %d is not at the failpoint", n)
					assert.True(t, holds(t, mem, h))
					continue
				}
				require.ErrorIs(t, err, store.ErrDiskFull, "the fault's own error is returned")
				assert.Equal(t, when == faultstore.After, errors.Is(err, store.ErrOutcomeUnknown),
					"only a failure after the batch leaves its outcome unknown")
				assert.Equal(t, when == faultstore.After, holds(t, mem, h), "whether the failed batch is stored")
				assert.Contains(t, err.Error(), when.String()+" write 2", "the error names the failpoint")
			}
			assert.Equal(t, 1, s.Fired())
			ws := s.Writes(1, 0)
			require.Len(t, ws, 3)
			assert.Equal(t, []bool{true, when == faultstore.After, true}, []bool{ws[0].Stored, ws[1].Stored, ws[2].Stored})
		})
	}
}

// TestCrashStopsTheStore: at a crash the hook runs once, seeing the
// storage as the crash leaves it, and from then on every call but Close
// fails with ErrCrashed and nothing more reaches the wrapped store.
func TestCrashStopsTheStore(t *testing.T) {
	for _, when := range []faultstore.When{faultstore.Before, faultstore.After} {
		t.Run(when.String(), func(t *testing.T) {
			ctx := context.Background()
			mem := store.NewMem()
			s := faultstore.New(keepOpen{mem})
			b1, h1 := allergy(1)
			_, err := s.Write(ctx, b1)
			require.NoError(t, err)
			b2, h2 := allergy(2)
			var crashes []faultstore.Point
			var heldAtCrash bool
			s.Arm(faultstore.Fault{At: faultstore.Point{Write: 2, When: when}, Action: faultstore.Crash, OnHit: func(p faultstore.Point) {
				crashes = append(crashes, p)
				heldAtCrash = holds(t, mem, h2)
			}})
			_, err = s.Write(ctx, b2)
			require.ErrorIs(t, err, faultstore.ErrCrashed)
			assert.Equal(t, when == faultstore.After, errors.Is(err, store.ErrOutcomeUnknown))
			assert.Equal(t, []faultstore.Point{{Write: 2, When: when}}, crashes)
			assert.Equal(t, when == faultstore.After, heldAtCrash, "the crash sees the batch only after it")
			assert.True(t, s.Crashed())

			b3, h3 := allergy(3)
			_, err = s.Write(ctx, b3)
			require.ErrorIs(t, err, faultstore.ErrCrashed, "a crashed store writes nothing more")
			assert.False(t, holds(t, mem, h3))
			_, err = s.Head(ctx)
			assert.ErrorIs(t, err, faultstore.ErrCrashed, "nor reads")
			_, err = s.Known(ctx, []crdt.Hash{h1})
			assert.ErrorIs(t, err, faultstore.ErrCrashed)
			_, err = s.Chart(ctx, "chart-1")
			assert.ErrorIs(t, err, faultstore.ErrCrashed)
			_, err = s.Place(ctx)
			assert.ErrorIs(t, err, faultstore.ErrCrashed)
			s.Disarm()
			_, err = s.Write(ctx, b3)
			assert.ErrorIs(t, err, faultstore.ErrCrashed, "disarming does not bring a crashed store back")
			assert.Len(t, crashes, 1, "a crash happens once")
			require.NoError(t, s.Close())
			assert.True(t, holds(t, mem, h1))
		})
	}
}

// TestTimes: a fault strikes Times writes from its point, or every later
// one.
func TestTimes(t *testing.T) {
	for _, tt := range []struct {
		times int
		want  []bool // write 1..5 fails
	}{
		{0, []bool{false, true, false, false, false}},
		{1, []bool{false, true, false, false, false}},
		{2, []bool{false, true, true, false, false}},
		{-1, []bool{false, true, true, true, true}},
	} {
		t.Run(fmt.Sprint(tt.times), func(t *testing.T) {
			s := faultstore.New(store.NewMem())
			s.Arm(faultstore.Fault{At: faultstore.Point{Write: 2}, Times: tt.times})
			var got []bool
			for n := 1; n <= 5; n++ {
				b, _ := allergy(n)
				_, err := s.Write(context.Background(), b)
				got = append(got, err != nil)
				if err != nil {
					require.ErrorIs(t, err, faultstore.ErrInjected)
				}
			}
			assert.Equal(t, tt.want, got)
		})
	}
}

// TestWritesAreDescribed: each write is numbered and described by what
// its batch carries, so a test can tell a compaction from an edit.
func TestWritesAreDescribed(t *testing.T) {
	ctx := context.Background()
	s := faultstore.New(store.NewMem())
	b, _ := allergy(1)
	_, err := s.Write(ctx, b)
	require.NoError(t, err)
	b, _ = allergy(2)
	b.Snapshots = []store.NewSnapshot{{Chart: "chart-1", Data: []byte("doc")}}
	_, err = s.Write(ctx, b)
	require.NoError(t, err)
	_, err = s.Write(ctx, store.Batch{Peers: []store.Peer{{ID: "p", Acked: 1}}})
	require.NoError(t, err)

	assert.Equal(t, 3, s.Count())
	ws := s.Writes(2, 3)
	require.Len(t, ws, 2)
	assert.True(t, ws[0].Snapshot(), "the second write compacts")
	assert.False(t, ws[1].Snapshot())
	assert.Equal(t, "write 2 (1 changes, 1 charts, 1 snapshots, 1 meta)", ws[0].String())
	assert.Equal(t, "write 3 (1 peers)", ws[1].String())
	assert.Empty(t, s.Writes(4, 0))
}

// placed is a store that can tell where it is.
type placed struct{ *store.Mem }

func (placed) Place(context.Context) (string, error) { return "db-7", nil }

// TestOptionalInterfacesAreForwarded: the wrapper answers the optional
// interfaces a replica asks for as the wrapped store does, and as a store
// without them when it lacks them, so wrapping switches no feature on or
// off.
func TestOptionalInterfacesAreForwarded(t *testing.T) {
	ctx := context.Background()
	sq, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "charts.db"))
	require.NoError(t, err)
	s := faultstore.New(sq)
	defer s.Close()
	assert.True(t, s.PacksChanges(), "SQLite keeps changes packed, and the wrapper says so")
	problems, err := s.Check(ctx, true, 10)
	require.NoError(t, err, "SQLite checks itself through the wrapper")
	assert.Empty(t, problems)
	place, err := s.Place(ctx)
	require.NoError(t, err)
	assert.Empty(t, place, "SQLite has no place: the wrapper says none, as the replica takes a store without Place")

	m := faultstore.New(store.NewMem())
	assert.False(t, m.PacksChanges())
	_, err = m.Check(ctx, false, 10)
	assert.ErrorIs(t, err, errors.ErrUnsupported)

	p := faultstore.New(placed{store.NewMem()})
	place, err = p.Place(ctx)
	require.NoError(t, err)
	assert.Equal(t, "db-7", place)
}

// TestCallLetsTheWriteGoOn: a Call fault runs its hook at its point and
// the write goes on as if nothing struck.
func TestCallLetsTheWriteGoOn(t *testing.T) {
	ctx := context.Background()
	mem := store.NewMem()
	s := faultstore.New(mem)
	var seen []bool
	b, h := allergy(1)
	s.Arm(faultstore.Fault{At: faultstore.Point{Write: 1, When: faultstore.Before}, Action: faultstore.Call,
		OnHit: func(faultstore.Point) { seen = append(seen, holds(t, mem, h)) }})
	_, err := s.Write(ctx, b)
	require.NoError(t, err)
	assert.Equal(t, []bool{false}, seen, "the hook ran once, before the batch was stored")
	assert.True(t, holds(t, mem, h))
	assert.Equal(t, 1, s.Fired())
}

// TestForwardsEveryInterfaceTheReplicaAsksFor reads package replica's
// source for the optional interfaces it asks its store for (a type
// assertion on its store) and checks that the wrapper forwards each, so
// that wrapping a store switches no feature of the replica off.
func TestForwardsEveryInterfaceTheReplicaAsksFor(t *testing.T) {
	forwarded := map[string]bool{"store.Packer": true, "store.Placed": true, "checker": true}
	var s any = faultstore.New(store.NewMem())
	_, packer := s.(store.Packer)
	_, placed := s.(store.Placed)
	_, checks := s.(interface {
		Check(ctx context.Context, full bool, max int) ([]string, error)
	})
	require.True(t, packer && placed && checks, "the wrapper implements what it claims to forward")

	files, err := filepath.Glob(filepath.Join("..", "..", "*.go"))
	require.NoError(t, err)
	require.NotEmpty(t, files, "package replica's source is two folders up")
	asked := map[string]string{}
	fset := token.NewFileSet()
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, 0)
		require.NoError(t, err)
		ast.Inspect(f, func(n ast.Node) bool {
			ta, ok := n.(*ast.TypeAssertExpr)
			if !ok || ta.Type == nil || !isStore(ta.X) {
				return true
			}
			var b strings.Builder
			require.NoError(t, printer.Fprint(&b, fset, ta.Type))
			asked[b.String()] = fset.Position(ta.Pos()).String()
			return true
		})
	}
	require.NotEmpty(t, asked, "the replica asks its store for optional interfaces")
	for iface, where := range asked {
		assert.True(t, forwarded[iface], "the replica asks its store for %s (%s): forward it in the wrapper", iface, where)
	}
}

// isStore reports whether x names the replica's store (st, r.st).
func isStore(x ast.Expr) bool {
	switch x := x.(type) {
	case *ast.Ident:
		return x.Name == "st"
	case *ast.SelectorExpr:
		return x.Sel.Name == "st"
	}
	return false
}
