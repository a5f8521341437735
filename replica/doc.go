// Package replica holds many patient charts durably on one device or
// server and syncs them with peers over any courier.
//
// A Replica stores every raw change in a Store (SQLite by default, see
// Open), loads charts on demand into a bounded LRU cache, compacts charts
// into snapshots as changes pile up, and edits them through package
// record's typed operations, one durable transaction per edit.
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
// 1): sender and recipient IDs (16 bytes each), the positions Base, Upto,
// Head and Ack as uvarints, a change count, then per change the chart ID
// (16-byte UUID) and the length-prefixed raw change.
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
// With ReceiveOptions.CheckAuthors (the cloud sets it), every new change
// is judged by record.CheckChange on what it actually writes: a bundle
// holding a change that its recorded role may not make is refused whole
// (ErrUnauthorizedChange) and kept for review (Quarantined).
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
// same database at once, and a database copied to another device must not
// be used by both. Snapshots are an optimisation of loading; every raw
// change stays in the log, which sync reads from.
package replica
