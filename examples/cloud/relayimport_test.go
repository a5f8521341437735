package main

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/audit"
	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/store"
	"github.com/chartsync/chartsync/replica/store/postgres/pgtest"
	"github.com/chartsync/chartsync/transport/httpsync"
	"github.com/chartsync/chartsync/transport/relay"
	"github.com/chartsync/chartsync/transport/transporttest"
)

// relayEnd opens the tablet's relay endpoint, as the clinic app's relay
// hand-off does: its roster is the credential's, its peer the cloud.
func (d *importTablet) relayEnd(t *testing.T) *relay.Endpoint {
	t.Helper()
	roster, err := d.cred.NewRoster()
	require.NoError(t, err)
	e, err := relay.OpenEndpoint(t.TempDir(), d.rep, d.keys, roster, relay.Config{Peers: []string{d.cred.CloudReplica}})
	require.NoError(t, err)
	t.Cleanup(func() { e.Close() })
	return e
}

// phone opens the relay node a phone keeps in folder, with the tablet's
// roster.
func (d *importTablet) phone(t *testing.T, folder string) *relay.Node {
	t.Helper()
	roster, err := d.cred.NewRoster()
	require.NoError(t, err)
	n, err := relay.OpenNode(folder, roster, relay.NodeConfig{})
	require.NoError(t, err)
	return n
}

// relayOut seals what the cloud needs into the tablet's endpoint and lets
// a phone whose relay folder is folder carry it away.
func (d *importTablet) relayOut(t *testing.T, e *relay.Endpoint, folder string) {
	t.Helper()
	ctx := context.Background()
	_, err := e.Sync(ctx)
	require.NoError(t, err)
	phone := d.phone(t, folder)
	defer phone.Close()
	res, err := relay.Carry(ctx, e.Node(), phone)
	require.NoError(t, err)
	require.NotEmpty(t, res.Carried, "the phone takes the tablet's bundle for the cloud")
}

// relayBack brings the phone back to the tablet: it adopts what the cloud
// wrote in its folder, the tablet takes it and opens it.
func (d *importTablet) relayBack(t *testing.T, e *relay.Endpoint, folder string) {
	t.Helper()
	ctx := context.Background()
	phone := d.phone(t, folder)
	defer phone.Close()
	scan, err := phone.Scan(ctx)
	require.NoError(t, err)
	require.Empty(t, scan.Rejected, "the phone adopts the cloud's reply and acknowledgement")
	_, err = relay.Carry(ctx, phone, e.Node())
	require.NoError(t, err)
	_, err = e.Collect(ctx, "")
	require.NoError(t, err)
}

// heldFiles lists the relay bundles a phone's folder holds.
func heldFiles(t *testing.T, folder string) []string {
	t.Helper()
	names, err := filepath.Glob(filepath.Join(folder, "held", "*.relay"))
	require.NoError(t, err)
	return names
}

// cloudHeads returns the heads of every chart the cloud of the data
// directory holds (nothing may serve it meanwhile).
func cloudHeads(t *testing.T, dir string) map[string]string {
	t.Helper()
	ctx := context.Background()
	r, err := replica.Open(ctx, filepath.Join(dir, fileReplica), replica.Config{})
	require.NoError(t, err)
	defer r.Close()
	cs, err := r.Find(ctx, "", 0)
	require.NoError(t, err)
	out := map[string]string{}
	for _, c := range cs {
		out[c.ID] = c.Heads.String()
	}
	return out
}

