// Package faultstore wraps a store.Store with failpoints, for tests of
// what a replica promises when its storage fails or its process dies at
// any step of a write.
//
// Every call of Write is one persistence step with two points: Before
// (the batch has not reached the wrapped store) and After (the wrapped
// store committed it, and the caller has not yet been told). A Fault
// armed at a point fails the write there, crashes the store, or only
// calls the test back:
//
//   - Fail: before the batch, the write returns the fault's error
//     (ErrInjected unless given), and nothing of the batch is stored;
//     after the batch, the batch is stored and the error also matches
//     store.ErrOutcomeUnknown, as the store contract requires of an error
//     at a point where the batch may be on disk;
//   - Crash: the process's view of the store stops there: the fault's
//     OnHit runs (a test takes the crash copy of the storage then,
//     faultvfs.CrashCopy for SQLite), and that call and every later one,
//     reads included, return ErrCrashed, so nothing more reaches the
//     storage. Close still closes the wrapped store;
//   - Call: OnHit runs and the write goes on, so that a test can arm a
//     fault below the store (faultvfs's: a torn write, a full disk) for
//     that one write, such as a compaction's.
//
// Writes are numbered from 1 in the order they reach the wrapper, and
// Writes tells what each one carried (changes, charts, snapshots, peers,
// ...), so a test enumerates the points of a path by running it once
// without a fault and then once per point.
//
// The wrapper forwards the optional interfaces a replica looks for
// (store.Packer, store.Placed, and an integrity Check as package sqlite's
// store has), answering as a store without them would when the wrapped
// store lacks them: no packed changes, no place, and an error matching
// errors.ErrUnsupported. Wrapping a store thus switches none of its
// features off.
//
// # Usage
//
//	fs := faultstore.New(st)
//	r, err := replica.New(ctx, fs, replica.Config{})
//	fs.Arm(faultstore.Fault{At: faultstore.Point{Write: 3, When: faultstore.After}, Action: faultstore.Crash,
//		OnHit: func(faultstore.Point) { copy, _ = faultvfs.CrashCopy(path, scratch) }})
//	_, err = r.Edit(ctx, id, by, op) // ErrCrashed if the edit's write was the third
//
// # Caveats
//
// It is for tests. Writes are serialised by the wrapper (the stores it
// wraps serialise them anyway), so that their numbering is that of their
// commits. A crash models a process that dies, not a power cut: what the
// storage holds at the crash is what the wrapped store had committed.
package faultstore
