package relay_test

import (
	"context"
	"fmt"
	"time"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/store"
	"github.com/chartsync/chartsync/transport/relay"
)

// A cloud opens a clinic's relay bundle without an endpoint, applies it
// its own way, answers it sealed to the clinic, and refuses a replay by
// its own record of what it applied.
func ExampleUnseal() {
	ctx := context.Background()
	authority, _ := device.NewAuthority()
	roster, _ := device.NewRoster(device.RosterConfig{Authorities: []device.TrustedAuthority{{Key: authority.PublicKey()}}})
	open := func(clinic string) (*replica.Replica, *device.Identity) {
		keys, _ := device.Generate(replica.NewID(), clinic)
		r, _ := replica.New(ctx, store.NewMem(), replica.Config{Signer: keys})
		enrolment, _ := authority.Enrol(keys.Public(), time.Now(), 365*24*time.Hour)
		roster.Add(enrolment)
		return r, keys
	}
	clinic, clinicKeys := open("kamuga")
	defer clinic.Close()
	cloud, cloudKeys := open("cloud")
	defer cloud.Close()
	nurse := record.Author{UserID: "u-achieng", Role: record.RoleNurse}
	clinic.Register(ctx, nurse, record.Register{GivenName: "Wanjiru", Sex: "female", EstimatedBirthYear: 1988, HomeClinic: "kamuga"})
	out, _ := clinic.MakeBundle(ctx, cloud.ID())
	raw, _ := relay.Seal(clinicKeys, roster, cloud.ID(), out.Data, time.Now(), 24*time.Hour)

	applied := map[string]bool{} // the cloud's record of the bundles it applied
	for range 2 {
		u, err := relay.Unseal(raw, cloudKeys, roster, time.Now())
		if err != nil {
			fmt.Println("refused:", err)
			continue
		}
		if applied[u.Key()] {
			fmt.Println("a replay from clinic", u.From.Clinic)
			continue
		}
		rec, _ := cloud.ReceiveFrom(ctx, u.Bundle, replica.ReceiveOptions{Sender: u.Sender})
		applied[u.Key()] = true
		fmt.Println("applied", rec.Applied, "change from clinic", u.From.Clinic)
	}
	answer, _ := cloud.MakeBundle(ctx, clinic.ID())
	reply, _ := relay.Seal(cloudKeys, roster, clinic.ID(), answer.Data, time.Now(), 24*time.Hour)
	_, err := relay.Unseal(reply, cloudKeys, roster, time.Now())
	fmt.Println("the cloud cannot open its own reply:", err != nil)
	// Output:
	// applied 1 change from clinic kamuga
	// a replay from clinic kamuga
	// the cloud cannot open its own reply: true
}
