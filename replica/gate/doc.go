// Package gate is a replica's policy for the enrolled devices it serves,
// the same whatever courier brings their bundles: the cloud's checks of
// who sent a bundle and what it may change, its admission of bundles a
// few at a time, and its access log.
//
// A courier authenticates the sender its own way and hands the gate a
// Sender (replica ID and clinic): HTTPS (transport/httpsync) from the
// device certificate of the channel; a file carried on a USB stick from
// the bundle's own signature (IdentifyBundle, against the roster of
// enrolled devices). From there everything is the gate's:
//
//   - Receive applies the bundle with replica.ReceiveFrom, within the
//     sender's clinic's scope, every change checked against its author's
//     role and (on a replica with Keys) signature and revocation, after
//     Config.CheckSender has said the sender is not revoked. A refused
//     bundle is quarantined by the replica.
//   - The access log (Config.AccessLog, an *audit.Log) records each
//     chart written, per author, before the changes are stored, so none
//     is stored unrecorded; each chart an answer carries, before the
//     answer is given; and each bundle refused for who sent it or what it
//     changes, with its code (Recorded). The entries are the same for a
//     bundle sent over HTTPS and one imported from a file.
//   - Answer makes the sender's bundle from its clinic's charts only.
//   - Admission: one bundle of a sender at a time (Enter), at most
//     MaxConcurrent being applied and answered, and of those a few at a
//     time in arrival order (Sync); a bundle that waits longer than
//     QueueWait is turned away (ErrBusy, ErrSenderBusy).
//   - Refusal codes (CodeOf): why a bundle was refused, as HTTPS sends
//     it to the device and as the access log records it.
//
// # Why a package of its own, under replica
//
// DESIGN.md's arrows run examples → transport → replica: a transport
// only moves bytes and never decides what to send, and replica knows
// nothing of HTTP or files. The policy decides what a device may send and
// is sent, so it belongs on the replica's side of the arrow, where every
// transport (and a command that imports a USB stick at the cloud) can
// call it; it imports replica, record and audit, and nothing of any
// transport. It is not in package replica itself because it is the
// policy of a replica serving many enrolled devices (a cloud), which a
// clinic device does not need, and because it owns concurrency (slots, a
// queue, turns) that the replica's pure sync core should not.
//
// What stays in a transport is its framing and its own resources: for
// HTTPS, TLS and the device certificate, statuses and headers, the bodies
// in transit (MaxTransfers, their pace) and the retrying round loop of its
// Client, which rests on HTTP's statuses (Retry-After, which refusals are
// final) and on TLS probes, and so is not shared.
//
// # Usage
//
// At the cloud, one gate for every courier:
//
//	g, err := gate.New(gate.Config{Replica: cloud, AccessLog: access, CheckSender: roster.CheckSender})
//	h, err := httpsync.NewHandler(httpsync.Config{Gate: g, DeviceCA: ca.Pool()})
//
// A bundle file from a USB stick:
//
//	s, err := gate.IdentifyBundle(data, roster) // the sender's signature
//	leave, err := g.Enter(ctx, s.Replica)
//	rec, err := g.Receive(ctx, s, data)          // checked and recorded as over HTTPS
//	out, err := g.Answer(ctx, s, gate.AnswerOptions{}) // the reply file's bundle
//	leave()
//
// # Caveats
//
// A courier that authenticates the channel (HTTPS) checks revocation
// itself, at every handshake and request, and may leave CheckSender nil;
// its refusals of a revoked or unknown device are then its own and not in
// the access log. A bundle IdentifyBundle cannot authenticate names no
// one, and is not recorded either. Config.AccessLog failing to record a
// refusal does not change the refusal: it is logged (Config.Logger).
// Admission is per Gate: several cloud nodes each admit MaxConcurrent.
package gate
