// Package httpsync is the HTTPS courier: a Client that syncs a clinic
// device's replica with the cloud, an http.Handler that serves the cloud
// replica to enrolled devices, a background Syncer, and the small device
// CA that enrols devices.
//
// # Protocol
//
// A sync is one or more round trips of POST /v1/sync. The request body is
// the device's bundle for the cloud (replica.MakeBundleFor); the cloud
// authenticates the device, applies the bundle (replica.ReceiveFrom, which
// refuses a bundle from another replica than the credential names, or one
// touching a chart outside the device's clinic's scope) and answers 200
// with its own bundle for the device, holding only charts in that scope.
// The client repeats while either side had more than one bundle's worth.
// Replicas that agree cost one round trip of a few dozen bytes each way.
// GET /v1/hello returns the cloud's replica ID and the device as the cloud
// sees it.
//
// Errors are JSON, {"error": code, "message": text, "request_id": id},
// with a status the
// Client maps to a sentinel matched with errors.Is: 400 ErrMalformed (a
// corrupt bundle, an unknown format version, the wrong recipient; the
// replica sentinels match too), 401 ErrUnauthorized (no, damaged, foreign
// or expired credential; a revoked device, code revoked-credential,
// ErrCredentialRevoked), 403 ErrForbidden (codes out-of-scope,
// wrong-sender, unauthorized-change: a change its recorded role may not
// make, forged-change: a change not signed by its device; the last two
// also match replica.ErrUnauthorizedChange and replica.ErrForgedChange;
// revoked-change: a change of a revoked device made after its
// revocation, matching replica.ErrRevokedChange and
// replica.ErrForgedChange), 409 (code forked: a change whose author
// used its sequence number for another change, so the author is a copied
// or restored data folder writing as its original; "forked" names the
// author; it matches replica.ErrForkedReplica and
// replica.ErrMalformedBundle),
// 408 ErrTooSlow (code too-slow: the body came slower than the cloud's
// minimum rate, or past its deadline), 413 ErrTooLarge, 429
// ErrSyncInProgress (another sync of the device is in progress; it also
// matches ErrBusy), 503 ErrBusy (with Retry-After), other 5xx ErrServer.
// A network failure after the retries is ErrUnreachable, wrapping the
// network error. 400 means the device's data is at fault (a change the
// cloud's replica cannot take, such as one reusing a sequence number,
// is malformed too, never a 500), and 5xx only the cloud's own faults.
//
// A device that took a revoked device's later changes before it learnt of
// the revocation (device to device, by file) has its bundle refused with
// revoked-change, and, since a refusal carries no bundle, the answer
// carries the revocations it needs instead ("revocations": the refused
// devices' and those of its clinic, base64, at most
// MaxRefusalRevocationBytes). The Client has its replica learn them
// (replica.Replica.LearnRevocations) and returns the refusal; its next
// sync leaves the refused changes out and is taken, so an honest device
// is refused once, not on every sync.
//
// A device refused with forked naming its own replica is a copy of the
// device the cloud knew (its data folder copied back, or restored from a
// copy): the Client marks its replica forked (replica.Replica.MarkForked)
// and returns the refusal joined with the replica's *replica.ForkedError.
// From then on, after a restart too, the replica refuses to edit and to
// sync as its ID until it is recovered as a new replica
// (replica.RecoverFork). A copy that only registered new charts is told
// by the cloud's answer instead: its log is behind what the cloud holds
// of it (see package replica).
//
// # The cloud's policy: package replica/gate
//
// The Handler is HTTP framing: TLS and the device certificate, statuses,
// headers, the bodies in transit and their pace. What a device may send
// and is sent is the cloud's policy, which it shares with every other
// courier (a bundle file imported at the cloud is checked and recorded
// the same way): the Handler authenticates the device, turns it into a
// gate.Sender and hands the bundle to a *gate.Gate (Config.Gate, or one
// it makes from Config.AccessLog, MaxConcurrent and QueueWait), which
// applies it within the device's clinic's scope, admits syncs, records
// the access log and makes the answer. The refusal codes are the gate's;
// the Handler adds the status.
//
// # Access log
//
// With Config.AccessLog (an *audit.Log), the cloud records every chart a
// device writes, with the user and role each change records, before the
// changes are stored; every chart whose changes it sends a device, before
// the answer goes out; and every bundle refused as forged, unauthorised or
// out of scope. A sync that cannot be recorded fails with 500 and stores
// nothing. The log is a SHA-256 chain of JSON lines that package audit
// checks and exports (examples/cloud: cloud audit).
//
// # Why mutual TLS with device certificates
//
// Devices authenticate with X.509 client certificates issued by the
// cloud's own device CA (an ed25519 key and self-signed certificate in its
// data directory). The certificate's URI SANs bind the device's replica ID
// (chartsync:replica:<32 hex>) and its clinic (chartsync:clinic:<id>),
// with an expiry. The alternatives were signed requests (a custom
// signature scheme over method, path, body and time, with replay windows
// to get right) and bearer tokens (a secret sent on every request,
// replayable if it leaks, and a token store to keep). Mutual TLS uses only
// the standard library's well-kept crypto/tls and crypto/x509, proves
// possession of the key on every connection without sending it, binds the
// identity to the channel so nothing can be replayed, and works with any
// HTTP client and proxy that can present a certificate. The handler asks
// for the certificate (tls.RequestClientCert) but verifies it itself, so a
// missing, foreign or expired credential gets a 401 that says what to do
// instead of a failed handshake.
//
// # One device identity for every courier
//
// The certificate is issued for the device's own key: the ed25519 signing
// key of its device.Identity, the same key that signs its relay bundles
// and enrolment requests (the identity's age X25519 key decrypts relay
// bundles addressed to it). The device generates the identity and keeps it
// in a 0600 file; only a signed enrolment request (device.Identity.Request,
// public keys and a proof that the device holds them) goes to the cloud,
// whose administrator checks it (device.ParseRequest) and issues the
// certificate for the key it names (DeviceCA.Enrol with
// Enrolment.PublicKey). So the private keys never leave the device: no
// credential file, mail or USB stick carries them, and a copied credential
// is useless without the device. The device adds its key when it loads the
// credential (Credential.WithIdentity, which refuses a credential issued
// for another key, replica or clinic), and TLS signs with
// device.Identity.TLSSigner, a crypto.Signer that never exposes the key.
// One key for both couriers also means one enrolment to revoke or renew,
// and one fingerprint for the clinic to read to the administrator.
//
// The same credential file can carry the cloud's relay enrolment of the
// device (a device.Enrolment signed by the cloud's device.Authority), the
// authority's public key and the cloud's roster, so the device can later
// exchange relay bundles with other devices without another enrolment
// (Credential.NewRoster).
//
// The device verifies the cloud against the CA certificate (or a pinned
// server certificate) in its credential file, which also names the cloud's
// URL and replica ID. TLS 1.3 only. Plain HTTP needs ClientConfig.Insecure
// and a Handler with Config.Authenticate; no example uses either.
//
// # TLS session resumption
//
// A full TLS 1.3 handshake with a device certificate is most of the cost
// of a sync that moves nothing: 4.2 KB of an idle sync's 4.7 KB, more
// than half of it the key shares of the post-quantum hybrid key exchange
// (X25519MLKEM768), most of the rest the two certificates and their
// signatures. A Client with ClientConfig.SessionFile keeps the session
// tickets the cloud gives it in that file (a SessionCache: mode 0600,
// written atomically and durably after every sync, bound to the device
// certificate, at most 8 sessions, each offered only to the server
// address and name that issued it; a damaged or foreign file is ignored
// with a warning). A client made later, after a restart too, resumes the
// session: no certificate and no signature cross the link, and an idle
// sync costs under 1 KiB (994 bytes in TestIdleSyncBytes). Such a client
// speaks HTTP/1.1 (no ALPN: HTTP/2's frames would add a seventh), and a
// sync's request and answer carry no Content-Type, Accept-Encoding,
// User-Agent, Date or Cache-Control header (see ContentType).
//
// A resumption offers an X25519 key share only, some 1.1 KB less each
// way. Its keys come from that exchange, which keeps forward secrecy, and
// from the session's secret, which descends from a full handshake made
// with the hybrid key exchange; so the resumed connection is as safe as
// that full handshake against a future quantum computer. The client keeps
// it so: if the cloud declines the session (it restarted, or the ticket
// is older than 7 days), the client abandons the X25519-only handshake
// and makes a full one with the hybrid.
//
// The cloud (ServerTLSConfig) keeps each session in memory and gives the
// device a 16-byte ticket naming it, good for one resumption; without
// that, crypto/tls would put the whole session, device certificate
// included, encrypted in the ticket: some 500 bytes more in the ticket
// and again in the next ClientHello. A resumed connection carries the
// certificates of the full handshake that began it, and the Handler
// verifies them on every request as on any connection, against its
// DeviceCA and its clock: a device whose certificate has expired since is
// refused (and crypto/tls declines to resume it by the server's own
// clock). The revocation check (Config.CheckDevice) runs in the server's
// tls.Config.VerifyConnection, which runs on resumed handshakes too, and
// in the Handler; never in VerifyPeerCertificate, which a resumption
// skips.
//
// The session file is a secret: whoever reads it can resume the device's
// session, and be taken for the device, until the device uses the ticket
// or it expires; whoever can write it can make the device take an
// impostor for the cloud. Keep it where the device's identity file is.
//
// # Retries and resumption
//
// The Client retries a request cut by a dropped link, a stall (no byte
// moved for StallTimeout), a request the cloud cut as too slow (408), a
// busy (503, 429) or failing (5xx) cloud, with capped exponential
// backoff and full jitter, honouring Retry-After; any other refusal
// (4xx) or an untrusted server certificate is final. A Syncer
// does not send a refused bundle again on its own: it sends again only
// when the bundle differs (a new edit) or when SyncNow asks, and
// Status.Refused says a person has to act (LastError says why). Retrying is
// safe because bundles are idempotent and a replica's record of what its
// peer holds moves only when the peer's acknowledgement arrives: a bundle
// the cloud applied but whose answer was lost is simply sent again, and
// its changes are recognised as duplicates. The Handler applies a bundle
// it received whole even if the device has gone meanwhile.
//
// # Usage
//
// The cloud:
//
//	ca, _, err := httpsync.OpenDeviceCA(filepath.Join(dir, "ca"), time.Now())
//	h, err := httpsync.NewHandler(httpsync.Config{Replica: cloud, DeviceCA: ca.Pool(), Logger: log})
//	srv := httpsync.NewServer("127.0.0.1:8443", h, serverCert, log)
//	err = srv.ListenAndServeTLS("", "") // srv.Shutdown lets syncs in flight finish
//
// A device makes its identity once and hands over its enrolment request:
//
//	id, err := device.Generate(local.ID(), "kamuga")
//	err = id.Save("identity.key") // 0600: the private keys stay here
//	err = os.WriteFile("enrol-request.pem", id.RequestPEM(), 0o644)
//
// Enrolling the device (an admin command at the cloud):
//
//	pub, err := device.ParseRequest(requestPEM) // checks the proof of possession
//	cred, err := ca.Enrol(httpsync.Enrolment{Replica: pub.ReplicaID, Clinic: pub.Clinic, Device: "kamuga-tablet-1",
//		PublicKey: pub.SignKey, CloudURL: "https://127.0.0.1:8443", CloudReplica: cloud.ID(),
//		ServerTrust: []*x509.Certificate{ca.Cert}})
//	err = cred.WriteFile("kamuga-tablet-1.pem") // no secret in it
//
// The device, to sync:
//
//	cred, err := httpsync.ReadCredentialFile("kamuga-tablet-1.pem")
//	id, err := device.Load("identity.key")
//	cred, err = cred.WithIdentity(id)
//	client, err := httpsync.NewClient(local, httpsync.ClientConfig{Credential: cred, Progress: bar,
//		SessionFile: "tls-sessions"}) // resume TLS sessions after a restart
//	defer client.Close() // saves the sessions
//	report, err := client.SyncReport(ctx)
//
//	syncer, err := httpsync.NewSyncer(client, httpsync.SyncerConfig{})
//	err = syncer.Start(ctx)
//	defer syncer.Close()
//	syncer.Notify() // after every saved edit
//	st := syncer.Status() // Online, LastSuccess, Pending, LastError
//
// # Caveats
//
// The Handler knows no revocations of its own: Config.CheckDevice tells
// it which devices were revoked (examples/cloud asks its roster, where
// "cloud revoke" puts a device.Authority revocation). Without it, a lost
// device's key is accepted until its certificate expires. With it, a
// revoked device's handshake is refused, full or resumed
// (Handler.VerifyConnection), and so is every request on a connection it
// opened before (401 revoked-credential). A refused handshake reaches the
// device as a TLS alert; serve on RefusalListener, so that the alert is
// not lost to a reset, and the Client, which cannot always read it
// (HTTP/2 drops the cause of a connection closed before its first
// request), makes one more handshake to read it before it reports
// ErrCredentialRevoked. Re-enrolling a revoked device with the same key
// lets it in again.
//
// The Handler bounds what each device can hold. A device has one sync in
// progress at a time (a few more wait for it, up to QueueWait; then 429).
// A sync's body is read before it takes one of the MaxConcurrent sync
// slots, so a slow link holds no slot; bodies being read and answers
// being written are bounded by MaxTransfers. Each must keep moving: no
// pause over StallTimeout, an average of MinTransferRate bytes a second
// once StallTimeout has passed, and the whole sync within
// RequestTimeout; a body that falls behind is cut with 408. These
// deadlines replace the server's ReadTimeout and WriteTimeout for a
// sync. So a device trickling a byte at a time holds one transfer for
// about StallTimeout and never a sync slot, and four connections of one
// device hold no more than one. A device on a link slower than
// MinTransferRate cannot sync large bundles: lower its replica
// Config.BundleBytes.
//
// A bundle whose frame declares more than MaxRequestMemory / 8 bytes once
// decompressed (8 MiB by default) is refused with 413 before it is
// decompressed, however well it compresses: a bundle of long notes that
// inflates 45 times costs the cloud little more than its size as sent.
// What applying a bundle within that size costs is bounded by the
// replica (replica.Config.ReceiveMemory): long notes cost Automerge
// hundreds of bytes a character.
//
// The Handler applies bundles a few at a time, in arrival order (the
// replica serialises writes), so the cloud's throughput is the
// replica's: with SQLite, some tens of syncs a second on a small
// machine. Syncs beyond MaxConcurrent or MaxTransfers wait up to
// QueueWait, then get 503 with Retry-After. A device that holds a chart
// outside its clinic's scope (from a file carried from another clinic)
// does not send it: the Client builds its bundles for its own clinic, as
// the cloud would refuse the whole bundle otherwise. The Syncer's Pending
// is -1 until the first successful sync, as the replica counts
// unacknowledged changes per known peer only.
//
// By default the cloud's TLS sessions live in the server process's
// memory (at most 65,536): a restarted cloud makes every device do one
// full handshake, and a multi-node cloud behind a load balancer resumes
// only on the node that issued the ticket. SetTicketKeys shares them
// instead: stateless tickets sealed with keys every node is given (and
// rotates), at about 1 KB more per sync than the 16-byte tickets;
// examples/cloud keeps the keys in its state, beside its other secrets.
// Through an HTTP proxy (from the environment),
// a Client resumes with the default key exchange, at about 2.3 KB more.
// Within one process, a Client reuses its connection for 90 seconds, and
// a resumption is needed only after that.
package httpsync
