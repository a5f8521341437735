package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/audit"
	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/store"
	"github.com/chartsync/chartsync/transport/file"
	"github.com/chartsync/chartsync/transport/httpsync"
	"github.com/chartsync/chartsync/transport/transporttest"
)

// importTablet is a device enrolled at a cloud with "cloud enrol",
// signing its changes and bundles with its own keys.
type importTablet struct {
	rep  *replica.Replica
	cred *httpsync.Credential
	keys *device.Identity
}

func enrolTablet(t *testing.T, dir, clinic, name string) *importTablet {
	t.Helper()
	ctx := context.Background()
	keys, err := device.Generate(replica.NewID(), clinic)
	require.NoError(t, err)
	rep, err := replica.New(ctx, store.NewMem(), replica.Config{Signer: keys})
	require.NoError(t, err)
	t.Cleanup(func() { _ = rep.Close() })
	req := filepath.Join(t.TempDir(), "enrol-request.pem")
	require.NoError(t, os.WriteFile(req, keys.RequestPEM(), 0o644))
	credPath := filepath.Join(t.TempDir(), name+".pem")
	code, _, stderr := cloud(t, "enrol", "-dir", dir, "-request", req, "-device", name, "-out", credPath)
	require.Equal(t, 0, code, "enrol %s: %s", name, stderr)
	cred, err := httpsync.ReadCredentialFile(credPath)
	require.NoError(t, err)
	cred, err = cred.WithIdentity(keys)
	require.NoError(t, err)
	return &importTablet{rep: rep, cred: cred, keys: keys}
}

// chartWithPrescription registers a patient at clinic (by a nurse) and
// prescribes for her (by a clinician).
func (d *importTablet) chartWithPrescription(t *testing.T, clinic string) string {
	t.Helper()
	ctx := context.Background()
	id, err := d.rep.Register(ctx, record.Author{UserID: "u-achieng", Role: record.RoleNurse},
		record.Register{GivenName: "Wanjiru", Sex: "female", EstimatedBirthYear: 1988, HomeClinic: clinic})
	require.NoError(t, err)
	_, err = d.rep.Edit(ctx, id, record.Author{UserID: "u-mutua", Role: record.RoleClinician},
		record.Prescribe{Drug: "Amoxicillin", Dose: 500, DoseUnit: "mg", Route: "oral", Frequency: "TDS", DurationDays: 5})
	require.NoError(t, err)
	return id
}

// bundle is what the device's export-bundle would write to a stick: its
// bundle for the cloud, signed.
func (d *importTablet) bundle(t *testing.T) []byte {
	t.Helper()
	out, err := d.rep.MakeBundle(context.Background(), d.cred.CloudReplica)
	require.NoError(t, err)
	return out.Data
}

// post sends a bundle to the cloud over HTTPS as the device, and returns
// the status and the error code of the answer.
func (d *importTablet) post(t *testing.T, data []byte) (int, string) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: d.cred.TLSConfig()}}
	defer client.CloseIdleConnections()
	resp, err := client.Post(d.cred.CloudURL+httpsync.PathSync, httpsync.ContentType, bytes.NewReader(data))
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var e struct {
		Error string `json:"error"`
	}
	_ = json.Unmarshal(body, &e)
	return resp.StatusCode, e.Error
}

// accessOf exports the access log entries of a device, with their
// sequence numbers and times cleared.
func accessOf(t *testing.T, dir, replicaID string) []audit.Entry {
	t.Helper()
	code, stdout, stderr := cloud(t, "audit", "-dir", dir, "-device", replicaID)
	require.Equal(t, 0, code, "audit: %s", stderr)
	var out []audit.Entry
	dec := json.NewDecoder(strings.NewReader(stdout))
	for dec.More() {
		var e audit.Entry
		require.NoError(t, dec.Decode(&e))
		e.Seq, e.Time = 0, time.Time{}
		out = append(out, e)
	}
	return out
}

// sameWork clears what differs between two devices' entries of the
// same work: the device and the chart.
func sameWork(es []audit.Entry) []audit.Entry {
	out := make([]audit.Entry, len(es))
	for i, e := range es {
		e.Device = ""
		if e.Chart != "*" {
			e.Chart = "chart"
		}
		out[i] = e
	}
	return out
}

