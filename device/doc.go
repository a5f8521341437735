// Package device gives each chartsync device an identity and tells every
// replica which devices to believe.
//
// # Identity
//
// A device runs one replica. Its Identity binds that replica's ID (which is
// also the Automerge actor of every change it makes) and its clinic to two
// secret keys: an ed25519 key that signs (relay bundles, enrolment
// requests, and the TLS handshakes that authenticate the device to the
// cloud), and an age X25519
// identity that decrypts what other devices encrypt to it. Generate makes
// one; Save writes it to a file readable by its owner only (0600), atomically
// (temporary file, fsync, rename, fsync of the directory); Load reads it
// back and refuses a file others can read. Public is what others may know:
// replica ID, clinic, signing key and age recipient.
//
// # One identity for every courier
//
// The same Identity authenticates the device to the cloud over HTTPS: the
// cloud's device CA (package transport/httpsync) issues the device's TLS
// client certificate for its ed25519 signing key, from the same
// enrolment request that the enrolment authority signs, and TLS signs
// the handshake with TLSSigner. So a device has one key pair for mutual
// TLS and relay signing, one age key for relay encryption, one request to
// hand over and one fingerprint to read out. The reason is that private
// keys never leave the device: they are generated on it and saved 0600
// there, and nothing that travels (requests, enrolments, rosters, the
// cloud's credential file) holds a secret, so a copied file lets no one
// act as the device. TLSSigner is a crypto.Signer that does not expose the
// key and refuses to sign messages that begin like this package's purpose
// signatures, so a TLS signature can never pass for a relay or enrolment
// signature (TLS 1.3 signs messages beginning with 64 spaces).
//
// Every signature names its purpose ("enrolment/v1", "relay/v1", ...): the
// message signed is "chartsync/" + purpose + a zero byte + the message, so
// a signature made for one purpose never verifies as another. Signatures
// are plain Ed25519 (crypto/ed25519), which any platform can check.
//
// # Enrolment
//
// An Authority (the cloud's key, or a hub administrator's) enrols a device
// by signing an Enrolment: replica ID, clinic, signing key, age recipient,
// issued and expiry times, and the authority's own public key. The signed
// record is a small file that needs no further protection: it can be
// handed over on a USB stick or over Bluetooth, so a clinic that has never
// been online is enrolled like this:
//
//  1. the clinic device runs Generate and writes Identity.Request (or
//     its text form, RequestPEM), its public identity signed with its own
//     key (proof that it holds it);
//  2. the request travels to the hub (USB stick, relay phone); the hub
//     administrator checks it (ParseRequest, and the clinic's word for the
//     Fingerprint of its key) and signs it (Authority.EnrolRequest);
//  3. the hub hands back the enrolment file and a roster file
//     (Roster.Encode) holding the enrolments of the hub and every device
//     the clinic will exchange bundles with; the clinic merges them
//     (Roster.Merge).
//
// The only thing a device must get from a trusted hand is the authority's
// public key (TrustedAuthority), installed with the app or compared by
// Fingerprint; everything else proves itself. A device with signal is
// enrolled the same way by the cloud, whose credential file carries the
// enrolment, the roster and the authority key alongside the TLS
// certificate (see transport/httpsync).
//
// # Roster
//
// A Roster holds, per replica ID, the enrolment in force, each verified
// against the trusted authority keys. Lookup returns a sender's keys or
// ErrUnknownDevice, ErrExpired or ErrRevoked; Add and Merge refuse forged
// records (ErrBadSignature), records of untrusted keys
// (ErrUnknownAuthority) and records an authority may not sign
// (ErrOutOfScope: a hub key limited to its clinics). A record issued later
// replaces an earlier one for the same replica (new keys after a lost
// phone; Authority.RevokeAccepting to cut a device off), and records
// settle the same way whatever order they arrive in.
//
// # Revocation
//
// A revocation (Authority.RevokeAccepting) names the last of the device's
// changes the authority accepts, decided causally, not by any clock: per
// chart, the highest Automerge sequence number of the device's actor (its
// replica ID) the authority's replica held when it revoked. A roster that
// holds it answers AcceptedUpTo(replica, chart) with that number, and the
// replica refuses the device's changes past it (package replica,
// ErrRevokedChange) on every path they arrive by; changes up to it stay
// valid and keep flowing. The record travels as enrolments do: in roster
// files, with the device's changes (SignerEnrolments returns it after the
// device's keys), and with any bundle to a device of its clinic
// (RevocationsFor); LearnSigner takes it as Add does, so Lookup then
// gives ErrRevoked there too. Someone holding a stolen device gets
// nothing new accepted by a replica the revocation has reached; a replica
// it has not reached may take and forward the device's later changes,
// which every replica holding the revocation refuses (see package
// replica for what then happens to the forwarding replica).
//
// A revocation naming its accepted changes is an enrolment file of format
// version 2 (flag 2, then the accepted charts in increasing order, each
// with its number); enrolments and revocations of the first format stay
// version 1, readable by every build. It may hold up to
// MaxRevocationBytes (a device that changed tens of thousands of charts).
// A revocation of the first format (Authority.Revoke, and every record
// made before version 2) names no limit: AcceptedUpTo gives
// math.MaxUint64, so its device's signed changes are still accepted, as
// they were, and package replica logs a warning for them; revoke such a
// device again with RevokeAccepting to limit them.
//
// # Revoking an authority
//
// A hub administrator's key enrols devices offline, so a stolen one
// could enrol devices of the thief's. The cloud's authority (or any
// trusted authority that may enrol every clinic the hub may, and more)
// revokes it with Authority.RevokeAuthority, deciding "before" causally,
// as for a device: the revocation names, by RecordDigest, the records of
// the hub's key its signer holds when it revokes (the enrolments, and
// revocations, it took of the hub). A roster holding it
// (AddAuthorityRevocation; Add and Merge take it too) refuses every
// other record of that key, whenever signed, with ErrRevokedAuthority
// (which also matches ErrRevoked), those it had taken before the
// revocation arrived too: each device settles again on its records not
// refused, so a device the hub enrolled before keeps its listed
// enrolment (a renewal the thief signs is refused, the device stays in
// force), and a device revocation the thief's record had displaced is in
// force again. A device whose every record is refused (one the thief
// enrolled) is looked up as ErrRevokedAuthority, and counts as a
// revoked device accepting none of its changes (AcceptedUpTo gives 0,
// true; VerifyChange verifies its signatures, as it does a revoked
// device's), so every checking replica refuses its changes
// (replica.ErrRevokedChange) on every path, and one that took them
// before it learnt the revocation leaves them out of its bundles. A key
// a refused record gave a device in force by another record verifies no
// change (ErrRevokedAuthority). The revocation travels as a device's
// does: first in roster files (Encode), with every bundle
// (RevocationsFor gives it to every recipient, first), and with the
// records of a device its key enrolled (SignerEnrolments, first);
// LearnSigner takes it. An authority cannot revoke itself, and a key of
// every clinic (the cloud's) is never revoked (ErrOutOfScope); a key
// this roster does not trust may be revoked by an authority of every
// clinic only (the record is kept, to pass on). Records of a revoked
// key's own revocations of other authorities are refused like its
// other records. A later revocation of the same key (one accepting
// more) replaces an earlier one.
//
// An authority revocation is a file of its own kind ('H', version 1):
// the signer's key, the revoked key, the time, then the accepted records'
// digests in increasing order, and the signature (purpose
// authority-revocation/v1); at most MaxRevocationBytes (about 32,000
// records).
//
// # Change signatures
//
// A device signs every chart change it makes (Identity.SignChange, purpose
// change/v1, over the chart ID and the change's hash), and a Roster checks
// such signatures (VerifyChange) with any key the device was ever
// enrolled with: a change stays its device's after the enrolment expires,
// is revoked, or is replaced by one with new keys (which of a revoked
// device's changes are still accepted is AcceptedUpTo's to say). VerifyChange returns
// the clinic the device signed as, for the caller to check the change is
// that clinic's to make. SignerEnrolments gives the records that carry a
// device's keys, for a replica to send along with its changes, and
// LearnSigner takes them in on the other side. Package replica uses both
// (replica.Signer, replica.Keys).
//
// File formats are frames of package internal/wire (versioned, length
// framed, checksummed). No header is trusted for allocation: a file over
// its limit (1 KiB for keys, enrolments and requests, MaxRosterBytes for a
// roster) is refused by its size before it is read; a roster frame may
// claim a body of at most 16 times its size (its records are keys and
// signatures, which do not compress), and a record count no larger than
// records of the smallest enrolment could fill; records are appended as
// they decode. A file that claims more than it holds is ErrMalformed, one
// over a limit ErrTooLarge. FuzzDecodeEnrolment, FuzzParseRequest,
// FuzzMergeRoster, FuzzDecodeIdentity, FuzzDecodeAuthority and
// FuzzDecodeAuthorityRevocation exercise the decoders, starting from the
// real files in testdata/fuzz.
//
// # Usage
//
//	cloud, _ := device.NewAuthority()
//	id, _ := device.Generate(r.ID(), "kamuga")
//	_ = id.Save("kamuga.key")
//	enrolment, _ := cloud.EnrolRequest(id.Request(), time.Now(), 365*24*time.Hour)
//	roster, _ := device.NewRoster(device.RosterConfig{
//		Authorities: []device.TrustedAuthority{{Key: cloud.PublicKey()}},
//	})
//	_, _ = roster.Add(enrolment)
//	pub, err := roster.Lookup(r.ID())
//
// # Caveats
//
// Expiry follows the local clock; an offline device whose clock runs far
// ahead treats enrolments as expired, one whose clock runs behind keeps
// believing them longer. Enrolments are not checked for "not before".
// Revocation only takes effect where the revocation record has arrived.
// A build before authority revocations refuses, as malformed, a roster
// file holding one (it keeps the records it had), and skips one sent
// with a bundle. An authority revocation names the records its signer
// held: a device the hub enrolled that the signer never saw is refused
// with the thief's, and must be enrolled again.
// A revocation's accepted sequence numbers are the device's own claims in
// its changes: a stolen device that makes a different change under a
// number already accepted is refused by every replica holding the
// accepted one (Automerge refuses a second change with the same number),
// but may be taken by a replica that holds neither. A bundle carries
// revocations up to replica.MaxRevocationRecordBytes each (as large as
// MaxRevocationBytes), those over replica.MaxSignerBytes at most
// replica.MaxLargeSignerBytes together; one left out for that bound
// reaches a replica with the roster, or with a bundle carrying fewer. A
// replica of a build before these bounds refuses, as malformed, a bundle
// carrying a record over replica.MaxSignerBytes. An
// identity file is protected by file permissions only, not by a
// passphrase. The age keys are X25519, as the transports' design asks;
// age's post-quantum hybrid keys would be a new format version.
package device
