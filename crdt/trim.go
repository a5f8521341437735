package crdt

import (
	"sync"
	"sync/atomic"
)

// Freed Automerge memory goes back to malloc, which keeps it for the
// process rather than giving it back to the system. Automerge allocates
// a document in many small blocks, from whichever thread the Go runtime
// runs the call on (so in several of glibc's arenas), and malloc returns
// only the free memory at the top of an arena: the free pages between
// the blocks of documents still open, and an arena's free memory that
// another thread's allocations cannot use, stay in the process. Close
// therefore watches the free memory malloc holds (glibc's mallinfo2,
// looked at once every checkEvery bytes freed, as estimated) and, once it
// has grown by trimAfter since it was least, asks malloc to give its
// free pages back (malloc_trim). Memory that is freed and taken again at
// once (a fork made and closed per check) never grows it, so a loop that
// reuses its memory does not pay for trims. Elsewhere than on glibc
// nothing is done.
const (
	// checkEvery is how much Automerge memory Close frees, as estimated,
	// between two looks at malloc's free memory.
	checkEvery = 4 << 20
	// trimAfter is how far malloc's free memory may grow before it is
	// asked to give its free pages back.
	trimAfter = 16 << 20
	// amBytesPerOp is Automerge's memory per operation of a document, as
	// measured on charts (a 40-change chart of 960 operations holds 520
	// KB: automerge-rs keeps each operation, its place in the op tree's
	// indexes and every change's bytes).
	amBytesPerOp = 512
	// amBytesPerRawByte is the same per byte of the document's changes,
	// for a document whose operations were not indexed.
	amBytesPerRawByte = 10
)

var trim struct {
	// freed is the Automerge memory freed, as estimated, since malloc's
	// free memory was last looked at.
	freed atomic.Int64
	mu    sync.Mutex
	// least is the least free memory malloc held when looked at since
	// the last trim (-1: not looked at yet).
	least int64
	// trims counts the times malloc was asked to give its free pages
	// back.
	trims int64
}

func init() { trim.least = -1 }

// noteFreed records that about n bytes of Automerge memory were freed.
// Once every checkEvery bytes it looks at malloc's free memory, and has
// malloc give its free pages back if that grew by trimAfter since it was
// least.
func noteFreed(n int64) {
	if n <= 0 || trim.freed.Add(n) < checkEvery {
		return
	}
	if trim.freed.Swap(0) < checkEvery {
		return // another goroutine looks
	}
	trim.mu.Lock()
	defer trim.mu.Unlock()
	free := mallocFree()
	if free < 0 {
		return
	}
	if trim.least < 0 || free < trim.least {
		trim.least = free
	}
	if free-trim.least < trimAfter {
		return
	}
	trimMalloc()
	trim.trims++
	trim.least = mallocFree()
}

// automergeBytes estimates the memory Automerge holds for the document.
// The caller holds d.mu.
func (d *Doc) automergeBytes() int64 {
	if d.hist != nil {
		return int64(len(d.hist.ops)) * amBytesPerOp
	}
	var n int64
	for _, raw := range d.lazy {
		n += int64(len(raw))
	}
	return n * amBytesPerRawByte
}