// TestImportRelayChecksAndRecordsLikeHTTPS: a relay bundle a phone carries
// to the cloud goes through the same checks and the same access log as a
// sync over HTTPS. The same out-of-scope work is refused over HTTPS and
// from a relay bundle with the same code and the same refused entry; a
// good relay bundle's writes are recorded as an HTTPS sync's are; the
// cloud's reply, sealed to the tablet, carries the clinic's charts (its
// reads recorded), and its acknowledgement lets the tablet's node drop
// the bundle it sent.
func TestImportRelayChecksAndRecordsLikeHTTPS(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "cloud-data")
	_, stop := server(t, dir)
	stray := enrolTablet(t, dir, "kamuga", "kamuga-stray")
	online := enrolTablet(t, dir, "kamuga", "kamuga-online")
	carried := enrolTablet(t, dir, "kamuga", "kamuga-carried")

	// A kamuga tablet holding a lwanda patient's chart.
	stray.chartWithPrescription(t, "lwanda")
	status, code := stray.post(t, stray.bundle(t))
	assert.Equal(t, http.StatusForbidden, status)
	assert.Equal(t, httpsync.CodeOutOfScope, code)

	// The same work, one tablet over HTTPS, the other by a phone.
	onlineChart := online.chartWithPrescription(t, "kamuga")
	client, err := httpsync.NewClient(online.rep, httpsync.ClientConfig{Credential: online.cred})
	require.NoError(t, err)
	_, err = client.Sync(ctx)
	require.NoError(t, err)
	require.NoError(t, client.Close())
	carriedChart := carried.chartWithPrescription(t, "kamuga")
	exit, _ := stop()
	require.Equal(t, 0, exit)

	phone := t.TempDir()
	strayEnd, carriedEnd := stray.relayEnd(t), carried.relayEnd(t)
	stray.relayOut(t, strayEnd, phone)
	carried.relayOut(t, carriedEnd, phone)
	exit, stdout, stderr := cloud(t, "import", "-dir", dir, "-from", phone)
	assert.Equal(t, 1, exit, "a refused relay bundle fails the import: %s", stderr)
	assert.Contains(t, stdout, "from "+stray.rep.ID()+", clinic kamuga): "+httpsync.CodeOutOfScope,
		"the relay bundle is refused with the code HTTPS answered:\n%s", stdout)
	assert.Contains(t, stdout, ") from "+carried.rep.ID()+" (clinic kamuga): 2 new changes")
	assert.Contains(t, stdout, "Imported 1 of 2 relay bundles")
	assert.Len(t, heldFiles(t, phone), 2, "the refused bundle stays on the phone (and so does the other until the phone scans the acknowledgement)")

	refusals := accessOf(t, dir, stray.rep.ID())
	require.Len(t, refusals, 2, "the refusal over HTTPS and the relay bundle's: %+v", refusals)
	assert.Equal(t, audit.Refused, refusals[0].Action)
	assert.True(t, strings.HasPrefix(refusals[0].Detail, httpsync.CodeOutOfScope+": "), "the refusal's detail: %q", refusals[0].Detail)
	assert.Equal(t, sameWork(refusals[:1]), sameWork(refusals[1:]), "the relay bundle's refusal is recorded as the HTTPS one")

	overHTTPS, byRelay := accessOf(t, dir, online.rep.ID()), accessOf(t, dir, carried.rep.ID())
	require.Len(t, overHTTPS, 2, "the nurse's and the clinician's writes over HTTPS: %+v", overHTTPS)
	require.Len(t, byRelay, 3, "the same writes from the relay bundle, and the reply's read: %+v", byRelay)
	assert.Equal(t, sameWork(overHTTPS), sameWork(byRelay[:2]), "the relay bundle's writes are recorded as the HTTPS sync's")
	for _, e := range byRelay[:2] {
		assert.Equal(t, carriedChart, e.Chart)
	}
	assert.Equal(t, audit.Entry{Action: audit.Read, Device: carried.rep.ID(), Clinic: "kamuga", Chart: onlineChart, Changes: 2},
		byRelay[2], "the reply carries the other kamuga tablet's chart, and that is recorded")

	// The phone goes back to the carried tablet.
	carried.relayBack(t, carriedEnd, phone)
	assert.ElementsMatch(t, []string{onlineChart, carriedChart}, transporttest.ChartIDs(t, carried.rep),
		"the clinic's charts, and nothing of the refused lwanda chart")
	items, err := carriedEnd.Node().Items(ctx)
	require.NoError(t, err)
	for _, it := range items {
		assert.False(t, it.Kind == relay.KindChanges && it.Sender == carried.rep.ID(),
			"the cloud's acknowledgement lets the tablet's node drop the bundle it sent: %+v", it)
	}
	cloudAgain := cloudHeads(t, dir)
	assert.Contains(t, cloudAgain, carriedChart)
	assert.Equal(t, cloudAgain[carriedChart], headsOf(t, carried.rep)[carriedChart], "the tablet and the cloud agree on its chart")
}

