//go:build linux && cgo

package cmem

/*
#cgo LDFLAGS: -Wl,--wrap=malloc -Wl,--wrap=calloc -Wl,--wrap=realloc -Wl,--wrap=posix_memalign -Wl,--wrap=aligned_alloc
#include <malloc.h>
#include <stddef.h>
#include <stdint.h>

// Every allocation through the C library is counted: the wrapped
// functions add the bytes asked for and call the real ones.
static uint64_t cmem_total;

void *__real_malloc(size_t);
void *__real_calloc(size_t, size_t);
void *__real_realloc(void *, size_t);
int __real_posix_memalign(void **, size_t, size_t);
void *__real_aligned_alloc(size_t, size_t);

void *__wrap_malloc(size_t n) {
	__atomic_add_fetch(&cmem_total, n, __ATOMIC_RELAXED);
	return __real_malloc(n);
}
void *__wrap_calloc(size_t k, size_t n) {
	__atomic_add_fetch(&cmem_total, k * n, __ATOMIC_RELAXED);
	return __real_calloc(k, n);
}
void *__wrap_realloc(void *p, size_t n) {
	__atomic_add_fetch(&cmem_total, n, __ATOMIC_RELAXED);
	return __real_realloc(p, n);
}
int __wrap_posix_memalign(void **p, size_t a, size_t n) {
	__atomic_add_fetch(&cmem_total, n, __ATOMIC_RELAXED);
	return __real_posix_memalign(p, a, n);
}
void *__wrap_aligned_alloc(size_t a, size_t n) {
	__atomic_add_fetch(&cmem_total, n, __ATOMIC_RELAXED);
	return __real_aligned_alloc(a, n);
}

static uint64_t cmem_allocated(void) {
	return __atomic_load_n(&cmem_total, __ATOMIC_RELAXED);
}

static size_t cmem_in_use(void) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
	struct mallinfo2 m = mallinfo2();
	return m.uordblks + m.hblkhd;
#else
	return 0;
#endif
}

static size_t cmem_held(void) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 33))
	struct mallinfo2 m = mallinfo2();
	return m.arena + m.hblkhd;
#else
	return 0;
#endif
}
*/
import "C"

// InUse returns the bytes of C heap allocated and not yet freed (0 if
// unknown).
func InUse() int64 { return int64(C.cmem_in_use()) }

// Allocated returns the bytes the C library has been asked for since the
// process started, freed or not: malloc, calloc, realloc (its new size),
// posix_memalign and aligned_alloc, for every caller linked into the
// program (automerge-rs among them). It is counted only in programs that
// link this package (benchmarks), whose C allocation calls are wrapped.
func Allocated() int64 { return int64(C.cmem_allocated()) }

// Held returns the bytes malloc holds from the system, in use or not (0
// if unknown).
func Held() int64 { return int64(C.cmem_held()) }
