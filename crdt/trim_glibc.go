//go:build linux && cgo

package crdt

/*
#include <stdlib.h>
#if defined(__GLIBC__)
#include <malloc.h>
#endif

// crdt_malloc_free returns the free bytes malloc holds in its arenas,
// or -1 where that cannot be known.
static long long crdt_malloc_free(void) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
	struct mallinfo2 m = mallinfo2();
	return (long long)m.fordblks;
#else
	return -1;
#endif
}

static void crdt_malloc_trim(void) {
#if defined(__GLIBC__)
	malloc_trim(0);
#endif
}
*/
import "C"

// mallocFree returns the free bytes glibc's malloc holds in its arenas
// (mallinfo2), or -1 where that cannot be known.
func mallocFree() int64 { return int64(C.crdt_malloc_free()) }

// trimMalloc asks glibc's malloc to give the free pages of every arena
// back to the system (malloc_trim).
func trimMalloc() { C.crdt_malloc_trim() }
