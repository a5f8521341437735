// Package replica holds many patient charts durably on one device or
// server and syncs them with peers over any courier.
//
// A Replica stores every raw change in a Store (SQLite by default, see
// Open), loads charts on demand, compacts charts into snapshots as changes
// pile up, and edits them through package record's typed operations, one
// durable transaction per edit. A chart's Automerge document is loaded for
// the call that needs it and closed as the call ends (but for the few
// charts edited last, kept open for their next edit); a bounded LRU cache
// keeps the charts viewed as their views (record.View, compressed), which
// Chart returns while the chart's index entry is unchanged.
//
// # Sync: one bundle for every courier
//
// Each replica numbers the changes it stores in a local log. For a peer it
// remembers two positions: how far the peer has acknowledged this log
// (Acked) and how far it holds the peer's log (Received). MakeBundle packs
// the log after Acked, less the changes that came from that peer, with a
// summary (this log's head, and Received as an acknowledgement). Receive
// applies a bundle whole or not at all and moves the positions forward.
// Agreement therefore costs a bundle of a few dozen bytes whatever the
// number of charts, and a change costs its own bytes.
//
// The same bundle serves a request/response link (SyncPair, HTTP) and a
// one-way courier (a file carried for days): the sender's belief about the
// peer only moves when the peer's acknowledgement comes back, so a lost
// bundle is resent in the next one, and a repeated or reordered bundle
// changes nothing because changes are content-addressed.
//
// Bundle wire format (a frame of package internal/wire, kind 'B', version
// 8): sender and recipient IDs (16 bytes each), the positions Base, Upto,
// Head and Ack as uvarints, the length-prefixed UptoHash (0 or 8 bytes),
// CheckAt as a uvarint and the length-prefixed CheckHash (see Copied
// data folders), the log epochs Epoch and AckEpoch as uvarints (see
// Restored peers), a change count, then per change the chart ID
// (16-byte UUID), the raw change (without its checksum, the first 4
// bytes of its hash, and without the dependency hashes of changes the
// bundle carries before it; see appendChange) and its signature form: 0
// (unsigned), 1 and the length-prefixed signature, 2 and the index of
// the change that covers it, or 3 and the index of the batch signature
// that vouches for it and its leaf in that signature's tree (see Signed
// changes); then a count of batch signatures, each its tree's leaf count,
// the length-prefixed signature and a count of sibling hashes (32 bytes
// each); then a count of signer enrolments, each length-prefixed; then
// the length-prefixed sender signature over everything before it (empty
// if unsigned). Bundles of versions 1 (no signatures), 2 (a signature per
// change), 3 (no sender signature), 4 (every dependency hash), 5 (no
// position hashes), 6 (no log epochs) and 7 (no batch signatures) are
// refused with ErrBundleVersion.
//
// # Restored peers
//
// A replica restored from a backup under its own ID (a cloud's database
// put back with pg_restore) has the log it had at the backup, while its
// peers recorded positions beyond it. Each bundle names the sender's log
// (Epoch: drawn from a random log ID and, for a store that can tell,
// store.Placed, where the data lives, so that a restore into another
// database names another log) and the recipient's log as the sender last
// learnt it (AckEpoch). A replica that finds its own log named by an
// epoch it no longer has takes the peer to hold nothing of it and sends
// its scope again; one that finds a peer's log under a new epoch forgets
// how far it held the old one and takes the peer's acknowledgement even
// when it goes back, so it sends again what the peer lost; a bundle of a
// log the sender left, carried late, moves no position
// (ErrStalePositions). Such an exchange is not Complete, so a sync goes
// on. See LogEpoch, NewLogEpoch and epoch.go.
//
// # Whose positions count
//
// Positions decide what is sent next, so a lie about them loses data
// silently: a file claiming the cloud holds a device's edits would make
// the device stop sending them. On a replica with Config.Keys, a bundle's
// positions count only when the bundle is authenticated as its sender's:
// it came over a channel that authenticated the sender
// (ReceiveOptions.Sender: HTTPS with a device certificate, a relay
// envelope's signature), or it carries the sender's signature over the
// whole bundle (Bundle.Auth; a replica with a Config.Signer signs every
// bundle it makes unless BundleOptions.NoAuth). The changes of any other
// bundle are taken, each checked against its author's signature, and its
// positions ignored (Received.PositionsRefused, ErrUnauthenticatedPositions).
// An acknowledgement beyond this replica's log head is not taken
// (ErrImpossiblePosition); a position check naming a change this replica
// does not hold shows its log went back (see Copied data folders); ResetPeer
// clears what a replica knows of a peer's positions when it cannot be
// right (a peer restored from a backup under its own ID). A replica without Keys
// cannot tell senders apart and takes every bundle's positions.
//
// # Receiving
//
// Receive works in four steps: decode (the bundle's form, every change
// read in Go: its structure and checksum), verify (signatures, reading only
// what is held and the signers' records), plan (each change's operations
// decoded and its bytes judged once, crdt.Judge, for the author check and
// the apply alike; each chart's new changes judged by record's rules in
// causal order, before they touch anything,
// with a record.Checker whose cost follows the changes, then applied to a
// private copy of the chart and judged for scope and registration; charts
// in parallel; no I/O) and commit (one durable write). Only the commit holds the
// replica's write lock, so a large bundle from one device does not hold up
// another device's sync or a nurse's edit; if a chart the plan read
// changed before the commit, the bundle is planned again from what is now
// held. A bundle's memory is that of the bytes read: no length it claims
// is allocated before the bytes are there. Its charts are read and planned
// in groups of 256 KiB of changes, and the copies of charts the cache does
// not hold are closed after each group, which frees their Automerge
// memory at once; once the process has grown by Config.ReceiveMemory
// (64 MiB) a collection also runs, for what is still left to automerge-go's
// finalizers (see package crdt's doc). A bundle of many charts with
// long notes (Automerge holds hundreds of bytes per character) thus costs
// a bounded amount, not the sum of its charts: 400 new charts with a
// 20,000-character note each grew the peak resident set by about 200 MiB
// (BenchmarkReceiveLongNotes), where 100 of them grew it by 1 GiB before.
// Within a chart, changes are decoded, checked and applied in causal order
// in slices of at most 16,384 decoded operations, so one chart's long
// history does not hold all its decoded operations at once. The charts a
// group changes that the cache does not hold are read from the store on
// as many cores as there are. A chart whose history the bundle's size
// cut stays open in the cache for the sender's next bundle, and the
// Checker that judged it rests on it (record.Checker.Rest) rather than
// keeping a copy of the chart and of its changes.
//
// A received change whose dependencies are neither held nor in its bundle
// is held aside (Received.Held, Held): not applied and not put in the log,
// so it is never forwarded (a peer could not apply it either) and never
// stops a snapshot. Held changes are kept per sending peer in the store's
// meta values, across restarts, and applied when a later bundle touching
// the chart brings what they wait for. They are bounded: MaxHeldPerChart,
// MaxHeldPerPeer, MaxHeldBytesPerPeer and MaxHeld; past a bound the oldest
// are dropped with a log line (an honest sender's changes are held only
// while bundles cross, and come again if they were not acknowledged).
//
// A change the chart cannot take (a sequence number reused or skipped, an
// operation on an object its history does not hold: package crdt judges
// every change as Automerge does) refuses its bundle with
// ErrMalformedBundle, and the bundle is kept in the quarantine, once
// however often it is tried again, and at most MaxQuarantinedPerPeer of
// one sender's.
//
// # Snapshots
//
// A chart is saved again once Config.CompactAfter changes, and half its
// history, have piled up on its snapshot, so the saves of a growing chart
// cost about twice its history in all. A snapshot is stored only once it
// has been read back and found to hold exactly the changes applied
// (crdt.Doc.SaveChecked). A stored snapshot that does not load (damaged
// on disk) is not fatal: the chart is rebuilt from its changes in the log,
// which keeps every change, and the next write stores a good snapshot; a
// stored change the chart cannot take (kept by an older build) is left
// out. Both are logged and counted (RebuiltCharts).
//
// # Search and duplicates
//
// Search finds patients by any words of their names, village, phone or
// identifiers, in any order, whatever the case and accents, and tolerant
// of common misspellings (package record/identity makes the keys and
// scores them). It looks the words' keys up in the store's index
// (store.Index.Search) and scores each candidate from its index entry,
// without loading a chart; ErrTooManyMatches asks for more words when a
// query would score more than MaxSearchCandidates charts. Duplicates and
// DuplicatesOf return the charts that may be the same patient as a
// registration not yet saved, or as a chart held, each scored with its
// reasons (same identifier, same phone, similar name with the same birth
// year and village); they load only the candidates that could reach the
// threshold. Like Find, neither filters by clinic scope: a replica lists
// what it holds. A database made before the index is indexed on open from
// names, village and national ID; Reindex, called once after such an
// upgrade, adds phones and identifiers.
//
// # Merging duplicate charts
//
// Merge merges chart B into chart A (a duplicate found by Duplicates or
// DuplicatesOf) as one durable write of both charts' changes: B's
// forwarding pointer, A's merge entry, and referrals so that each chart
// is in the other's clinics' scope (a merge of charts of two clinics
// makes the survivor visible to both). It needs a role permitted the
// merges section, both charts in a device's clinic scope, and is logged;
// the changes are signed and checked on receipt like any other. Unmerge
// undoes it. Chart, Edit and Preview follow the pointers (record.Survivor;
// charts merged into each other concurrently resolve to the smallest
// ID): Chart returns the survivor's view with every chart merged into it
// (record.Combine), and an edit of an entry of B is written to B's
// document, a new entry to A's. OwnChart reads one chart's own document.
// A chart's index entry carries its pointer among its search keys, so
// Search returns the survivor of a merged chart without loading it, once;
// duplicate candidates leave merged charts out. Merges and unmerges
// appear in both charts' history. Caveats: a merge entry in a chart this
// replica may not write (another clinic's) is not released by a merge
// settled here, and its view keeps a merge-conflict alert until a replica
// that may write it settles it; a chart merged while its survivor's
// changes have not arrived is shown alone (with the chain it was read
// through) until they do.
//
// # Clinic scope
//
// A cloud serves many clinics, and a clinic's devices may hold only the
// charts in its scope: each chart's home clinic and its referrals
// (record.Refer). MakeBundleFor with a Clinic sends only those charts,
// and when a chart joins the scope it sends the chart's earlier changes
// too (the store records, as a Grant, the log position where a clinic
// joined or left a chart's scope). ReceiveFrom refuses, whole, a bundle
// from another sender than the authenticated one (ErrWrongSender) or one
// that changes a chart outside the clinic's scope (ErrOutOfScope). Scope
// is judged causally: a clinic that loses a chart is sent the change that
// removed it, and edits its devices made before they learnt of it are
// accepted. On a device, Config.Clinic refuses such writes locally.
//
// A sync's cost follows its clinic, not the cloud. The store keeps its log
// by clinic too (store.LogQuery): the changes of the charts now in each
// clinic's scope. A bundle for a clinic's device reads those changes, less
// the ones the device itself sent, and the earlier changes of a chart that
// joined the scope through that chart's own changes; a change it does not
// send is not read at all, and its Upto still passes the positions it
// leaves out. With 100 busy clinics instead of 1, a device's sync read the
// same 30 changes (3,030 before) in about the same time (before: 127 ms
// instead of 1.3–4 ms), and one with nothing to receive read none (before:
// 2,970 changes, 160 ms): BenchmarkClinicSync. A bundle looks its peer's
// positions up by ID (store.Store.Peer), not among every peer.
//
// With ReceiveOptions.CheckAuthors (the cloud sets it) or
// Config.CheckAuthors (a device's app sets it), every new change is judged
// by record.CheckChange on what it actually writes: a bundle holding a
// change that its recorded role may not make is refused whole
// (ErrUnauthorizedChange) and kept for review (Quarantined).
//
// # Signed changes
//
// The replica's ID is the Automerge actor of every change it makes. With
// Config.Signer (the device's key pair, *device.Identity), each change is
// signed: an ed25519 signature over the chart ID and the change's hash,
// stored with the change. A change's hash commits to its whole history, so
// a bundle sends, per chart and device, only the signatures of the
// device's latest changes: an earlier change of the same device is
// covered by a later signed one in the bundle whose history (through the
// dependencies of the bundle's changes of that chart) holds it. A chart's
// first sync thus carries one signature, and costs one check, instead of
// one per change. A recipient keeps a cover marker with each covered
// change and passes it on the same way; a bundle is never cut between a
// covered change and its cover. A device sending its own changes of
// several charts signs them together: one signature over a Merkle tree
// whose leaves are its signed changes in the bundle that no later one
// covers (as a rule, its latest change of each chart), so that 50 charts
// edited offline carry one signature, not 50. The recipient checks the
// signature once and keeps with each of those changes its proof (the
// signature and the sibling hashes on its path to the tree's root), which
// verifies alone, so the change can be passed on without the others; a
// bundle carrying several changes of one tree carries its signature once,
// with only the sibling hashes its changes do not give (see batchsig.go).
// With
// Config.Keys (the devices a trusted authority enrolled, *device.Roster),
// every received change must carry a signature that verifies against a
// key its actor was enrolled with, or the bundle is refused whole with
// ErrForgedChange and quarantined: an unsigned change, a change credited
// to another device, or one moved to another chart. Bundles carry the
// signed enrolments of the devices whose changes they hold, and a replica
// keeps those it met in its store, so a device that has never met another
// can still check its changes, after a restart too. With author checks,
// the signer's clinic must also fit the document: a chart in that
// clinic's scope on the version the change was made on (or a clinic in
// Config.Unscoped, such as the cloud's), or that clinic's user roster.
//
// # Revoked devices
//
// A lost or stolen device is cut off by a revocation its authority signs
// (device.Authority.RevokeAccepting). "Before the revocation" is decided
// causally, never by the device's clock: the revocation names, per chart,
// the highest Automerge sequence number of the device's actor that the
// authority's replica held when it revoked (ActorSeqs), and the changes
// it accepts are exactly those: in each chart, the device's changes 1 to
// that number. (Sequence numbers count an actor's changes in one
// document, so one number per chart is needed; the device's changes to a
// chart the revocation does not name are all refused.) With Config.Keys
// that has Revocations (*device.Roster does), every received change of a
// revoked device is checked in the verify step, whatever carried it
// (HTTPS, a file, a relay bundle, another device's bundle): one past what
// the revocation accepts refuses the bundle whole with ErrRevokedChange
// (matching ErrForgedChange), kept in the quarantine, nothing applied.
// Changes it accepts keep flowing, through any replica that holds them.
//
// The revocation travels with the roster and with bundles: a bundle
// carries it with the revoked device's changes, and a bundle for a device
// carries the revocations of the devices of its clinic (or, for a
// recipient the sender's roster does not know, every revocation it
// holds), so it reaches a replica at its next sync with any replica that
// has it. What someone holding the stolen device can still do: nothing
// new is taken by a replica once the revocation has reached it. A replica
// the revocation has not reached yet may take the device's later changes
// and forward them; each replica holding the revocation refuses that
// bundle (once: it is quarantined like a forged one), and its answer
// carries the revocation. A replica that holds the revocation leaves out
// of the bundles it makes the changes that revocation refuses, and the
// device's earlier changes they vouched for go with their own stored
// signatures (or are left to the replicas that sent them), so its later
// bundles are taken and sync between honest replicas goes on. The refused
// changes stay in the store of the replica that took them (nothing is
// ever deleted), and that replica's own later changes to such a chart
// depend on them, so its peers hold those aside, unapplied, until an
// administrator looks at the chart. A revocation of the first format
// (device.Authority.Revoke) names no limit: its device's signed changes
// are all taken, as before, with a warning in the log.
//
// Over HTTPS a refused bundle gets no answer bundle, so the cloud's refusal
// itself carries the revocations the device lacks (httpsync's
// revoked-change answer); the device learns them (LearnRevocations), stores
// them with the revoked device's signer records, and its next bundle leaves
// the refused changes out. A change held aside for its dependencies is
// checked again, against the revocations known then, when a later bundle
// releases it. Revocation records may be far larger than enrolments (one
// naming 500 charts is about 10 KB): a bundle carries records up to
// MaxRevocationRecordBytes each and MaxLargeSignerBytes together.
//
// # Integrity, backup and restore
//
// Open runs SQLite's quick check, stopped after OpenCheckTime, and refuses
// a damaged database with ErrDamaged (a *DamagedError naming what SQLite
// found), which says to restore from a backup or repair from a peer;
// CheckIntegrity runs the full check, which also compares the indexes
// with their tables. Backup makes a consistent copy (VACUUM INTO) while
// the replica is in use. RestoreAs restores a backup as a new replica: a
// fresh ID, so no actor ever reuses a sequence number, and every peer's
// positions forgotten, so its peers send it everything it lacks, the lost
// device's changes made after the backup among them; it must be enrolled
// like a new device.
//
// # Copied data folders
//
// A data folder copied, or a backup put back with a file copy instead of
// RestoreAs, opens as the replica it was copied from, with an older log:
// its edits reuse its original's Automerge sequence numbers, and its
// peers' positions name changes it does not hold. Each bundle names the
// sender's change at Upto (UptoHash, 8 bytes of its hash); the recipient
// keeps it and hands it back (CheckAt, CheckHash) with its
// acknowledgements until a bundle of the sender shows it took that
// acknowledgement (its Base reaches it). A replica is found forked, and
// refuses from then on to register, edit, make or receive bundles with a
// *ForkedError (ErrForkedReplica), kept across restarts, when a peer's
// authenticated acknowledgement (ReceiveOptions.Sender, or a bundle its
// sender signed, checked against Keys) carries a check naming another
// change than the one it holds at that position, or none, or when a peer
// sends it a change of its own actor, signed by its own key, that it does
// not hold. An acknowledgement beyond its head alone, which a lying or
// buggy peer could write, is only left untaken (ErrImpossiblePosition), as
// are all positions on a replica without Keys, which cannot tell who
// wrote a bundle. A replica serving a clinic's devices (a receive with
// ReceiveOptions.Clinic, as a cloud's) is never found forked by a device:
// one device's word must not stop it for every other, and a cloud
// restored from a backup is sent its own lost changes back, which it
// takes. A recipient refuses
// a bundle carrying a change whose author already used its sequence
// number in that chart for another change with ErrForkedReplica (also
// matching ErrMalformedBundle, quarantined), naming the forked author.
// RecoverFork makes a new replica of a forked one under a fresh ID,
// keeping every change it holds; its peers send it what it lacks.
// Caveat: a chart the copy edited after its original had also edited it
// holds a change no peer takes (a reused sequence number); RecoverFork
// keeps it, and it must be entered again by hand.
//
// # Users
//
// A clinic's user roster (record.Users: user IDs, names, roles, argon2id
// password hashes, and what each role may not read) is a document
// replicated like a chart, to the clinic's devices: UpdateUser, SetHidden,
// Users, User and ReadPolicy. Only administrators the roster knows change
// it, except that a user may change their own password; checking replicas
// judge every roster change with record.CheckUsersChange. Find never lists
// rosters.
//
// # Usage
//
//	r, err := replica.Open(ctx, "clinic.db", replica.Config{})
//	id, err := r.Register(ctx, nurse, record.Register{...})
//	_, err = r.Edit(ctx, id, nurse, record.Prescribe{...})
//	stats, err := replica.SyncPair(ctx, r, cloud)
//
// # Caveats
//
// A replica's ID is its Automerge actor: two processes must never open the
// same database at once (Open refuses a second with ErrInUse; a Store
// given to New is the caller's to guard), and a database copied to another
// device must not be used by both. Snapshots are an optimisation of loading; every raw
// change stays in the log, which sync reads from.
//
// Signatures bind a change to a device, not to a person: the user and
// role recorded on a change are what the device's app says, and an
// enrolled device that is tampered with can still write what its clinic's
// roles may write. Changes stored before signatures existed are unsigned:
// a replica with Keys refuses them, so a deployment turns signing on from
// its start (there is no migration of unsigned history). An author check
// needs the change's dependencies: a change whose dependencies have not
// arrived is held aside (see Receiving) and judged once they have.
package replica
