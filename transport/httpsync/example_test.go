package httpsync_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http/httptest"
	"time"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/store"
	"github.com/chartsync/chartsync/transport/httpsync"
)

// A cloud serves its replica over TLS; a clinic device enrolled at it
// registers a patient offline and syncs.
func Example() {
	ctx := context.Background()
	now := time.Now()

	// The cloud: a replica, a device CA, a server certificate, the handler.
	cloud, _ := replica.New(ctx, store.NewMem(), replica.Config{})
	defer cloud.Close()
	ca, _ := httpsync.NewDeviceCA("example device CA", now, time.Hour)
	certPEM, keyPEM, _ := ca.IssueServerCert([]string{"127.0.0.1"}, now, time.Hour)
	cert, _ := tls.X509KeyPair(certPEM, keyPEM)
	h, _ := httpsync.NewHandler(httpsync.Config{Replica: cloud, DeviceCA: ca.Pool()})
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = httpsync.ServerTLSConfig(cert)
	srv.StartTLS()
	defer srv.Close()

	// A device of clinic kamuga makes its keys and an enrolment request.
	tablet, _ := replica.New(ctx, store.NewMem(), replica.Config{})
	defer tablet.Close()
	keys, _ := device.Generate(tablet.ID(), "kamuga") // saved on the device: keys.Save(path)
	request := keys.Request()                         // public: travels to the cloud's administrator

	// The cloud checks the request (the device holds the key) and issues
	// a certificate for the device's own key.
	pub, err := device.ParseRequest(request)
	if err != nil {
		fmt.Println("request:", err)
		return
	}
	cred, _ := ca.Enrol(httpsync.Enrolment{
		Replica: pub.ReplicaID, Clinic: pub.Clinic, Device: "kamuga-tablet-1", PublicKey: pub.SignKey, Valid: time.Hour,
		CloudURL: srv.URL, CloudReplica: cloud.ID(), ServerTrust: []*x509.Certificate{ca.Cert},
	})

	// Back on the device: the credential and the device's own key.
	cred, err = cred.WithIdentity(keys)
	if err != nil {
		fmt.Println("credential:", err)
		return
	}
	client, _ := httpsync.NewClient(tablet, httpsync.ClientConfig{Credential: cred})
	defer client.Close()

	nurse := record.Author{UserID: "u-achieng", Name: "Nurse Achieng", Role: record.RoleNurse}
	_, _ = tablet.Register(ctx, nurse, record.Register{
		GivenName: "Wanjiru", FamilyName: "Mwangi", Sex: "female", EstimatedBirthYear: 1988, HomeClinic: "kamuga",
	})
	report, err := client.SyncReport(ctx)
	if err != nil {
		fmt.Println("sync:", err)
		return
	}
	fmt.Printf("round trips: %d, changes sent: %d\n", report.RoundTrips, report.ChangesSent)
	charts, _ := cloud.Find(ctx, "Wanjiru", 0)
	fmt.Printf("the cloud holds %s %s of %s\n", charts[0].GivenName, charts[0].FamilyName, charts[0].HomeClinic)
	// Output:
	// round trips: 1, changes sent: 1
	// the cloud holds Wanjiru Mwangi of kamuga
}
