// Package pgaudit keeps the cloud's access log (package audit) in a
// PostgreSQL database, so that several cloud nodes on one database append
// to one hash chain.
//
// Each record is one row, holding the very line a file log would hold
// (audit.Chain encodes it), so an export is byte for byte what audit.Log
// would export and audit.Verify accepts it.
//
// # Usage
//
//	log, err := pgaudit.Open(ctx, "postgres://chartsync@db.internal/chartsync", pgaudit.Config{})
//	...
//	err = log.Append(ctx, audit.Entry{Action: audit.Write, Device: dev, Chart: c, Changes: 2})
//	...
//	n, err := log.Export(ctx, w, audit.Filter{Chart: c}, audit.CSV)
//
// A *Log is an httpsync.AccessLog.
//
// # How the chain stays whole with several writers
//
// The table audit_head holds one row: the Seq and hash of the last record.
// Append locks it (SELECT ... FOR UPDATE), encodes its entries after it,
// inserts them and moves the head in the same transaction. Appends from
// every node are thereby serialised through that row: each sees the head
// the previous one committed, and a record's seq is its primary key, so no
// two records can claim one place in the chain. Export and Verify read the
// head first and then the records up to it, in pages, and check that the
// chain they read ends exactly at that head: an edited, deleted or
// inserted row, or a head moved without its records, gives a
// *audit.CorruptError (audit.ErrCorrupt).
//
// Open creates the tables when missing, under an advisory lock, so nodes
// may start together.
//
// # Caveats
//
// The cost of one chain is that Appends from all nodes take turns: each
// holds the head row's lock through its commit (one synchronous commit, a
// WAL flush). A COMMIT whose answer is lost leaves the Append's outcome
// unknown: it returns the error, and a retry may record the entries twice,
// which an access log can afford. As with the file log, the chain shows
// that records agree with each other; someone who can write the tables
// can rewrite the whole chain, and only a head recorded elsewhere
// (Log.Head) catches that.
package pgaudit