// codesOf returns the refusal codes of access log entries, in order.
func codesOf(es []audit.Entry) []string {
	var out []string
	for _, e := range es {
		code, _, _ := strings.Cut(e.Detail, ": ")
		out = append(out, code)
	}
	return out
}

// byCode returns access log entries by their refusal code.
func byCode(es []audit.Entry) map[string]audit.Entry {
	out := map[string]audit.Entry{}
	for i, code := range codesOf(es) {
		out[code] = es[i]
	}
	return out
}

func headsOf(t *testing.T, r *replica.Replica) map[string]string {
	t.Helper()
	cs, err := r.Find(context.Background(), "", 0)
	require.NoError(t, err)
	out := map[string]string{}
	for _, c := range cs {
		out[c.ID] = c.Heads.String()
	}
	return out
}

// TestImportRelayRefusesLikeHTTPS: relay bundles the cloud must refuse
// are refused with the code HTTPS gives the same device or the same
// bundle, leave the cloud's charts as they were, and stay in the phone's
// folder: a revoked tablet's, a forged change carried by an enrolled
// tablet (recorded in the access log, as over HTTPS), an unenrolled
// device's, and a damaged file.
func TestImportRelayRefusesLikeHTTPS(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "cloud-data")
	_, stop := server(t, dir)
	revoked := enrolTablet(t, dir, "kamuga", "kamuga-lost")
	rogue := enrolTablet(t, dir, "kamuga", "kamuga-rogue")

	phone := t.TempDir()
	// The lost tablet's work leaves on a phone; then it is revoked, and
	// over HTTPS it is refused.
	revoked.chartWithPrescription(t, "kamuga")
	revoked.relayOut(t, revoked.relayEnd(t), phone)
	code, _, stderr := cloud(t, "revoke", "-dir", dir, "-device", "kamuga-lost")
	require.Equal(t, 0, code, "revoke: %s", stderr)
	client, err := httpsync.NewClient(revoked.rep, httpsync.ClientConfig{Credential: revoked.cred, MaxAttempts: 1})
	require.NoError(t, err)
	_, err = client.Sync(ctx)
	require.ErrorIs(t, err, httpsync.ErrCredentialRevoked, "a revoked tablet over HTTPS: %s", httpsync.CodeRevokedCredential)
	require.NoError(t, client.Close())

	// A rogue tablet's unsigned change: over HTTPS, and sealed in a
	// relay bundle the tablet signs.
	rogue.chartWithPrescription(t, "kamuga")
	own, err := replica.DecodeBundle(rogue.bundle(t))
	require.NoError(t, err)
	require.NotEmpty(t, own.Changes)
	first := own.Changes[0]
	first.Sig, first.Cover = nil, 0
	unsigned := replica.Bundle{From: own.From, To: own.To, Signers: own.Signers, Changes: []replica.BundleChange{first}}
	forged, err := unsigned.Encode()
	require.NoError(t, err)
	status, httpsCode := rogue.post(t, forged)
	assert.Equal(t, http.StatusForbidden, status, "an unsigned change over HTTPS")
	assert.Equal(t, httpsync.CodeForgedChange, httpsCode)
	rogueEnd := rogue.relayEnd(t)
	sealed, err := rogueEnd.SealBundle(rogue.cred.CloudReplica, forged)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(phone, "rogue.relay"), sealed, 0o600))
	// The rogue tablet passes off the lost tablet's bundle as its own.
	passedOff := revoked.bundle(t)
	status, httpsCode = rogue.post(t, passedOff)
	assert.Equal(t, http.StatusForbidden, status, "another device's bundle over HTTPS")
	assert.Equal(t, httpsync.CodeWrongSender, httpsCode)
	sealedOff, err := rogueEnd.SealBundle(rogue.cred.CloudReplica, passedOff)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(phone, "passed-off.relay"), sealedOff, 0o600))
	exit, _ := stop()
	require.Equal(t, 0, exit)

	// A device the cloud never enrolled, sealing for the cloud with a
	// roster that has the cloud's key.
	strangerKeys, err := device.Generate(replica.NewID(), "kamuga")
	require.NoError(t, err)
	strangerRep, err := replica.New(ctx, store.NewMem(), replica.Config{Signer: strangerKeys})
	require.NoError(t, err)
	defer strangerRep.Close()
	stranger := &importTablet{rep: strangerRep, cred: rogue.cred, keys: strangerKeys}
	stranger.chartWithPrescription(t, "kamuga")
	strangerBundle, err := strangerRep.MakeBundle(ctx, rogue.cred.CloudReplica)
	require.NoError(t, err)
	roster, err := rogue.cred.NewRoster()
	require.NoError(t, err)
	fromStranger, err := relay.Seal(strangerKeys, roster, rogue.cred.CloudReplica, strangerBundle.Data, time.Now(), time.Hour)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(phone, "stranger.relay"), fromStranger, 0o600))
	damaged := slices.Clone(sealed)
	damaged[len(damaged)/2] ^= 0x01
	require.NoError(t, os.WriteFile(filepath.Join(phone, "damaged.relay"), damaged, 0o600))

	before := cloudHeads(t, dir)
	accessBefore := map[string][]audit.Entry{}
	for _, d := range []string{revoked.rep.ID(), rogue.rep.ID(), strangerKeys.ReplicaID()} {
		accessBefore[d] = accessOf(t, dir, d)
	}
	exit, stdout, stderr := cloud(t, "import", "-dir", dir, "-from", phone)
	assert.Equal(t, 1, exit, "refused relay bundles fail the import: %s", stderr)
	for _, want := range []string{
		"from " + revoked.rep.ID() + "): " + httpsync.CodeRevokedCredential,
		"from " + rogue.rep.ID() + ", clinic kamuga): " + httpsync.CodeForgedChange,
		"from " + rogue.rep.ID() + "): " + httpsync.CodeWrongSender,
		"from " + strangerKeys.ReplicaID() + "): " + httpsync.CodeBadCredential,
		"Refused damaged.relay: " + httpsync.CodeMalformed,
		"Imported 0 of 5 relay bundles",
	} {
		assert.Contains(t, stdout, want)
	}
	assert.Equal(t, before, cloudHeads(t, dir), "nothing of a refused relay bundle reached the cloud's charts")

	rogueLog := accessOf(t, dir, rogue.rep.ID())
	overHTTPS := accessBefore[rogue.rep.ID()]
	require.Len(t, overHTTPS, 2, "the forged change and the passed-off bundle refused over HTTPS: %+v", overHTTPS)
	require.Len(t, rogueLog, 4, "the relay bundles' refusals are recorded as over HTTPS: %+v", rogueLog)
	byRelay := byCode(rogueLog[2:])
	assert.ElementsMatch(t, codesOf(overHTTPS), slices.Collect(maps.Keys(byRelay)), "each relay bundle is recorded with the code HTTPS gave it")
	assert.Equal(t, sameWork(overHTTPS[:1]), sameWork([]audit.Entry{byRelay[httpsync.CodeForgedChange]}),
		"the forged change's refusal is recorded as the HTTPS one")
	revokedLog := accessOf(t, dir, revoked.rep.ID())
	require.Len(t, revokedLog, len(accessBefore[revoked.rep.ID()])+1,
		"the revoked tablet's relay bundle is recorded, as its HTTPS handshake is: the data directory's roster keeps the key it was enrolled with beside its revocation")
	assert.Equal(t, audit.Refused, revokedLog[len(revokedLog)-1].Action)
	assert.Contains(t, revokedLog[len(revokedLog)-1].Detail, httpsync.CodeRevokedCredential)
	assert.Empty(t, accessOf(t, dir, strangerKeys.ReplicaID()), "a device no one enrolled is no one")

	for _, name := range []string{"rogue.relay", "passed-off.relay", "stranger.relay", "damaged.relay"} {
		assert.FileExists(t, filepath.Join(phone, name), "a refused relay bundle stays where it is")
	}
	assert.Len(t, heldFiles(t, phone), 1, "the revoked tablet's bundle stays on the phone")
	names, err := filepath.Glob(filepath.Join(phone, "*.relay"))
	require.NoError(t, err)
	assert.Len(t, names, 4, "no reply and no acknowledgement for refused bundles")
}

