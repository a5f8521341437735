// Package web is the clinic app as a web app: a server the device runs for
// its own browser on 127.0.0.1, working with no network at all, on top of
// the device's replica.
//
// Pages are rendered on the server with html/template; the templates,
// the stylesheet and the icon are embedded in the binary, nothing is
// loaded from the internet, and the app serves no JavaScript: no action
// needs it. Every page is one column, usable on a phone and on a laptop.
//
// # Usage
//
//	srv, err := web.New(web.Config{Replica: r, Clinic: "kamuga", Device: "kamuga-tablet", Guard: g, Sync: syncer})
//	if err != nil { ... }
//	defer srv.Close()          // stops the syncs it runs, and waits for them
//	err = srv.Start(ctx)       // the background sync
//	http.Serve(listener, srv)  // a listener on 127.0.0.1
//
// Staff log in with the clinic's users (the roster's argon2id hashes,
// checked by the device's login.Guard with its lockout), under the
// device's session.Policy (package device/session), which the command
// line shares: the same refusals, the roster asked at every request, the
// same idle logout. A session is a
// random 32-byte ID in an HttpOnly, SameSite=Strict cookie naming a
// session kept in the server's memory; it ends at logout, after
// Config.IdleTimeout without a request (15 minutes by default), and as
// soon as the roster disables its user. Every form carries the session's
// CSRF token, and a POST without it is refused with 403 and changes
// nothing.
//
// A device whose data is encrypted gives an Unlocker instead of a
// Replica: the server starts locked, serving only the login page; a
// login opens the data with the user's password (Unlocker.Unlock) before
// the roster's checks, a password the keys refuse counting as a wrong
// try; the data stays open while any session is logged in, and is
// locked (the replica closed, the key forgotten) at the last logout or
// when the last session's idle time passes (Sweep, every SweepEvery).
// The background sync runs only while the data is open.
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
// author, a settle form for those the user may write), a form for every
// write of package record to a chart, a sync page, and the user's
// settings. Forms that add an entry (allergy, no known allergies,
// diagnosis, prescription, lab result, visit, ID number, referral) are
// buttons at the top of the chart; those that act on an entry (change an
// allergy; a diagnosis's status; revise a dose, hold, resume, stop or
// complete a prescription; finalise or correct a lab result; add to a
// visit's note; correct or retire an ID number; end a referral; and
// "entered by mistake" for each kind) are links beside it. A bad value
// is shown again in its field's box (422), in words, as is a refusal of
// the write as the chart is now where a form expects one (an ID number
// the patient already has, "no known allergies" while an allergy is
// active).
//
// # Merging duplicates
//
// A chart's page lists its possible duplicates (replica.DuplicatesOf,
// with their reasons). A role permitted the merges section (clinicians
// and administrators) is offered, for each, to merge it into this chart
// or this chart into it: a confirmation page shows both charts side by
// side (each chart's own document, replica.OwnChart) and asks for a
// reason before replica.Merge. The survivor's page lists the charts
// merged into it; the page of a chart merged away shows the survivor's
// chart and says which chart was merged into it; both offer an unmerge
// (replica.Unmerge, with a reason). Charts merged concurrently in ways
// that disagree show the library's merge-conflict alert; a conflict of a
// chart's forwarding pointer is settled from the conflicts list by
// merging the chart into the chart chosen (which releases it from the
// others) or unmerging it, and a merge entry whose chart went elsewhere
// offers the same. A role not permitted gets no merge link, and its POST
// of a merge, unmerge or merge settle is refused with 403.
//
// # Sync
//
// Every page of a logged-in user starts with the device's sync status:
// online, offline or not connected (from the last sync's outcome), the
// changes waiting to be sent, the last sync, and the conflicts to settle
// and alerts the last sync brought (counted as the user's role is shown
// them, on the charts the sync changed). The sync page's button starts a
// sync in the background and shows the page again; while the sync runs
// the page reloads itself every two seconds (a meta refresh, no
// JavaScript), showing its phase and bytes; then it shows what the sync
// did and lists the charts it changed that have conflicts or alerts. One
// sync runs at a time.
//
// Start runs the background sync: at once, then every Config.AutoSync
// (5 minutes) while the device is connected; after a failure it waits
// twice as long each time, up to Config.AutoSyncMaxWait (an hour), and
// logs the first failure in a row as a warning and the others at debug
// level; it stops for good when the cloud has revoked the device. Each
// sync is bounded by Config.SyncTimeout, and Close ends them all.
//
// A Syncer that is also a HandCarrier gets USB and phone forms on the
// sync page: write a bundle file for the cloud to a folder (a USB
// stick), read the bundle files for this device in a folder, and
// exchange relay bundles with a phone's folder. The folder is typed as a
// full path on this device.
//
// # Languages and times
//
// Pages and messages are in English or Swahili (Languages), one JSON file
// of messages per language in i18n/, embedded; a test checks every
// English key has a message in every language. Each user chooses their
// language on the settings page; the choice is kept on this device in
// Config.SettingsFile. The login page follows its language links or the
// browser's Accept-Language. Dates and times are shown in
// Config.Location, the device's local time zone by default.
//
// # Caveats
//
// Sessions live in memory: restarting the server logs everyone out. The
// cookie is not marked Secure, since the app is served over plain HTTP on
// the loopback interface; serve it on 127.0.0.1 only. A request naming any
// other host is refused (421), so a page of another site that points a
// name at 127.0.0.1 (DNS rebinding) cannot read the app's pages.
//
// What comes from the library stays in English whatever the user's
// language: alert messages, history summaries and validation reasons of
// package record, a Syncer's error details, and the clinical codes
// (statuses, units, routes, frequencies). A user's language is kept on the device, not with
// the clinic's roster, so it does not follow them to another device.
// Which charts a sync changed is found from the charts' time of writing
// when the Syncer does not say (an HTTPS sync does not): that reads the
// index of every chart once after a sync that received changes.
package web
