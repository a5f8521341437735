package httpsync_test

import (
	"crypto/x509"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/transport/httpsync"
)

// FuzzParseCredential: any bytes parse to a credential or an error, never
// a panic, and a parsed credential survives a round trip.
func FuzzParseCredential(f *testing.F) {
	ca, err := httpsync.NewDeviceCA("fuzz CA", time.Now(), time.Hour)
	require.NoError(f, err)
	cred := enrolDevice(f, ca, httpsync.Enrolment{Replica: replicaA, Clinic: "kamuga", Device: "tablet",
		CloudURL: "https://127.0.0.1:8443", CloudReplica: replicaB, ServerTrust: []*x509.Certificate{ca.Cert}})
	data, err := cred.MarshalPEM()
	require.NoError(f, err)
	f.Add(data)
	f.Add(data[:len(data)/2])
	f.Add([]byte("-----BEGIN CHARTSYNC CLOUD-----\nnot json\n-----END CHARTSYNC CLOUD-----\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := httpsync.ParseCredential(data)
		if err != nil {
			return
		}
		again, err := c.MarshalPEM()
		require.NoError(t, err, "a parsed credential marshals")
		c2, err := httpsync.ParseCredential(again)
		require.NoError(t, err, "a marshalled credential parses")
		require.Equal(t, c.Device, c2.Device)
		require.Equal(t, c.CloudURL, c2.CloudURL)
		require.True(t, c.Cert.Equal(c2.Cert))
	})
}
