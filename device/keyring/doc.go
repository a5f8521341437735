// Package keyring keeps a clinic device's data key: the random 32-byte
// key its database is encrypted with (sqlite.Config.Key), which never
// touches the disk in clear. The key is kept only wrapped, in one keyring
// file: once for each clinic user of the device, under that user's
// password, and once for recovery, encrypted to an age recipient held by
// the cloud or an administrator, so that a device whose every password is
// lost can still be unlocked and none of its unsynced changes is lost.
//
// # Usage
//
// When a device is set up, Create makes the keyring (in the data
// directory, say "keyring") with the first user and the recovery
// recipient, and returns the new key; the app creates its database with
// it, or encrypts an existing one with sqlite.Encrypt. At each login,
// Unlock turns a user's password into the key, and the app opens the
// database with it:
//
//	key, err := keyring.Unlock(filepath.Join(dir, "keyring"), user, password)
//	if errors.Is(err, keyring.ErrWrongPassword) || errors.Is(err, keyring.ErrUnknownUser) { … }
//	s, err := sqlite.OpenConfig(ctx, filepath.Join(dir, "replica.db"), sqlite.Config{Key: key})
//
// A logged-in administrator, who holds the key, adds users (AddUser),
// removes them (RemoveUser) and sets a forgotten password anew
// (ResetPassword); a user changes their own password with the old one
// (ChangePassword). Recover turns the recovery identity into the key, and
// CreateForKey makes a new keyring for a key the device already has.
// Unlock limits no guessing: the app puts a login.Guard (package
// device/login) in front of it.
//
// # The file
//
// One JSON document, at most MaxFileSize (1 MiB), written atomically
// (temporary file, fsync, rename, fsync of the directory; package
// internal/atomicfile) with mode 0600; Create puts its file in place with
// a hard link, so that it never replaces a keyring that appeared meanwhile
// (on file systems without hard links, it checks and renames):
//
//	{"keyring":{"format":"chartsync-keyring","version":1,
//	   "key_check":"<base64 HMAC-SHA256 of a fixed label under the key>",
//	   "recovery":{"recipient":"age1…","age":"<base64 age file of the key>"},
//	   "users":[{"user":"amina","argon2id":{"memory":65536,"time":3,"threads":2},
//	             "salt":"<16 bytes>","nonce":"<24 bytes>","sealed":"<48 bytes>"}]},
//	 "sha256":"<hex SHA-256 of the bytes of the keyring value>"}
//
// Each user's entry is the key sealed with XChaCha20-Poly1305
// (golang.org/x/crypto/chacha20poly1305) under a key derived from the
// password with argon2id (golang.org/x/crypto/argon2), with a random salt
// and nonce of its own and its argon2id parameters stated beside it; the
// user ID is the associated data, so an entry moved to another user's
// name does not open. The recovery entry is the key encrypted with
// filippo.io/age to an X25519 ("age1…") or hybrid post-quantum
// ("age1pq1…") recipient. The key check lets AddUser, RemoveUser and
// ResetPassword refuse a key that is not the device's (ErrWrongKey), and
// Unlock and Recover refuse an entry that opens but holds another key.
// The checksum tells damage (ErrDamaged) from a wrong password.
//
// The decoder is strict and bounded: the size is checked before reading
// on, known fields only, nothing after the document, the checksum
// matching, users sorted, each once, at most MaxUsers, every length and
// every argon2id parameter within bounds (Params.Validate: at most
// MaxMemory, 128 MiB, and MaxWork) before any key is derived, so that
// no file, whoever wrote it, makes Unlock allocate or compute without
// bound. Whatever it refuses matches ErrDamaged, and nothing in this
// package writes a file it could not read.
//
// # What the disk gives away
//
// Someone who has the device's disk and no password (a stolen tablet)
// reads, from the keyring, the user IDs of the device's users, each
// entry's argon2id parameters, and the recovery recipient (a public key);
// from the data directory, the names and sizes of its files, and so the
// rough size of the database. The charts, their index, the pending
// changes, the quarantine and the keys the database holds are encrypted
// with the data key, which the file holds neither in clear nor in any
// form usable without a password or the recovery identity. To get it,
// they must guess a password against an entry offline, paying for one
// argon2id derivation per guess; a weak password remains the weak point.
//
// # Cost
//
// DefaultParams are 64 MiB of memory, 3 passes and 2 lanes: RFC 9106's
// second recommended choice (64 MiB, 3 passes) with as many lanes as a
// 2-core tablet has cores, so that both cores work on a login and the
// memory is what a 2 GiB tablet running the app spares for a moment.
// BenchmarkUnlock measured Unlock at 0.19 to 0.41 s on a shared 2-core
// x86 server (64 MiB and 3 passes with 1 lane: 0.16 to 0.23 s; OWASP's
// minimum, 19 MiB and 2 passes: 0.04 to 0.07 s); a low-end ARM tablet
// may be several times slower, around a second, paid once per login,
// not per action. Each guess costs an attacker the same 64 MiB and 3
// passes. Entries keep the parameters they were written with: a Config
// with others applies to the entries it writes from then on, and a
// password change re-seals the entry with the Config's.
//
// # Changing passwords
//
// ChangePassword and ResetPassword re-seal one entry (new salt, new
// nonce); the data key, and so the database, stay as they are: nothing
// is re-encrypted, and the change costs one derivation and one small
// file write. RemoveUser drops an entry the same way.
//
// # Recovery
//
// A device whose every password is lost (or whose keyring is damaged)
// keeps its database and its unsynced changes. Whoever holds the
// recovery identity (the cloud's or an administrator's age identity,
// kept off the device) runs Recover on the keyring file, on the device or
// on a copy of it, and gets the data key; with it they open the database
// as it is, and add a new user (AddUser) or set a password anew
// (ResetPassword). The recovery entry is in the keyring file, so a
// device whose keyring is lost or damaged is recovered from a copy of the
// file (it holds nothing readable without a password or the identity, so
// copies may travel with backups), and CreateForKey makes it a new
// keyring for the recovered key. A session that holds the key when it
// finds the keyring damaged can do the same without the identity.
//
// # Caveats
//
//   - Changes are read, modify, write of the whole file: callers make
//     them one at a time (the app holds its data directory's lock).
//   - A removed user, or an old password, still unlocks a copy of the
//     keyring made before the change (a backup, or flash blocks the file
//     system has not reused), and that key still opens today's
//     database, since the key does not change. After a password is known
//     to have leaked with the disk, the database must be re-encrypted
//     with a new key, which this package does not do.
//   - The recovery identity opens every device whose keyring names its
//     recipient, given the disk: keep it offline. A hybrid recipient
//     ("age1pq1…") protects the recovery entry against a future quantum
//     computer; an X25519 one does not.
//   - Passwords are compared byte for byte: normalise them (NFC) where
//     keyboards may compose accented letters differently. Unlock tells an
//     unknown user from a wrong password: the user IDs are in the file in
//     clear anyway.
//   - The key is returned as a byte slice; the caller should clear it
//     when done, though Go cannot promise no copy of it remains in memory.
//   - A recovery entry altered on purpose (with a checksum to match) may
//     read as ErrWrongIdentity rather than ErrDamaged: age cannot tell a
//     damaged recipient stanza from one for another identity.
package keyring
