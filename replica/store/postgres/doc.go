// Package postgres is chartsync's store on PostgreSQL, for a cloud that
// runs as several stateless nodes over one database. It passes the same
// conformance suite (storetest) as the SQLite and memory stores.
//
// It uses github.com/jackc/pgx/v5 and its connection pool (pgxpool): pgx
// speaks PostgreSQL's protocol natively, so a write's statements go to the
// server in two pipelined round trips plus its COMMIT, and its errors carry
// the server's SQLSTATE codes, which decide what became of a failed write.
//
// # Usage
//
//	st, err := postgres.Open(ctx, "postgres://chartsync:secret@db.example:5432/chartsync", postgres.Config{})
//	r, err := replica.New(ctx, st, replica.Config{})
//
// Open applies the schema migrations it lacks (see SchemaVersion) in one
// transaction under an advisory lock, so several nodes may start at once
// against one database; a database migrated by a newer version is refused
// with ErrSchemaTooNew. Config.Schema keeps the tables in a schema of their
// own. Ready tells a health check whether the database answers and is
// migrated; Stat gives the pool's figures.
//
// # Search
//
// The table chart_keys holds a row (key, chart) per search key of each
// patient's chart (store.Chart.Keys), and charts.keys the chart's keys as
// last written. Write replaces a chart's rows (those it lost deleted,
// those it gained added) under the log head's lock, in the batch's
// transaction. Search reads, per lookup, one range of chart_keys' primary
// key ("C" collation: byte order), unites a term's ranges, intersects the
// terms, and only then reads the charts found. Migration 2 builds the
// table from the charts' entries (store.EntryKeys).
//
// # Log positions in commit order
//
// Several nodes write to the log at once, and a peer that reads the log
// up to position N and acknowledges it must never later find a change
// below N it did not see. A PostgreSQL sequence would not do: it hands out
// numbers when a transaction asks, not when it commits, so a slow
// transaction holding 7 can commit after a fast one holding 8, and a
// reader between the two commits sees 8 and moves past 7 for good.
//
// Instead the log head is one row (log_head), and every write that adds
// changes or grants, or writes chart index entries (which move changes in
// and out of the clinics' logs), locks that row (SELECT ... FOR UPDATE)
// and keeps the lock until it commits. It reads the head, gives its new
// changes the next positions, and moves the head in the same transaction.
// A writer waiting for the lock gets it only after the holder's commit is
// visible, so positions are handed out, and become visible, in commit
// order, without gaps: every snapshot of the database that shows position
// N shows every position below it. Head reads the row, so the head and the
// changes up to it become visible together. TestLogHasNoGapFilledLater
// runs writers on three stores over one database while readers tail the
// log and a clinic's log, and checks that no reader ever misses a
// position behind it (with a sequence it fails at once).
//
// The cost: such writes are serialised across all nodes from the moment
// they take the lock until their commit is flushed to disk, so the log's
// write rate is bounded by one commit at a time, whatever the number of
// nodes; PostgreSQL's group commit cannot merge them. Each write takes the
// lock as late as it can: its first round trip sends what needs no
// position (peers, meta, quarantined bundles) and then the lock, so the
// lock is held for the rest of that round trip, the second one (the
// changes, the index entries, snapshots and grants) and the COMMIT with
// its WAL flush. Writes that record only peers, meta, quarantined bundles
// or snapshots do not take it. A batch of many changes holds it little
// longer than a batch of one, so the sync engine's batching keeps the
// cost per change low. Reads take no lock. On a 2-core machine with the
// server on loopback (BenchmarkWrite, BenchmarkWriteParallel), that is
// about 650 to 850 durable writes of one change a second, from one
// goroutine or eight (SQLite: about 1,950), and about 10,000 changes a
// second in batches of 100 (SQLite: 18,000); over a network each write
// holds the lock for two more round trips.
//
// # When a write fails
//
// A Write is one transaction at READ COMMITTED with synchronous_commit on
// (set for every connection, whatever the database's default), so a nil
// error means the commit record was flushed to the server's disk.
//
//   - Before COMMIT (a statement fails, the context ends, the connection
//     drops): the transaction is rolled back, nothing is stored.
//   - COMMIT is answered with an error, or was never sent: nothing is
//     stored.
//   - The connection is lost after the COMMIT was (perhaps partly) sent:
//     the server may have committed. The store knows the transaction's ID
//     (pg_current_xact_id, read in its first round trip) and asks the
//     server on another connection (pg_xact_status) whether it committed
//     or aborted. A COMMIT the server took is a successful write; one it
//     did not is an error that stored nothing. While the old session is
//     still open and waiting for its client, the COMMIT never reached the
//     server whole: the store ends that session (pg_terminate_backend),
//     which rolls it back, and asks again. Only when no answer comes
//     within Config.OutcomeTimeout (the server stays unreachable) does the
//     error match store.ErrOutcomeUnknown; reads made once the server is
//     back show which it was.
//   - The server reports that its disk is full (SQLSTATE 53100): the error
//     matches store.ErrDiskFull. Reads keep working.
//
// # Testing
//
// The tests need a server: set CHARTSYNC_TEST_POSTGRES to a connection
// string (eval "$(.ci/postgres start)" starts a throwaway one and sets it).
// Without it they skip, saying so, except under CI, where they fail. Each
// test runs in a schema of its own (package pgtest), dropped at its end.
//
// # Caveats
//
// The durability of a write is the server's: with fsync or
// full_page_writes turned off in postgresql.conf, a crash of the server's
// machine can lose acknowledged writes.
//
// A snapshot's Seq is the log head when it is written; the store cannot
// know whether the snapshot's data holds a change another node committed
// between the moment the caller read the chart and that write. The store
// contract leaves this to the caller (a snapshot must hold every change of
// its chart up to its Seq). Writers on several nodes keep it with
// store.Batch.Expect: the heads each chart's index entry held when the
// writer read the chart are checked under the log head's lock, and a batch
// whose chart another node changed since is refused whole (ErrConflict),
// so its snapshot is never stored. A replica does this with
// replica.Config.SharedStore.
//
// Peer positions are stored as bigint, bit for bit: one above 2^63 reads
// back as written, but sorts as negative in SQL. Log positions never come
// near it.
package postgres
