// Package session is who is logged in on a clinic device, shared by the
// apps on it (a command line, a web app): logging in against the clinic's
// replicated user roster with the device's login.Guard, the roster's word
// on a logged-in user at every use, logout after a while without use, and
// the session file a command line keeps between commands.
//
// # Usage
//
//	p := session.Policy{Clinic: "kamuga", Device: "kamuga-tablet", Users: r, Guard: g}
//	au, err := p.Login(ctx, "u-achieng", password)   // a record.Author to sign changes with
//	...
//	if p.Expired(lastUse, time.Now()) { ... log out ... }
//	au, err = p.Author(ctx, au.UserID)                // at every request: disabled or removed users are out
//
// Login refuses with typed errors a caller can put in its own words:
// ErrNoUsers (the device has not received its clinic's roster), a
// *WrongPasswordError (ErrWrongPassword) saying how many more tries lock
// the name out, the guard's *login.LockedOutError, and ErrDisabled.
// A name not on the roster is checked against the guard's decoy hash and
// counted like a wrong password, so neither the answer nor its time says
// whether the name exists. Author refuses a user the roster no longer
// holds (ErrRemoved) or has disabled (ErrDisabled), and gives the role the
// roster has now.
//
// A File is the session of a command-line app between runs: JSON,
// written atomically, read strictly (a damaged file is ErrCorruptFile).
// File.Use ends a session unused for longer than its idle time, or whose
// last use is in the future (a clock set back), and otherwise records the
// use.
//
// # Caveats
//
// The policy does not keep the web app's sessions: those are the web
// app's own (cookies, CSRF tokens), and only ask the policy. A session
// file is not a secret that proves anything (who may write the device's
// data directory may write it); it is what the command line remembers,
// as a shared tablet's browser remembers a cookie.
package session
