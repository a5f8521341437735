package httpsync_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/internal/wire"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/transport/httpsync"
	"github.com/chartsync/chartsync/transport/transporttest"
)

// TestBadRequests sends what a well-behaved device never would. Each
// request gets the right status and typed client error, and the cloud's
// data (every chart's heads, every peer's positions) is exactly as before.
func TestBadRequests(t *testing.T) {
	ctx := context.Background()
	const maxBody = 64 << 10
	c := newCloud(t, cloudOptions{config: httpsync.Config{MaxBodyBytes: maxBody}})
	a := c.newDevice(t, "kamuga", "kamuga-tablet-1", fastRetries())
	b := c.newDevice(t, "kamuga", "kamuga-laptop-2", fastRetries())
	lwanda := c.newDevice(t, "lwanda", "lwanda-phone-1", fastRetries())

	// The cloud holds data from all three before the bad requests.
	wanjiru := registerAt(t, a.rep, "Wanjiru", "Mwangi", "kamuga")
	edit(t, a.rep, wanjiru, amoxicillin(500))
	registerAt(t, lwanda.rep, "Nafula", "Wekesa", "lwanda")
	a.sync(t)
	b.sync(t)
	lwanda.sync(t)
	// Each device has a change the cloud lacks.
	edit(t, a.rep, wanjiru, allergy(1))
	edit(t, b.rep, wanjiru, allergy(2))

	good, err := a.rep.MakeBundle(ctx, c.rep.ID())
	require.NoError(t, err)
	require.Positive(t, good.Changes, "a's bundle carries its new change")

	_, body, err := wire.Decode(good.Data, 'B', replica.BundleVersion, replica.MaxBundleBytes)
	require.NoError(t, err)
	version2 := wire.Encode('B', replica.BundleVersion+1, body)

	other, err := replica.New(ctx, memStore(), replica.Config{})
	require.NoError(t, err)
	defer other.Close()
	misaddressed, err := a.rep.MakeBundle(ctx, other.ID())
	require.NoError(t, err)

	fromB, err := b.rep.MakeBundle(ctx, c.rep.ID())
	require.NoError(t, err)

	// a holds a chart of another clinic (say, from a file) and changes it:
	// an unfiltered bundle carries it.
	foreign := registerAt(t, a.rep, "Juma", "Banda", "lwanda")
	outOfScope, err := a.rep.MakeBundle(ctx, c.rep.ID())
	require.NoError(t, err)

	oversized := make([]byte, maxBody+1)
	_, _ = rand.Read(oversized)

	otherCA := newCA(t)
	stranger := enrolDevice(t, otherCA, httpsync.Enrolment{Replica: a.rep.ID(), Clinic: "kamuga", Device: "stranger",
		CloudURL: c.url, CloudReplica: c.rep.ID(), ServerTrust: []*x509.Certificate{c.ca.Cert}})
	expired := enrolDevice(t, c.ca, httpsync.Enrolment{Replica: a.rep.ID(), Clinic: "kamuga", Device: "old",
		Now: time.Now().Add(-48 * time.Hour), Valid: 24 * time.Hour,
		CloudURL: c.url, CloudReplica: c.rep.ID(), ServerTrust: []*x509.Certificate{c.ca.Cert}})

	clientFor := func(cred *httpsync.Credential) *httpsync.Client {
		cfg := fastRetries()
		cfg.Credential = cred
		cl, err := httpsync.NewClient(a.rep, cfg)
		require.NoError(t, err)
		t.Cleanup(func() { _ = cl.Close() })
		return cl
	}
	// A client that trusts the cloud but presents no certificate.
	anonymous := func() *httpsync.Client {
		pool := x509.NewCertPool()
		pool.AddCert(c.ca.Cert)
		cfg := fastRetries()
		cfg.URL, cfg.CloudReplica = c.url, c.rep.ID()
		cfg.HTTPClient = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}}}
		cl, err := httpsync.NewClient(a.rep, cfg)
		require.NoError(t, err)
		return cl
	}()

	for _, tc := range []struct {
		name   string
		client *httpsync.Client
		body   []byte
		status int
		code   string
		is     []error
	}{
		{"garbage", a.client, []byte("this is not a bundle"), 400, httpsync.CodeMalformed, []error{httpsync.ErrMalformed, replica.ErrMalformedBundle}},
		{"empty body", a.client, nil, 400, httpsync.CodeMalformed, []error{httpsync.ErrMalformed, replica.ErrMalformedBundle}},
		{"truncated bundle", a.client, good.Data[:len(good.Data)/2], 400, httpsync.CodeMalformed, []error{httpsync.ErrMalformed, replica.ErrMalformedBundle}},
		{"bit-flipped bundle", a.client, flip(good.Data, len(good.Data)/2), 400, httpsync.CodeMalformed, []error{httpsync.ErrMalformed}},
		{"unknown version", a.client, version2, 400, httpsync.CodeVersion, []error{httpsync.ErrMalformed, replica.ErrBundleVersion}},
		{"addressed to another replica", a.client, misaddressed.Data, 400, httpsync.CodeWrongRecipient, []error{httpsync.ErrMalformed, replica.ErrWrongRecipient}},
		{"oversized body", a.client, oversized, 413, httpsync.CodeTooLarge, []error{httpsync.ErrTooLarge}},
		{"a body 128 times the limit", a.client, bytes.Repeat(oversized, 128), 413, httpsync.CodeTooLarge, []error{httpsync.ErrTooLarge}},
		{"another device's bundle", a.client, fromB.Data, 403, httpsync.CodeWrongSender, []error{httpsync.ErrForbidden}},
		{"a change outside the clinic's scope", a.client, outOfScope.Data, 403, httpsync.CodeOutOfScope, []error{httpsync.ErrForbidden}},
		{"a credential from another CA", clientFor(stranger), good.Data, 401, httpsync.CodeBadCredential, []error{httpsync.ErrUnauthorized, httpsync.ErrCredentialRejected}},
		{"an expired credential", clientFor(expired), good.Data, 401, httpsync.CodeExpiredCredential, []error{httpsync.ErrUnauthorized, httpsync.ErrCredentialExpired}},
		{"no credential", anonymous, good.Data, 401, httpsync.CodeNoCredential, []error{httpsync.ErrUnauthorized, httpsync.ErrNoCredential}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := snapshotOf(t, c.rep)
			_, err := tc.client.PostRaw(ctx, tc.body)
			require.Error(t, err, "the cloud accepted %s", tc.name)
			var se *httpsync.StatusError
			require.ErrorAs(t, err, &se, "the refusal is a status error")
			assert.Equal(t, tc.status, se.Status, "status for %s", tc.name)
			assert.Equal(t, tc.code, se.Code, "error code for %s", tc.name)
			assert.NotEmpty(t, se.Message, "the refusal explains itself")
			for _, want := range tc.is {
				assert.ErrorIs(t, err, want, "the error for %s matches %v", tc.name, want)
			}
			assert.Equal(t, before, snapshotOf(t, c.rep), "the cloud's data changed after %s", tc.name)
		})
	}

	t.Run("a chunked oversized body", func(t *testing.T) {
		before := snapshotOf(t, c.rep)
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: a.cred.TLSConfig()}}
		defer hc.CloseIdleConnections()
		// No Content-Length: the limit is found while reading.
		resp, err := hc.Post(c.url+httpsync.PathSync, httpsync.ContentType, io.MultiReader(bytes.NewReader(oversized)))
		require.NoError(t, err)
		defer resp.Body.Close()
		assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
		var eb struct{ Error, Message string }
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&eb), "error bodies are JSON")
		assert.Equal(t, httpsync.CodeTooLarge, eb.Error)
		assert.Equal(t, before, snapshotOf(t, c.rep))
	})

	t.Run("the device's certificate presented with another key", func(t *testing.T) {
		// Someone copied a's credential file (it holds no secret) and
		// presents its certificate with a key of their own. The client
		// refuses to build such a configuration; forced by hand, the
		// handshake fails: TLS checks that the peer holds the
		// certificate's key.
		_, stolenKey, err := ed25519.GenerateKey(rand.Reader)
		require.NoError(t, err)
		_, err = a.cred.WithKey(stolenKey)
		require.ErrorIs(t, err, httpsync.ErrKeyMismatch, "the client refuses a key that is not the certificate's")
		before := snapshotOf(t, c.rep)
		cfg := a.cred.TLSConfig()
		cfg.Certificates = []tls.Certificate{{Certificate: [][]byte{a.cred.Cert.Raw}, PrivateKey: stolenKey, Leaf: a.cred.Cert}}
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}
		defer hc.CloseIdleConnections()
		resp, err := hc.Post(c.url+httpsync.PathSync, httpsync.ContentType, bytes.NewReader(good.Data))
		if err == nil {
			resp.Body.Close()
		}
		require.Error(t, err, "the cloud accepted a certificate without its key")
		assert.Equal(t, before, snapshotOf(t, c.rep), "the cloud's data is unchanged")

		// The same request with the device's own key goes through.
		hc2 := &http.Client{Transport: &http.Transport{TLSClientConfig: a.cred.TLSConfig()}}
		defer hc2.CloseIdleConnections()
		resp, err = hc2.Get(c.url + httpsync.PathHello)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode, "the genuine key is accepted")
	})

	t.Run("wrong method and path", func(t *testing.T) {
		hc := &http.Client{Transport: &http.Transport{TLSClientConfig: a.cred.TLSConfig()}}
		defer hc.CloseIdleConnections()
		resp, err := hc.Get(c.url + httpsync.PathSync)
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
		assert.Equal(t, http.MethodPost, resp.Header.Get("Allow"))
		resp, err = hc.Get(c.url + "/v2/sync")
		require.NoError(t, err)
		resp.Body.Close()
		assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	})

	t.Run("the well-behaved client leaves the foreign chart out", func(t *testing.T) {
		a.sync(t)
		assert.NotContains(t, transporttest.ChartIDs(t, c.rep), foreign, "the cloud never receives a chart outside the device's clinic")
		requireHasChanges(t, c.rep, wanjiru, nil, "cloud")
	})

	refused := c.handler.Stats().Refused
	assert.GreaterOrEqual(t, refused, int64(14), "the handler counts refusals")
	assert.True(t, strings.HasPrefix(c.url, "https://"))
}

// flip returns a copy of data with one bit flipped at i.
func flip(data []byte, i int) []byte {
	out := bytes.Clone(data)
	out[i] ^= 0x10
	return out
}
