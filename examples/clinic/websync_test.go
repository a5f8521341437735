package main

import (
	"bufio"
	"context"
	"crypto/x509"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/device/keyring"
	"github.com/chartsync/chartsync/examples/clinic/web"
	"github.com/chartsync/chartsync/transport/file"
	"github.com/chartsync/chartsync/transport/httpsync"
	"github.com/chartsync/chartsync/transport/relay"
)

// relayCloud is a test cloud that also carries relay bundles: an
// enrolment authority, the cloud's own keys enrolled by it, and a roster
// of the devices it enrolled.
type relayCloud struct {
	*testCloud
	auth   *device.Authority
	keys   *device.Identity
	roster *device.Roster
}

// tabletAndLaptop returns a relay cloud and two devices of clinic kamuga
// enrolled with it: the tablet, set up with administrator u-admin
// (password admin-pass-1), who is logged in on it, and the laptop.
func tabletAndLaptop(t *testing.T) (cloud *relayCloud, tab, laptop string) {
	t.Helper()
	cloud = newRelayCloud(t)
	tab, laptop = t.TempDir(), t.TempDir()
	must(t, tab, twice("admin-pass-1"), "init", "-clinic", "kamuga", "-device", "tab", "-admin", "u-admin", "-admin-name", "Wairimu")
	must(t, laptop, "", "init", "-clinic", "kamuga", "-device", "laptop")
	cloud.enrolAll(t, map[string]string{"tab": tab, "laptop": laptop})
	must(t, tab, "admin-pass-1\n", "login", "-user", "u-admin")
	return cloud, tab, laptop
}

func newRelayCloud(t *testing.T) *relayCloud {
	c := &relayCloud{testCloud: newTestCloud(t)}
	var err error
	c.auth, err = device.NewAuthority()
	require.NoError(t, err)
	c.keys, err = device.Generate(c.r.ID(), "cloud")
	require.NoError(t, err)
	c.roster, err = device.NewRoster(device.RosterConfig{Authorities: []device.TrustedAuthority{{Key: c.auth.PublicKey()}}})
	require.NoError(t, err)
	rec, err := c.auth.Enrol(c.keys.Public(), time.Now(), time.Hour)
	require.NoError(t, err)
	_, err = c.roster.Add(rec)
	require.NoError(t, err)
	return c
}

// enrolAll enrols the devices in dirs for HTTPS and relay bundles, as
// the cloud's enrol command does, and connects each.
func (c *relayCloud) enrolAll(t *testing.T, dirs map[string]string) {
	recs := map[string][]byte{}
	for name, dir := range dirs {
		rec, err := c.auth.EnrolRequest(mustRead(t, filepath.Join(dir, "enrol-request.pem")), time.Now(), time.Hour)
		require.NoError(t, err)
		_, err = c.roster.Add(rec)
		require.NoError(t, err)
		recs[name] = rec
	}
	for name, dir := range dirs {
		pub, err := device.ParseRequest(mustRead(t, filepath.Join(dir, "enrol-request.pem")))
		require.NoError(t, err)
		cred, err := c.ca.Enrol(httpsync.Enrolment{Replica: pub.ReplicaID, Clinic: pub.Clinic, Device: name, PublicKey: pub.SignKey, Now: time.Now(),
			CloudURL: c.url, CloudReplica: c.r.ID(), ServerTrust: []*x509.Certificate{c.ca.Cert}})
		require.NoError(t, err)
		cred.Authority, cred.Enrolment, cred.Roster = c.auth.PublicKey(), recs[name], c.roster.Encode()
		path := filepath.Join(t.TempDir(), name+".pem")
		require.NoError(t, cred.WriteFile(path))
		must(t, dir, "", "connect", "-credential", path)
	}
}

// webApp opens the data directory as the serve command does, for its
// webSyncer; the replica is closed at the end of the test or by close.
func webApp(t *testing.T, dir string) (*app, webSyncer) {
	a := &app{dir: dir, in: bufio.NewReader(strings.NewReader("")), raw: strings.NewReader(""), out: io.Discard, log: io.Discard}
	if _, err := os.Stat(filepath.Join(dir, keyringFile)); err == nil {
		// As the web app's login does: the administrator's password
		// unlocks the data.
		key, err := keyring.Unlock(filepath.Join(dir, keyringFile), "u-admin", "admin-pass-1")
		require.NoError(t, err)
		a.key = key
	}
	_, err := a.replica(context.Background())
	require.NoError(t, err)
	t.Cleanup(a.close)
	return a, webSyncer{a}
}

