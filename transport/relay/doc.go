// Package relay carries replica bundles through untrusted hands: phones
// that walk from village to village, shared folders, USB sticks. Relays
// can read nothing and forge nothing, a bundle that arrives twice changes
// nothing, and a bundle may take any route, in any order, through any
// number of hops, until it expires.
//
// # Relay bundles
//
// A relay bundle wraps one replica bundle (replica.MakeBundle) for one
// recipient replica:
//
//   - a header anyone can read: format version, kind (changes or
//     acknowledgement), sender, recipient, a random bundle ID, created and
//     expiry times, and a hop count;
//   - a body encrypted with filippo.io/age to the recipient's X25519
//     recipient, taken from its enrolment (package device);
//   - an ed25519 signature by the sender over the header (less the hop
//     count) and the encrypted body.
//
// The recipient checks, in this order: the format, that it is the
// recipient, that the bundle has not expired, that the sender is enrolled
// (device.Roster) and that the signature verifies against the sender's
// enrolled key — all before it decrypts anything — then that the
// decrypted replica bundle names the same sender and recipient as the
// signed header (so one enrolled device cannot pass off another's log),
// and only then hands it to replica.Receive (an Endpoint), or back to its
// caller (Unseal). Each refusal is a typed error
// (see BadInput) and changes nothing.
//
// The hop count is deliberately outside the signature: every relay
// increments it, and no relay holds the sender's key. It is advice for
// honest relays (NodeConfig.MaxHops stops a copy circling for ever); a
// dishonest relay that lowers or raises it can do no more than it could by
// dropping or keeping the bundle, and the lifetime bounds how long any copy
// lives. Recipients never look at it. The frame's CRC covers it, so a
// flipped bit is still caught.
//
// # Bounds
//
// Nothing read from a file is trusted for allocation. A file over
// MaxBundleBytes (a bundle) or 64 MiB (an endpoint's state) is refused by
// its size before it is read. A frame may claim a body of at most 16 times
// its size: bundles are ciphertext, signatures and random IDs, and state
// files JSON of hex IDs, none of which compresses more than 3 to 1, so a
// few bytes claiming megabytes are refused (ErrMalformed, as truncated)
// before anything is inflated, let alone a signature checked. Every field
// and count inside is bounded by what remains. FuzzParseRelayBundle and
// FuzzDecodeEndpointState exercise both decoders from real files in
// testdata/fuzz.
//
// # Nodes and carrying
//
// A Node is a directory: a phone's storage, a clinic laptop's outbox, a
// USB stick. What it holds lives in its "held" subdirectory as
// "<sender>-<id>.relay" files written atomically (temporary file, fsync,
// rename, fsync of the directory); file names are built from checked hex
// IDs only and every access goes through os.Root, so no name from outside
// can reach beyond the directory. Files that arrive from outside (in the
// node's directory itself or in NodeConfig.Inboxes, under any name ending
// ".relay") are adopted by Scan only once their signature verifies against
// the roster; files that fail are removed and reported, and other files
// are left alone.
//
// Carry(from, to) copies to a node every bundle it lacks, one hop further,
// in priority order: acknowledgements first (small; they let every node
// they reach drop what they acknowledge), then bundles of changes oldest
// first (they have waited longest and expire soonest). A bundle that does
// not fit in the destination's budget (NodeConfig.Budget) is skipped and
// smaller ones are tried. A node drops a bundle only when it expires or an
// acknowledgement of it arrives; it never evicts one for room.
//
// # Acknowledgements and pruning
//
// When a recipient has opened bundles of a sender, it puts in its node an
// acknowledgement addressed to that sender: a signed, unencrypted list of
// the bundle IDs, living as long as the longest-lived bundle it names.
// Relays read it and drop those bundles (only bundles from that sender to
// that recipient: one device cannot acknowledge another's mail), and
// refuse copies of them from then on; the sender's node drops them too.
// What was applied travels inside the next replica bundle, as the
// replica's own acknowledgement of positions (package replica), and that is
// what lets the sender stop resending changes.
//
// # Replays
//
// Both layers make a replay harmless. The endpoint remembers, in its state
// file, every bundle it opened (by sender and ID) until that bundle
// expires, after which any copy is refused as expired; and replica.Receive
// is idempotent, so a bundle opened twice (after a crash between applying
// it and remembering it) applies nothing new. Endpoint.Open of a bundle
// opened before is refused with ErrReplayed, naming it; Collect passes
// over a copy still in the node, which it acknowledges again.
//
// # Endpoints
//
// An Endpoint joins a replica to its own node. Sync collects (opens and
// acknowledges what arrived for the replica) and then sends: for each peer
// it puts a new relay bundle in the node when the peer needs one — there
// are changes or acknowledgements the last bundle did not carry, or the
// last bundle expired unacknowledged. Bundles in the node stay until
// acknowledged or expired, so a phone lost on the way loses nothing: the
// next carrier takes them again. Endpoint.Link(peer) is a transport.Link.
//
// # Recipients that apply bundles their own way
//
// A recipient that does not hand what it receives straight to its replica
// — a cloud serving many devices applies each bundle through its policy
// (package replica/gate), the same for every courier — opens relay bundles
// with Unseal: the same checks as an endpoint, in the same order, and the
// replica bundle inside with the sender's enrolment (its clinic), applied
// by nobody and remembered by nobody. Such a recipient keeps its own
// record of the bundles it applied (by Header.Key, until they expire) to
// refuse a replay with ErrReplayed, answers with Seal (a replica bundle
// sealed to the sender) and acknowledges with Acknowledge; a node adopts
// both like any bundle. The cloud's "import -from FOLDER" does this with a
// phone's relay folder.
//
// # Usage
//
//	roster, _ := device.LoadRoster("roster", device.RosterConfig{Authorities: trusted})
//	keys, _ := device.Load("device.key")
//	clinic, _ := relay.OpenEndpoint("relay", r, keys, roster, relay.Config{Peers: []string{hubID}})
//	_, err := clinic.Sync(ctx) // after edits, and after every carrier visit
//
//	phone, _ := relay.OpenNode("/sdcard/chartsync", roster, relay.NodeConfig{Budget: 200 << 20})
//	_, _, err = relay.Exchange(ctx, phone, clinic.Node()) // the phone visits
//
// # Bluetooth
//
// Bluetooth itself is outside this library: a node only needs the files
// to land in a directory it scans. On Linux, obexpushd receives OBEX
// pushes into a directory:
//
//	obexpushd -B -o /var/lib/chartsync/relay/inbox
//
// with that directory in NodeConfig.Inboxes (or the node directory
// itself); Scan, which Sync and Carry's callers run, adopts what landed.
// On Android, files received over Bluetooth land in the Bluetooth share
// folder (on most phones Download/Bluetooth, on older ones /sdcard/bluetooth):
// list it in NodeConfig.Inboxes of the phone's node. To send, share the
// files of the node's "held" directory (or the ones Items lists) with the
// phone's share sheet; any name ending ".relay" will do, since the
// receiving node renames them by their verified header.
//
// # Caveats
//
// Expiry follows each device's clock: a relay whose clock runs ahead drops
// bundles early (another copy usually survives at the sender), and a
// recipient whose clock runs behind accepts bundles a little late. Relays
// need a roster to verify what they carry; a phone whose roster lacks a
// newly enrolled device refuses its bundles until the roster is updated.
// Headers are in the clear: a relay sees who writes to whom, when, and how
// much. One replica bundle (Config.BundleBytes of replica) travels per
// exchange, so a backlog larger than that needs several visits. One
// directory must be used by one Node at a time.
package relay