// TestImportChecksAndRecordsLikeHTTPS: a bundle file imported at the
// cloud goes through the same checks and the same access log as a sync
// over HTTPS. The same out-of-scope bundle is refused over HTTPS and
// from a file with the same code and the same refused entry; a good
// file's writes are recorded as an HTTPS sync's are, and the reply file
// carries the clinic's charts, its reads recorded.
func TestImportChecksAndRecordsLikeHTTPS(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "cloud-data")
	_, stop := server(t, dir)
	stray := enrolTablet(t, dir, "kamuga", "kamuga-stray")
	online := enrolTablet(t, dir, "kamuga", "kamuga-online")
	carried := enrolTablet(t, dir, "kamuga", "kamuga-carried")

	// A kamuga tablet holding a lwanda patient's chart.
	stray.chartWithPrescription(t, "lwanda")
	outOfScope := stray.bundle(t)
	status, code := stray.post(t, outOfScope)
	assert.Equal(t, http.StatusForbidden, status)
	assert.Equal(t, httpsync.CodeOutOfScope, code)

	// The same work, one tablet over HTTPS, the other by USB stick.
	onlineChart := online.chartWithPrescription(t, "kamuga")
	client, err := httpsync.NewClient(online.rep, httpsync.ClientConfig{Credential: online.cred})
	require.NoError(t, err)
	_, err = client.Sync(ctx)
	require.NoError(t, err)
	require.NoError(t, client.Close())
	carriedChart := carried.chartWithPrescription(t, "kamuga")
	code2, _ := stop()
	require.Equal(t, 0, code2)

	stick := t.TempDir()
	cloudID := stray.cred.CloudReplica
	for _, d := range []struct {
		from string
		data []byte
	}{{stray.rep.ID(), outOfScope}, {carried.rep.ID(), carried.bundle(t)}} {
		require.NoError(t, os.WriteFile(filepath.Join(stick, file.NameFor(d.from, cloudID, d.data)), d.data, 0o600))
	}
	exit, stdout, stderr := cloud(t, "import", "-dir", dir, "-from", stick)
	assert.Equal(t, 1, exit, "a refused file fails the import: %s", stderr)
	assert.Contains(t, stdout, "Refused cs-"+stray.rep.ID())
	assert.Contains(t, stdout, httpsync.CodeOutOfScope, "the file is refused with the code HTTPS answered")
	assert.Contains(t, stdout, "Imported cs-"+carried.rep.ID())
	assert.Contains(t, stdout, "Imported 1 of 2 bundle files")

	refusals := accessOf(t, dir, stray.rep.ID())
	require.Len(t, refusals, 2, "the refusal over HTTPS and the file's: %+v", refusals)
	assert.Equal(t, audit.Refused, refusals[0].Action)
	assert.True(t, strings.HasPrefix(refusals[0].Detail, httpsync.CodeOutOfScope+": "), "the refusal's detail: %q", refusals[0].Detail)
	assert.Equal(t, sameWork(refusals[:1]), sameWork(refusals[1:]), "the file's refusal is recorded as the HTTPS one")
	assert.Equal(t, refusals[0].Device, refusals[1].Device)

	overHTTPS, byFile := accessOf(t, dir, online.rep.ID()), accessOf(t, dir, carried.rep.ID())
	require.Len(t, overHTTPS, 2, "the nurse's and the clinician's writes over HTTPS: %+v", overHTTPS)
	require.Len(t, byFile, 3, "the same writes from the file, and the reply's read: %+v", byFile)
	assert.Equal(t, sameWork(overHTTPS), sameWork(byFile[:2]), "the file's writes are recorded as the HTTPS sync's")
	for _, e := range byFile[:2] {
		assert.Equal(t, carriedChart, e.Chart)
	}
	assert.Equal(t, audit.Entry{Action: audit.Read, Device: carried.rep.ID(), Clinic: "kamuga", Chart: onlineChart, Changes: 2},
		byFile[2],
		"the reply carries the other kamuga tablet's chart, and that is recorded")

	// The reply file is the carried tablet's to import.
	im, err := file.Import(ctx, carried.rep, stick)
	require.NoError(t, err)
	require.Equal(t, 1, im.Accepted, "the reply file")
	assert.ElementsMatch(t, []string{onlineChart, carriedChart}, transporttest.ChartIDs(t, carried.rep), "the clinic's charts, and nothing of the refused lwanda chart")
}
