// Package crdt is chartsync's only door to Automerge. It wraps
// github.com/automerge/automerge-go in a small typed layer: a Doc, the
// Changes that build it, the Heads that name a version of it, and the few
// structural operations the chart model needs (string values in nested maps,
// and collaborative text).
//
// The package knows nothing of medicine; package record builds the patient
// chart on top of it.
//
// # Usage
//
//	d := crdt.New(actor)
//	ch, err := d.Edit(`{"op":"register"}`, time.Now(), func(tx *crdt.Tx) error {
//		return tx.Put([]string{"patient"}, "family", "Okafor")
//	})
//	// send ch.Raw to a peer; the peer calls ParseChanges and Apply.
//
// # Changes and missing dependencies
//
// Apply accepts changes in any order, any number of times. A change whose
// dependencies have not arrived is held by the Doc (see Pending) and applied
// as soon as they do; it is never dropped. Save writes only applied changes,
// so callers that persist documents must persist held changes too (package
// replica keeps every raw change in its store and re-applies on load).
//
// # Reading a change without applying it
//
// ChangeOps decodes one raw change in Go, following the Automerge binary
// format: its header and every operation (object, key, action, value,
// predecessors), with each operation's ID. A checker can so judge a
// change by what it does at the cost of the change, not of the document.
// EncodeChange is its inverse, for tests and tools that need changes
// Automerge would not make. An OpIndex records which operations and
// objects a history holds; its CheckRefs refuses (ErrUnknownRef) a change
// naming an object, element or operation its dependencies do not hold,
// which Automerge would apply differently on replicas that hold different
// changes.
//
// # Errors
//
// Bytes that are not a valid document or change give an error matching
// ErrMalformed; a failed Edit or Apply leaves the document exactly as it was.
// A change that automerge-go reports with a Go panic is turned into an error.
//
// # Concurrency
//
// A *Doc is safe for concurrent use: every method takes the Doc's lock.
// Change values are immutable and may be shared. A *Tx is valid only inside
// the Edit callback that received it.
//
// # Caveats
//
// The pinned automerge-rs panics on some malformed changes, and a Rust
// panic under cgo aborts the whole process (fuzzing found one: an operation
// naming an actor the change does not list). ParseChanges therefore checks
// every change in Go before Automerge sees it: the chunk checksum against
// the SHA-256 of its content (so corruption in transit never reaches
// Automerge), the header fields, the column layout and every actor index.
// A change crafted to pass these checks and hit another panic in
// automerge-rs would still stop the process; only authenticated peers
// (see the transports) can send changes, and FuzzApplyCrafted exercises
// this boundary. One such change is known: an operation that uses a map
// key in a list or text, or an element in a map (automerge-rs panics
// "can only compare map keys"). Telling it apart needs the kinds of the
// document's objects, which ParseChanges does not have: OpIndex.CheckRefs
// refuses it, so a checker that runs CheckRefs against the change's
// dependencies before Apply (as package record's CheckChange and Checker
// do) is safe from it; Apply alone is not.
//
// The pinned automerge-go exposes no "all values at a key" call, no patches
// and no rollback. chartsync therefore models conflicts explicitly in the
// document (see package record) and rolls a failed edit back by forking the
// document at its previous heads.
package crdt