// TestImportRelayReplay: a relay bundle imported again, from the same
// phone or as a copy under another name, is reported as a replay naming
// the bundle and its sender, applies nothing, records nothing, and does
// not fail the import.
func TestImportRelayReplay(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "cloud-data")
	_, stop := server(t, dir)
	tablet := enrolTablet(t, dir, "kamuga", "kamuga-carried")
	exit, _ := stop()
	require.Equal(t, 0, exit)
	tablet.chartWithPrescription(t, "kamuga")
	phone := t.TempDir()
	tablet.relayOut(t, tablet.relayEnd(t), phone)
	held := heldFiles(t, phone)
	require.Len(t, held, 1)
	data, err := os.ReadFile(held[0])
	require.NoError(t, err)
	env, err := relay.Parse(data)
	require.NoError(t, err)

	exit, stdout, stderr := cloud(t, "import", "-dir", dir, "-from", phone)
	require.Equal(t, 0, exit, "import: %s\n%s", stderr, stdout)
	require.Contains(t, stdout, "Imported 1 of 1 relay bundles")
	after := cloudHeads(t, dir)
	access := accessOf(t, dir, tablet.rep.ID())
	replies, err := filepath.Glob(filepath.Join(phone, "*.relay"))
	require.NoError(t, err)

	// The same phone again, with a copy of the bundle under another name.
	require.NoError(t, os.WriteFile(filepath.Join(phone, "copy.relay"), data, 0o600))
	exit, stdout, stderr = cloud(t, "import", "-dir", dir, "-from", phone)
	assert.Equal(t, 0, exit, "a replay does not fail the import: %s", stderr)
	assert.Equal(t, 2, strings.Count(stdout, "Replayed "), "both copies are replays:\n%s", stdout)
	assert.Contains(t, stdout, "relay bundle "+env.ID+" from "+tablet.rep.ID()+": relay: bundle already opened", "the replay names the bundle and its sender")
	assert.Contains(t, stdout, "Imported 0 of 2 relay bundles; 2 had been imported before")
	assert.Equal(t, after, cloudHeads(t, dir), "a replay changes nothing")
	assert.Equal(t, access, accessOf(t, dir, tablet.rep.ID()), "a replay records nothing")
	again, err := filepath.Glob(filepath.Join(phone, "*.relay"))
	require.NoError(t, err)
	assert.Len(t, again, len(replies)+2, "a replay is acknowledged again, and not answered")
}

