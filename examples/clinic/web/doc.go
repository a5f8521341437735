// Package web is the clinic app as a web app: a server the device runs for
// its own browser on 127.0.0.1, working with no network at all, on top of
// the device's replica.
//
// Pages are rendered on the server with html/template; the templates and
// the one stylesheet are embedded in the binary, nothing is loaded from
// the internet, and no action needs JavaScript. Every page is one column,
// usable on a phone and on a laptop.
//
// # Usage
//
//	srv, err := web.New(web.Config{Replica: r, Clinic: "kamuga", Device: "kamuga-tablet", Guard: g})
//	if err != nil { ... }
//	http.Serve(listener, srv) // a listener on 127.0.0.1
//
// Staff log in with the clinic's users (the roster's argon2id hashes,
// checked by the device's login.Guard with its lockout). A session is a
// random 32-byte ID in an HttpOnly, SameSite=Strict cookie naming a
// session kept in the server's memory; it ends at logout, after
// Config.IdleTimeout without a request (15 minutes by default), and as
// soon as the roster disables its user. Every form carries the session's
// CSRF token, and a POST without it is refused with 403 and changes
// nothing.
//
// The read policy and the permission matrix of package record apply on
// the server to every page and form: a role is not shown a form for a
// section it may not change, and a POST to one is refused with 403
// before anything is written; the chart is shown as the role may read it
// (record.ReadPolicy.Redact).
//
// Pages: find a patient (replica.Search), register (duplicate candidates
// from replica.Duplicates shown, with their reasons, before saving), the
// chart (alerts first, conflicts with every competing value and its
// author, a settle form for those the user may write), a form for each
// clinical write (allergy, diagnosis, prescription, dose revision,
// discontinuation, lab result, encounter, note, demographics), and a sync
// page that runs the app's Syncer. Times are shown in Config.Location.
//
// # Caveats
//
// Sessions live in memory: restarting the server logs everyone out. The
// cookie is not marked Secure, since the app is served over plain HTTP on
// the loopback interface; serve it on 127.0.0.1 only. A request naming any
// other host is refused (421), so a page of another site that points a
// name at 127.0.0.1 (DNS rebinding) cannot read the app's pages. A sync runs within
// its POST request: the page shows its result when it ends, and the
// steps it went through, not a live progress bar.
package web
