// Package file carries sync bundles as files: on a USB stick, a shared
// folder, or anything else that moves files between machines that never
// see each other.
//
// Export writes the bundle a peer needs — every change it has not
// acknowledged, and an acknowledgement of what this replica holds from it
// — to a file named
//
//	cs-<sender>-<recipient>-<hash>.bundle
//
// with both replica IDs and the start of the content's SHA-256. The
// content is exactly the bundle replica.MakeBundle made (a versioned,
// length-framed, checksummed frame; see package replica). Import applies
// every file addressed to a replica; the reply file the peer exports then
// carries the acknowledgement back, and the next export for that peer
// leaves out what arrived. Link runs both halves over an outbox and an
// inbox directory as a transport.Link.
//
// Writes are atomic and durable: a temporary file in the same directory,
// fsync, rename, fsync of the directory; a failed export leaves nothing
// behind. A new export replaces the older files from the same sender to
// the same recipient, which it supersedes, so a directory holds at most one
// file per direction. Importing a file twice changes nothing: a file
// already applied (every position it carries already taken from its
// sender, every change already held) is refused by ImportFile with
// ErrReplayed, naming it, and passed over and reported by Import, since
// files stay in their folder until replaced. A truncated,
// damaged or renamed file is refused with an error matching ErrCorrupt or
// a replica sentinel, and changes nothing.
//
// # Usage
//
// At the clinic, with the stick mounted at /media/stick:
//
//	_, err := file.Export(ctx, clinic, hubID, "/media/stick/chartsync")
//
// At the hub, the same folder:
//
//	im, err := file.Import(ctx, hub, "/media/stick/chartsync")   // apply the clinic's file
//	_, err = file.Export(ctx, hub, clinicID, "/media/stick/chartsync") // reply with the acknowledgement
//
// Or, on both sides, a Link that does the two in turn:
//
//	link := file.NewLink(clinic, hubID, "/media/stick/chartsync", "/media/stick/chartsync")
//	stats, err := link.Sync(ctx)
//
// # Caveats
//
// Files are neither encrypted nor signed: anyone holding the stick can
// read them, and a replica applies any well-formed bundle it is given. Use
// transport/relay for bundles that pass through untrusted hands.
//
// Import never changes the directory it reads: refused files stay where
// they are and are reported again by each import until their sender's next
// export replaces them or someone removes them. Files are written with
// mode 0600; on a stick formatted with a Unix filesystem, the importing
// user must be able to read them. A crash during Export can leave a
// temporary file (".cs-*.tmp"), which Import ignores; it is safe to delete
// when no export is running.
//
// A file carries at most replica.Config.BundleBytes of changes; the rest
// goes in a later file, once the peer's acknowledgement has come back.
// Move a large backlog with a larger BundleBytes, or over several trips.
// Import holds the files of one directory in memory while applying them.
//
// To tell a file already applied, Import and ImportFile read the
// replica's positions for the file's sender from the bundle the replica
// would send it (made once before the file is applied, and once more when
// the file brought nothing): a cost in what the replica has for that
// sender, up to BundleBytes (BenchmarkImportReplayedFile: 13-17 ms with
// 200 charts unacknowledged, against 0.2-0.6 ms to apply the file).
package file
