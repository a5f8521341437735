// Package cmem reports the C heap of the process (memory malloc holds
// for automerge-rs), for benchmarks that measure what Automerge costs
// beside the Go heap. It reads glibc's mallinfo2; elsewhere it reports
// nothing.
package cmem
