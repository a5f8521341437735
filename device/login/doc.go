// Package login lets nurses and clinicians log in to a clinic device that
// has no network: it hashes and checks passwords, and it limits guessing
// with a per-name failure count and lockout that survive restarts.
//
// # Hashes
//
// Hash derives an argon2id key (golang.org/x/crypto/argon2) with a 16-byte
// random salt and writes it as a PHC string,
//
//	$argon2id$v=19$m=19456,t=2,p=1$<salt>$<key>
//
// which is what the replicated user roster stores for each person. Verify
// checks a password against one in constant time. Hashes arrive from other
// devices, so the parser is strict (one canonical form, every number
// bounded before use) and Params.Validate's bounds hold for what it
// accepts: whatever a peer sends, checking a password allocates at most
// MaxMemory (64 MiB) in at most MaxThreads (4) lanes and runs at most
// MaxWork (64 MiB × 4 passes; at most MaxTime, 10, passes), what a 2 GiB
// tablet can afford at every login, and a string out of bounds is a
// *MalformedHashError (ErrMalformedHash), refused before anything is
// computed. The replicated user roster (package record) refuses, as an
// invalid change, a hash whose parameters are outside these bounds.
// DefaultParams (19 MiB, 2 passes, 1 lane; OWASP's minimum) suit low-end
// laptops and phones. Passwords are 8 characters to 1024 bytes.
//
// # Lockout
//
// A Guard, opened on a state file with OpenGuard, is the way in: Login
// refuses a locked name at once (a *LockedOutError, ErrLockedOut) without
// checking the password, checks the password otherwise, and counts
// failures. With the zero Policy, 5 failures in a row lock a name for 1
// minute; each further lockout lasts twice as long, up to 1 hour; a
// successful login forgets the name's failures and lockouts, and so does
// a day without failures. An administrator lifts a lockout with Unlock.
//
// Names not on the roster are answered exactly like wrong passwords: the
// caller passes an empty hash, Login checks a decoy hash so that the
// attempt takes as long (set Policy.DecoyParams to the roster's
// parameters), counts the failure and locks the name alike, so neither
// the reply, nor its timing, nor a lockout tells whether a name exists.
//
// # State file
//
// The state is one JSON document per device, written through package
// internal/atomicfile (temporary file, fsync, rename, fsync of the
// directory) after every counted attempt and before Login returns, so
// killing the app mid-attempt loses nothing:
//
//	{"format":"chartsync-login-guard","version":1,"users":[
//	  {"user":"amina","failures":5,"level":1,
//	   "last_failure":"2026-03-01T14:00:00Z","locked_until":"2026-03-01T14:01:00Z"}],
//	 "sha256":"<hex SHA-256 of the document without this field>"}
//
// failures is the count of failed logins in a row, level the number of
// lockouts so far (the next lasts Lockout×2^level), last_failure the time
// of the last failure and locked_until the end of a lockout in force. It
// is decoded strictly: known fields only, each once, the users counted
// (at most MaxUsersLimit) before they are decoded, every value bounded,
// the checksum matching, at most MaxStateSize bytes. A file that fails
// any of this is ErrCorruptState: OpenGuard refuses it rather than start
// with every lockout forgotten. The app should show the error and offer an
// administrator (who proves who they are with Verify against their own
// hash) to call ResetGuard, which removes the file, and open the Guard
// again. If a write fails, Login refuses with ErrStateNotSaved, whatever
// the password.
//
// The file holds at most Policy.MaxUsers names (10,000 by default). A new
// name's failure drops the unlocked name whose last failure is oldest; if
// every name is locked, an attempt for a name not in the file is refused
// with ErrTooManyLockouts until a lockout ends or an administrator
// unlocks.
//
// # Clock
//
// An offline device has no time but its own clock. If the clock reads
// earlier than a name's last failure (it was set back, or reset by a flat
// battery), the Guard cannot tell how much time has passed and assumes
// none: a lockout restarts for its full length from the present reading
// (never more than MaxLockout), counts are kept, and the record is
// re-dated to the present reading, so that this happens once. A clock set
// back therefore never lifts a lockout early, nor locks a name for longer
// than one lockout after the reset.
//
// # Usage
//
//	// Once, when a person's password is set (the roster keeps the hash):
//	hash, err := login.Hash(password, login.DefaultParams)
//
//	// On the device, at start-up:
//	guard, err := login.OpenGuard(filepath.Join(dataDir, "login-state.json"), login.Policy{}, nil)
//	if errors.Is(err, login.ErrCorruptState) {
//		// show err; an administrator may call login.ResetGuard
//	}
//
//	// At each login (hash is "" for a name not on the roster):
//	err = guard.Login(name, hash, password)
//	switch {
//	case err == nil: // logged in
//	case errors.Is(err, login.ErrLockedOut), errors.Is(err, login.ErrWrongPassword):
//		// show err.Error(): it says what to do next
//	}
//
// # Caveats
//
// A clock set forward does shorten a lockout; protect the device's clock
// setting with its own administrator lock. Anyone who can delete or
// replace the state file can reset every count: keep it in the app's
// private storage (it is written 0600). Names that failed, including
// mistyped ones, or a password typed into the name field, stay in the file
// in plain text until forgotten. The Guard keys counts by the exact name
// it is given: pass the roster's own spelling. Passwords are compared byte
// for byte (normalise to NFC first if keyboards differ). Several Guards,
// in several processes, may share a state file: each login takes an
// exclusive lock beside it (flock; on systems without it, only one
// process may use the file). Logins are checked one at a time: each
// holds the lock while its hash is computed. A decoy with other
// parameters than the roster's hashes takes a different time.
package login
