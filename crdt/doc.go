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
// as soon as they do. Save writes only applied changes, so callers that
// persist documents must persist held changes too (package replica keeps
// every raw change in its store and re-applies on load).
//
// # What Apply accepts
//
// Apply judges every change in Go before Automerge sees it, when its
// dependencies are applied (a held change when they arrive), against what
// the document holds at those dependencies. It accepts only what Automerge
// applies exactly as the change states it, so that the document saves to
// bytes that load again, and that every replica applies alike: the
// change's sequence number is its author's next and its dependencies list
// its author's previous change; its operations come after every operation
// its dependencies hold; each acts on an object its dependencies (or the
// change, earlier) made, with map keys only in maps and elements only in
// lists and text, naming only elements of that object; each predecessor is
// a value at the same object and key; a deletion deletes something and an
// insertion overwrites nothing; its bytes are those Automerge would write
// for it. Counter increments, tables and marks, which chartsync does not
// write, are refused too. A change reusing a sequence number its author has
// used is refused even before its dependencies arrive.
//
// The Doc keeps what this needs change by change (each actor's chain, each
// change's causal clock, each operation's object and key), so judging a
// change costs in proportion to the change, not to the document. That
// state costs memory (about 90 KB for a 300-change chart of 2,700
// operations, see BenchmarkHistoryMemory); New and Load build it, a
// whole-document Fork shares it, and a Fork at past heads builds it from
// its original's record of those changes when first needed.
//
// # Saved documents
//
// Load reads a saved document in Go and never hands its bytes to
// Automerge: it checks the chunk (checksum, layout, every column, actor
// indices, actions and values), rebuilds each change from the document's
// operations as Automerge rebuilds them, checks that the rebuilt changes
// give the heads the document states, judges each change as Apply does and
// gives Automerge those changes only. This Go reading was chosen over
// loading in a separate process that a Rust panic could not take down: it
// needs no helper program or process per chart, costs about twice
// Automerge's own load, and builds the state Apply needs on the way. No
// bytes given to Load, ApplyStored or Apply reach Automerge unless they are
// changes Apply would accept.
//
// SaveChecked is Save for bytes that will be stored: it loads them back
// through Load and refuses (ErrUnsaveable) bytes that do not give the same
// heads. Given the rules above it should never refuse; a caller that gets
// ErrUnsaveable keeps its changes and does not store the snapshot.
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
// changes. Apply performs these checks itself (and more), so a checker
// that runs CheckRefs is no longer what keeps Automerge from aborting.
//
// # Errors
//
// Bytes that are not a valid document or change give an error matching
// ErrMalformed. A change Apply (or Load, or ApplyStored) refuses gives an
// *InvalidChangeError naming it, which matches ErrInvalidChange and
// ErrMalformed (and ErrUnknownRef when it names what its dependencies do
// not hold). A failed Edit or Apply leaves the document exactly as it was,
// an empty one included: nothing of a refused Apply is applied or held,
// and a held change refused when its dependencies arrive is no longer
// held. ApplyStored with no bytes for some hashes is ErrMalformed. A
// change that automerge-go reports with a Go panic is turned into an
// error.
//
// # Memory: Close
//
// Automerge keeps a document, and every result read from it, in C
// memory that the Go garbage collector does not see: the pinned
// automerge-go frees it only from finalizers, which run after a
// collection, one at a time, and fall far behind a program that forks or
// loads many documents (100,000 forks of a 300-change chart reached
// 640 MiB of resident memory under a 3 MiB Go heap). Memory is therefore
// released explicitly: Doc.Close frees a document's Automerge memory at
// once, and every owner that is done with a document closes it (a fork
// made to read or check, a document that a failed load or a rollback
// replaces, the copy SaveChecked loads back, the cache of package
// replica on eviction). A closed Doc answers ErrClosed; a Doc never
// closed is still freed by its finalizer. With Close, those 100,000
// forks peak at 33 MiB (BenchmarkForkChurn) and 20,000 loads at 53 MiB
// (BenchmarkLoadChurn).
//
// Memory freed goes back to the system, not only to malloc. Automerge
// allocates a document in many small blocks, from whichever thread the
// Go runtime runs the call on, so in several of glibc's arenas; malloc
// gives back only free memory at the top of an arena, so the pages freed
// between documents still open (a cache evicting some charts and
// keeping others) stayed in the process: closing 90 of 120 loaded
// charts, every fourth kept open, gave 4 MB of their 47 MB back. Close therefore looks at
// the free memory malloc holds once every 4 MiB it frees, and when that
// has grown by 16 MiB since it was least asks malloc to return its free
// pages (malloc_trim); the same 120 charts now give back 37 MB
// (TestClosedDocumentsShrinkTheProcess). A loop that frees memory and
// takes it again at once (100,000 forks made and closed) does not grow
// malloc's free memory and pays for no trim. Nothing is done on other C
// libraries.
//
// Reads release what they read, too. Each map on a read's path, and each
// value read, is a result of its own in C: about 1 KB for a String of a
// small chart, a copy of every value for Strings, 133 KB for the Keys of
// a 120-entry map. String, Strings, Keys, IsMap and Text free those
// results before they return (automerge-go's Value.Free, added by the
// patch below), keeping only Go copies, so reading leaves nothing for the
// finalizers (TestReadsReleaseAutomergeMemory). Left to them, the finished
// reads of 100 simulated devices receiving their clinics' charts held
// 0.9 GiB of C memory at once (httpsync BenchmarkCloudLoad: the devices'
// process peaked at 1.4-1.5 GiB, and at 0.7 GiB once reads were freed).
// The writes of an Edit (the lookups of a Tx, the change read back) are
// still left to finalizers: about 13 KB an edit of five fields.
//
// Freeing needs a call automerge-go does not have. It is added by a
// small patch to a copy of automerge-go kept apart in
// third_party/automerge-go (its licence kept, its change described in
// PATCH.md), imported by that path: Doc.Free, Value.Free, and results
// that automerge-go copies into Go (Save, Heads, writes, Text.Get,
// Map.Keys...) freed as soon as they are copied. It is a package of this module rather than a
// module put in place by a replace directive, because a replace applies
// only to the module that declares it: programs importing chartsync
// would have built against the unpatched original. This was chosen over
// reaching into automerge-go's unexported fields, and over mixing its
// code into this package: the patch is a few lines an upgrade can carry
// or upstream can take.
//
// Fewer Automerge objects are made, too. The document keeps each
// applied change's bytes beside the state Apply judges with (about 12
// KB for a 40-change chart), so Changes, OpIndex and a fork's judging
// state are read in Go instead of from Automerge's list of changes; Has
// is answered from that state; a fork at the current heads is made as a
// copy (Automerge rebuilds a document forked at other heads, which costs
// many times more) and shares its original's judging state.
//
// # Concurrency
//
// A *Doc is safe for concurrent use: every method takes the Doc's lock,
// Close too, so a Doc closed while another goroutine uses it gives that
// goroutine its result or ErrClosed, never freed memory.
// Change values are immutable and may be shared. A *Tx is valid only inside
// the Edit callback that received it.
//
// # Caveats
//
// The pinned automerge-rs panics on some malformed changes and documents,
// and a Rust panic under cgo aborts the whole process (fuzzing found an
// operation naming an actor the change does not list; a map key in a text
// panics "can only compare map keys"; a document with an unknown action
// panics "validate_action_and_value returned UnknownAction"). ParseChanges
// checks every change in Go before Automerge decodes it: the chunk
// checksum against the SHA-256 of its content, the header fields, the
// column layout and every actor index. Apply then judges the change's
// operations against the document as described above before Automerge
// applies it, and Load never gives Automerge a document's bytes. A change
// crafted to pass all of these and hit another panic in automerge-rs would
// still stop the process; FuzzApplyCrafted and FuzzLoad (with valid
// checksums) exercise this boundary.
//
// Held changes are kept in memory without a bound; callers that take
// changes from peers bound them (package replica does).
//
// The pinned automerge-go exposes no "all values at a key" call, no patches
// and no rollback. chartsync therefore models conflicts explicitly in the
// document (see package record) and rolls a failed edit back by forking the
// document at its previous heads.
package crdt
