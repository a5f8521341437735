// Package transport moves sync bundles between chartsync replicas.
//
// The sync engine in package replica decides what to send (MakeBundle) and
// applies what arrives (Receive); a transport only carries the bytes. Link
// is the one interface every courier implements: its Sync runs one cycle
// from the local side, applying what has arrived from the peer and handing
// the courier the bundle the peer needs. Couriers live in subpackages:
// transport/file writes bundles to removable media, transport/httpsync
// carries them over HTTP, transport/relay through untrusted hands. This
// package also holds Memory, an in-memory courier for tests, and
// transporttest, the conformance suite every courier runs.
//
// # Usage
//
//	net := transport.NewMemory()
//	ab, ba := net.Link(clinic, cloud.ID()), net.Link(cloud, clinic.ID())
//	_, err := ab.Sync(ctx) // clinic applies what came, posts its bundle
//	_, err = ba.Sync(ctx)  // cloud applies it, posts its answer
//	_, err = ab.Sync(ctx)  // clinic applies the answer and acknowledgement
//
// A test cuts the network with Partition, loses, repeats or reorders
// bundles with Drop, Duplicate, Reverse and Rearrange, forges them with
// Inject, or sets random Faults.
//
// # Caveats
//
// A bundle carries at most replica.Config.BundleBytes of changes, and the
// rest follows only once the peer has acknowledged the first part, so a
// one-way courier moving a large backlog needs several round trips or a
// larger BundleBytes. Memory keeps every bundle posted until it is received
// or dropped; it is for tests, not production.
package transport