// TestImportRelayWithDatabase: a cloud on PostgreSQL imports a relay
// bundle, answers it, and refuses its replay from any machine: the
// cloud's key pair, its enrolment and the bundles applied live in the
// database.
func TestImportRelayWithDatabase(t *testing.T) {
	conn, schema := pgtest.ConnString(t), pgtest.Schema(t)
	db := []string{"-db", conn, "-db-schema", schema, "-key-file", filepath.Join(t.TempDir(), "operator.key")}
	code, _, stderr := cloud(t, append([]string{"init"}, db...)...)
	require.Equal(t, 0, code, "init: %s", stderr)
	tablet := enrolTabletAt(t, db, "kamuga", "kamuga-carried")
	chart := tablet.chartWithPrescription(t, "kamuga")
	other := enrolTabletAt(t, db, "kamuga", "kamuga-other")
	otherChart := other.chartWithPrescription(t, "kamuga")
	phone := t.TempDir()
	end := tablet.relayEnd(t)
	tablet.relayOut(t, end, phone)
	other.relayOut(t, other.relayEnd(t), phone)
	var carriedCopies [][]byte
	for _, path := range heldFiles(t, phone) {
		data, err := os.ReadFile(path)
		require.NoError(t, err)
		carriedCopies = append(carriedCopies, data)
	}
	require.Len(t, carriedCopies, 2)

	exit, stdout, stderr := cloud(t, append([]string{"import", "-from", phone}, db...)...)
	require.Equal(t, 0, exit, "import: %s\n%s", stderr, stdout)
	assert.Contains(t, stdout, "Imported 2 of 2 relay bundles")
	tablet.relayBack(t, end, phone)
	assert.ElementsMatch(t, []string{chart, otherChart}, transporttest.ChartIDs(t, tablet.rep), "the reply carries the other tablet's chart")

	// The same bundles on another stick, imported on another machine.
	stick := t.TempDir()
	for i, data := range carriedCopies {
		require.NoError(t, os.WriteFile(filepath.Join(stick, fmt.Sprintf("copy-%d.relay", i)), data, 0o600))
	}
	exit, stdout, stderr = cloud(t, append([]string{"import", "-from", stick}, db...)...)
	assert.Equal(t, 0, exit, "import: %s", stderr)
	assert.Contains(t, stdout, "Imported 0 of 2 relay bundles; 2 had been imported before")

	// A tablet revoked while its bundle travels: refused as over HTTPS,
	// and recorded against it, since the database's roster keeps the key
	// it signed with.
	lost := enrolTabletAt(t, db, "kamuga", "kamuga-lost")
	lost.chartWithPrescription(t, "kamuga")
	lostPhone := t.TempDir()
	lost.relayOut(t, lost.relayEnd(t), lostPhone)
	code, _, stderr = cloud(t, append([]string{"revoke", "-device", "kamuga-lost"}, db...)...)
	require.Equal(t, 0, code, "revoke: %s", stderr)
	exit, stdout, _ = cloud(t, append([]string{"import", "-from", lostPhone}, db...)...)
	assert.Equal(t, 1, exit)
	assert.Contains(t, stdout, "from "+lost.rep.ID()+"): "+httpsync.CodeRevokedCredential)
	entries := accessOfAt(t, db, lost.rep.ID())
	require.Len(t, entries, 1, "the refusal is recorded: %+v", entries)
	assert.Equal(t, audit.Refused, entries[0].Action)
	assert.Equal(t, "kamuga", entries[0].Clinic)
	assert.True(t, strings.HasPrefix(entries[0].Detail, httpsync.CodeRevokedCredential+": "), "the refusal's detail: %q", entries[0].Detail)
}

