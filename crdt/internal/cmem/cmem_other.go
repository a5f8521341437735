//go:build !(linux && cgo)

package cmem

// InUse returns the bytes of C heap allocated and not yet freed (0 if
// unknown).
func InUse() int64 { return 0 }

// Held returns the bytes malloc holds from the system, in use or not (0
// if unknown).
func Held() int64 { return 0 }

// Allocated returns the bytes the C library has been asked for since the
// process started (0 if unknown).
func Allocated() int64 { return 0 }
