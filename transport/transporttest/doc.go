// Package transporttest is the sync conformance suite every chartsync
// transport runs, as testing/fstest is for file systems.
//
// Run takes a function that joins two fresh replicas, A and B, through the
// transport under test (a Pair) and checks four things:
//
//   - Convergence: edits on both sides, concurrent edits to one chart
//     included, end in equal heads and byte-identical views after a
//     bounded number of Rounds, with concurrent additions kept and
//     concurrent values shown as conflicts.
//   - Idempotence: once acknowledgements have settled, more Rounds change
//     nothing, and a captured message delivered twice is applied once.
//   - Nothing lost: random edits on either side interleaved with Rounds;
//     every edit whose write returned nil is on both sides at the end.
//   - Bad input refused: a captured message truncated at several points,
//     bit-flipped at many positions, extended, replaced by garbage, or
//     empty is refused by B with an error matching one of Pair.BadInput,
//     and B's State is exactly what it was.
//
// Snapshot and RequireSame are exported for a transport's own tests.
//
// # Usage
//
//	func TestConformance(t *testing.T) {
//		transporttest.Run(t, func(t *testing.T) transporttest.Pair {
//			a, b := openTwoReplicas(t)
//			...
//			return transporttest.Pair{A: a, B: b, Round: ..., Capture: ..., Inject: ..., BadInput: ...}
//		})
//	}
//
// # Caveats
//
// The suite edits charts through package record and compares replicas
// through their public API only (chart index, heads, views, peer status),
// so it cannot see inside a transport: Round must leave no message from A
// in flight towards B, or Inject would deliver it with the bad input. It
// calls newPair once per subtest; clean up replicas and directories with
// t.Cleanup. With SQLite replicas on a slow disk the suite takes a few
// seconds; it allows up to 30 Rounds for convergence.
package transporttest
