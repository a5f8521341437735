// Package audit is the cloud's access log: an append-only file recording
// which device, and which user on it, read or wrote which patient chart,
// and when. Medical-records rules ask for one; an auditor asks for its
// export; and both must be able to tell that nothing was removed or
// changed after the fact.
//
// # Usage
//
//	log, err := audit.Open("/var/lib/chartsync/access.log", audit.Config{Logger: logger})
//	...
//	// once per sync: every chart sent, accepted or refused
//	err = log.Append(ctx,
//		audit.Entry{Action: audit.Read, Device: dev, Clinic: clinic, Chart: c1, Changes: 4},
//		audit.Entry{Action: audit.Write, Device: dev, Clinic: clinic, User: "u-achieng", Role: "nurse", Chart: c2, Changes: 2},
//		audit.Entry{Action: audit.Refused, Device: dev, Clinic: clinic, User: "u-otieno", Role: "lab-technician",
//			Chart: c3, Changes: 1, Detail: "lab-technician may not prescribe"})
//	...
//	// for the auditor: one chart's accesses in March, as CSV
//	n, err := log.Export(ctx, w, audit.Filter{Chart: c1, Since: march, Until: april}, audit.CSV)
//	...
//	// the auditor's own check of a copy of the file
//	n, err = audit.Verify(ctx, copyOfFile)
//
// Append validates every entry first (an *EntryError matching
// ErrInvalidEntry, and nothing written), then assigns Seq (1, 2, 3, ...)
// and, where Time is zero, the time from Config.Now, and writes all the
// entries of the call with one write and one fsync: when it returns nil
// they are on disk. A Log is safe for concurrent use and holds a lock on
// its file (ErrLocked for a second Open) so that there is one writer.
//
// # File format
//
// One JSON object per line ("JSON Lines"), with these keys in this order:
//
//	{"seq":1,"time":"2025-03-04T09:30:00Z","action":"write","device":"8f3a0c...","clinic":"kamuga",
//	 "user":"u-achieng","role":"nurse","chart":"c-17","changes":2,"detail":"","prev":"0000...0000"}
//
// (shown on two lines here; one line in the file). prev is the SHA-256, in
// hex, of the previous line's bytes without the newline, or 64 zeros on
// the first line: a hash chain. Each entry has exactly one encoding (keys
// in this order, strings escaping only '"' and '\', time in UTC as
// time.RFC3339Nano writes it), and readers refuse any other, so this
// package, encoding/json and jq all see the same entry in the same bytes.
// A line may hold at most MaxLineLen bytes; fields are bounded (MaxFieldLen,
// MaxDetailLen) and may not hold control characters, newlines included.
//
// Open, Export and Verify check the whole chain: that each line decodes,
// that seq counts 1, 2, 3, ... and that prev matches the line before. An
// edited, deleted, reordered, duplicated or inserted line, or a damaged
// one, gives a *CorruptError (matching ErrCorrupt) naming the line where
// the chain breaks; Open then leaves the file as it is. The one repair is a
// last line with no newline, which only a crash in the middle of an
// Append can leave (the Append did not return, so nothing acknowledged is
// lost): Open cuts it off and says so through Config.Logger. Open streams
// the file, holding one line at a time.
//
// Export writes the selected entries as JSON Lines (the stored lines
// themselves; an export of everything is a copy Verify accepts) or as CSV
// with a header row, checking the chain as it reads.
//
// A log kept elsewhere than a file builds the same records with Chain.Next
// and checks them with ExportLines; package audit/pgaudit keeps one in
// PostgreSQL, for several cloud nodes appending to one chain.
//
// # Caveats
//
// A hash chain shows that the records agree with each other, not that
// they are the whole story: someone able to write the file can cut off
// its last records, or rewrite every line after an edit with new hashes,
// and the chain will check. What catches that is a head kept elsewhere:
// record Log.Head (seq and the hash of the last line) now and then where
// the log's writers cannot reach it (a daily note to the records officer,
// another system's log), and have the auditor compare. The chain is not
// a signature and needs no key.
//
// A failed Append (disk full, an fsync error) returns its error and cuts
// the file back to its last acknowledged record. If the cut fails too,
// the Log refuses further Appends with ErrFailed until it is reopened, and
// whole lines of the failed call may survive, so a retried Append can
// record them twice, which an audit log can afford.
//
// Appends are serialised: two syncs finishing together cost two fsyncs one
// after the other. Entry times come from the caller or Config.Now and are
// not required to increase (a clock may step back), so Filter.Since and
// Until scan the whole log. A CSV export holds what the devices sent:
// opened in a spreadsheet, a field beginning with '=', '+', '-' or '@'
// may be taken for a formula. The lock on the file is flock(2), advisory,
// and absent on systems without it.
package audit
