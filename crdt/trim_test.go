package crdt_test

import (
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/crdt/internal/cmem"
)

// residentBytes returns the process's resident set, after the Go runtime
// has given back every page it does not use, so that what it reports
// beyond the Go heap is C memory (0 if it cannot be read).
func residentBytes() int64 {
	runtime.GC()
	debug.FreeOSMemory()
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0
	}
	return pages * int64(os.Getpagesize())
}

// Closing documents gives their memory back to the system, not only to
// malloc, even when documents still open lie between them (the blocks
// of documents loaded one after the other interleave, so malloc alone
// keeps the free pages between them): a cache that evicts most of what
// it loaded shrinks.
func TestClosedDocumentsShrinkTheProcess(t *testing.T) {
	if cmem.InUse() == 0 || residentBytes() == 0 {
		t.Skip("the C heap or the resident set cannot be measured here")
	}
	saved := realisticChart(t, 40).Doc().Save()
	docs := make([]*crdt.Doc, 120)
	trims := crdt.StartTrimCount()
	c0 := cmem.InUse()
	for i := range docs {
		var err error
		docs[i], err = crdt.Load(saved, "dd04")
		require.NoError(t, err)
	}
	loaded := residentBytes()
	c1 := cmem.InUse()
	for i, d := range docs {
		if i%4 != 0 {
			require.NoError(t, d.Close())
		}
	}
	freed := c1 - cmem.InUse()
	require.Greater(t, freed, (c1-c0)/2, "closing three documents in four frees their C memory")
	assert.Greater(t, crdt.StartTrimCount(), trims, "malloc was asked to give its free pages back")
	shrunk := loaded - residentBytes()
	t.Logf("closed documents freed %d bytes of C memory; the process gave back %d", freed, shrunk)
	assert.Greater(t, shrunk, freed/2,
		"the process gave back %d bytes of the %d bytes of C memory its closed documents freed", shrunk, freed)
	for _, d := range docs {
		require.NoError(t, d.Close())
	}
}
