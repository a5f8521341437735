// Package liveroster keeps a server's device roster up to date while it
// runs: devices are enrolled, and revoked, in a roster kept elsewhere (a
// file, a database table several servers share), and a server must learn
// of them without a restart.
//
// A Roster is a device.Roster over a Source, which merges the records
// kept since a version. It looks at the source again:
//
//   - when it verifies a change (VerifyChange, replica.Keys) and last
//     looked more than Config.Refresh ago (30 s by default), so that a
//     revocation kept by another server is enforced on changes;
//   - when it verifies a change of a device it does not know (enrolled
//     since it last looked), before it refuses the change;
//   - when asked whether a device is revoked (CheckRevoked, at a device's
//     connection or request) and it last looked more than Config.CheckAge
//     ago; zero looks at every check, which suits a file whose
//     modification time is compared, and bounds how long a revocation
//     takes to be enforced at connection otherwise.
//
// A look that fails refuses what needed it with the source's error (a
// change is not verified against a roster known to be stale) and is tried
// again at the next use; the records merged so far are kept. The clock is
// Config.Now, so tests move it by hand.
//
// # Usage
//
//	r, err := liveroster.Open(ctx, src, liveroster.Config{
//		Roster:   device.RosterConfig{Authorities: trusted},
//		CheckAge: time.Second,
//	})
//	replica.Open(ctx, replica.Config{Keys: r, ...})
//	httpsync.Config{CheckDevice: func(ctx context.Context, d httpsync.Device) error {
//		if err := r.CheckRevoked(ctx, d.Replica); errors.Is(err, device.ErrRevoked) {
//			return fmt.Errorf("%w: %w", httpsync.ErrCredentialRevoked, err)
//		} else { return err }
//	}}
//
// # Caveats
//
// Looks at the source are made one at a time, under a lock: a slow source
// holds up every verification that needs a look. VerifyChange, which has
// no context, bounds its looks by Config.LoadTimeout. CheckRevoked
// refuses revoked devices only: an unknown device or an expired
// enrolment is for its caller to judge (a certificate the caller
// verified, a change signature). The embedded device.Roster may be used
// directly (Lookup, AcceptedUpTo, LearnSigner); it answers from the
// records last merged.
package liveroster