// accessOfAt is accessOf for a cloud kept where at says.
func accessOfAt(t *testing.T, at []string, replicaID string) []audit.Entry {
	t.Helper()
	code, stdout, stderr := cloud(t, append([]string{"audit", "-device", replicaID}, at...)...)
	require.Equal(t, 0, code, "audit: %s", stderr)
	var out []audit.Entry
	dec := json.NewDecoder(strings.NewReader(stdout))
	for dec.More() {
		var e audit.Entry
		require.NoError(t, dec.Decode(&e))
		out = append(out, e)
	}
	return out
}

// enrolTabletAt is enrolTablet for a cloud kept where at says.
func enrolTabletAt(t *testing.T, at []string, clinic, name string) *importTablet {
	t.Helper()
	keys, err := device.Generate(replica.NewID(), clinic)
	require.NoError(t, err)
	rep, err := replica.New(context.Background(), store.NewMem(), replica.Config{Signer: keys})
	require.NoError(t, err)
	t.Cleanup(func() { _ = rep.Close() })
	req := filepath.Join(t.TempDir(), "enrol-request.pem")
	require.NoError(t, os.WriteFile(req, keys.RequestPEM(), 0o644))
	credPath := filepath.Join(t.TempDir(), name+".pem")
	code, _, stderr := cloud(t, append([]string{"enrol", "-request", req, "-device", name, "-out", credPath}, at...)...)
	require.Equal(t, 0, code, "enrol %s: %s", name, stderr)
	cred, err := httpsync.ReadCredentialFile(credPath)
	require.NoError(t, err)
	cred, err = cred.WithIdentity(keys)
	require.NoError(t, err)
	return &importTablet{rep: rep, cred: cred, keys: keys}
}