// TestWebSyncerCarriesByHand: the web app's USB and phone couriers are the
// library's, addressed to the device's cloud. The tablet writes a file to
// a stick; the cloud reads it and writes one for the laptop, which reads
// it (a damaged file beside it is refused and listed, the rest taken);
// the tablet hands a relay bundle to a phone's folder, sealed for the
// cloud, which opens it. A folder that is not there is refused with
// web.ErrNotAFolder.
func TestWebSyncerCarriesByHand(t *testing.T) {
	ctx := context.Background()
	cloud, tab, laptop := tabletAndLaptop(t)
	out := must(t, tab, "", "register", "-given", "Wanjiru", "-family", "Mwangi", "-sex", "female", "-born-year", "1988")
	chart := regexp.MustCompile(`chart ([0-9a-f-]+)`).FindStringSubmatch(out)
	require.Len(t, chart, 2, out)

	// By USB: the tablet to the cloud, the cloud to the laptop.
	usb := t.TempDir()
	a, tabSync := webApp(t, tab)
	_, err := tabSync.ExportFile(ctx, filepath.Join(usb, "missing"))
	assert.ErrorIs(t, err, web.ErrNotAFolder)
	res, err := tabSync.ExportFile(ctx, usb)
	require.NoError(t, err)
	assert.Equal(t, 1, res.Files)
	assert.Positive(t, res.Sent)
	assert.FileExists(t, res.Path)
	im, err := file.Import(ctx, cloud.r, usb)
	require.NoError(t, err)
	assert.Positive(t, im.Applied, "the cloud takes the tablet's changes from the stick")
	b, laptopSync := webApp(t, laptop)
	_, err = file.Export(ctx, cloud.r, b.r.ID(), usb)
	require.NoError(t, err)
	damaged := file.NameFor(cloud.r.ID(), b.r.ID(), []byte("damaged"))
	require.NoError(t, os.WriteFile(filepath.Join(usb, damaged), []byte("CSB not a bundle"), 0o600))
	res, err = laptopSync.ImportFile(ctx, usb)
	require.NoError(t, err, "a damaged file is listed, not an error")
	assert.Equal(t, 1, res.Files)
	assert.Positive(t, res.Received)
	assert.Contains(t, res.ChartIDs, chart[1])
	require.Len(t, res.Refused, 1)
	assert.Contains(t, res.Refused[0], damaged)
	v, err := b.r.Chart(ctx, chart[1])
	require.NoError(t, err, "the laptop holds the tablet's chart")
	assert.Equal(t, "Wanjiru", v.Patient.GivenName)
	b.close()

	// By phone: a new chart on the tablet, sealed for the cloud.
	a.close()
	out = must(t, tab, "", "register", "-given", "Otieno", "-family", "Odhiambo", "-sex", "male", "-born-year", "2019")
	second := regexp.MustCompile(`chart ([0-9a-f-]+)`).FindStringSubmatch(out)
	require.Len(t, second, 2, out)
	phone := t.TempDir()
	_, tabSync = webApp(t, tab)
	_, err = tabSync.HandToPhone(ctx, filepath.Join(phone, "missing"))
	assert.ErrorIs(t, err, web.ErrNotAFolder)
	res, err = tabSync.HandToPhone(ctx, phone)
	require.NoError(t, err)
	assert.Positive(t, res.Files, "a bundle is on the phone")
	assert.Positive(t, res.Sent)

	phoneNode, err := relay.OpenNode(phone, cloud.roster, relay.NodeConfig{})
	require.NoError(t, err)
	defer phoneNode.Close()
	hub, err := relay.OpenEndpoint(filepath.Join(t.TempDir(), "relay"), cloud.r, cloud.keys, cloud.roster, relay.Config{})
	require.NoError(t, err)
	defer hub.Close()
	_, _, err = relay.Exchange(ctx, phoneNode, hub.Node())
	require.NoError(t, err)
	st, err := hub.Sync(ctx)
	require.NoError(t, err)
	assert.Positive(t, st.ChangesApplied, "the cloud opens the tablet's bundle")
	_, err = cloud.r.Chart(ctx, second[1])
	assert.NoError(t, err, "the cloud holds the chart the phone carried")
}