// TestEnrolEnrolsTheCloudOnce: the first cloud enrol enrols the cloud's
// own key pair in the roster, for a long time, and the credential's
// roster carries it (so the device can seal for the cloud and check its
// replies); later enrolments keep that enrolment.
func TestEnrolEnrolsTheCloudOnce(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "cloud-data")
	var outs []string
	var creds []*httpsync.Credential
	for _, name := range []string{"kamuga-tablet-1", "kamuga-tablet-2"} {
		keys, err := device.Generate(replica.NewID(), "kamuga")
		require.NoError(t, err)
		req := filepath.Join(t.TempDir(), "enrol-request.pem")
		require.NoError(t, os.WriteFile(req, keys.RequestPEM(), 0o644))
		credPath := filepath.Join(t.TempDir(), name+".pem")
		code, stdout, stderr := cloud(t, "enrol", "-dir", dir, "-request", req, "-device", name, "-out", credPath)
		require.Equal(t, 0, code, "enrol %s: %s", name, stderr)
		cred, err := httpsync.ReadCredentialFile(credPath)
		require.NoError(t, err)
		outs, creds = append(outs, stdout), append(creds, cred)
	}
	assert.Contains(t, outs[0], "Enrolled the cloud (replica "+creds[0].CloudReplica+") in the relay roster")
	assert.NotContains(t, outs[1], "Enrolled the cloud", "the cloud is enrolled once")

	st, err := openState(ctx, where{Dir: dir})
	require.NoError(t, err)
	defer st.Close()
	id, created, err := st.Identity(ctx, replica.NewID())
	require.NoError(t, err)
	require.False(t, created, "the cloud's key pair was kept by enrol")
	assert.Equal(t, creds[0].CloudReplica, id.ReplicaID(), "the key pair is the cloud replica's")
	var cloudRecords int
	a, _, err := st.Authority(ctx)
	require.NoError(t, err)
	roster, err := device.NewRoster(rosterConfig(a))
	require.NoError(t, err)
	_, err = st.MergeRoster(ctx, roster, 0)
	require.NoError(t, err)
	for _, e := range roster.Enrolments() {
		if e.Device.ReplicaID == id.ReplicaID() {
			cloudRecords++
			assert.True(t, e.Device.Equal(id.Public()), "the cloud's enrolment has its own keys")
			assert.Greater(t, time.Until(e.Expires), 9*365*24*time.Hour, "the cloud is enrolled for years")
		}
	}
	assert.Equal(t, 1, cloudRecords)
	for i, cred := range creds {
		r, err := cred.NewRoster()
		require.NoError(t, err)
		pub, err := r.Lookup(id.ReplicaID())
		require.NoError(t, err, "credential %d lets its device seal for the cloud", i)
		assert.True(t, pub.Equal(id.Public()))
	}
}
