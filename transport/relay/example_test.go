package relay_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/transport/relay"
)

// A village clinic's registration reaches the hub on a phone that can
// read none of it.
func Example() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "relay-example-*")
	defer os.RemoveAll(dir)

	authority, _ := device.NewAuthority()
	roster, _ := device.NewRoster(device.RosterConfig{Authorities: []device.TrustedAuthority{{Key: authority.PublicKey()}}})
	open := func(name string) (*replica.Replica, *device.Identity) {
		r, _ := replica.Open(ctx, filepath.Join(dir, name+".db"), replica.Config{})
		keys, _ := device.Generate(r.ID(), name)
		enrolment, _ := authority.Enrol(keys.Public(), time.Now(), 365*24*time.Hour)
		roster.Add(enrolment)
		return r, keys
	}
	village, villageKeys := open("kamuga")
	defer village.Close()
	hub, hubKeys := open("hub")
	defer hub.Close()

	villageEnd, _ := relay.OpenEndpoint(filepath.Join(dir, "kamuga-relay"), village, villageKeys, roster, relay.Config{Peers: []string{hub.ID()}})
	defer villageEnd.Close()
	hubEnd, _ := relay.OpenEndpoint(filepath.Join(dir, "hub-relay"), hub, hubKeys, roster, relay.Config{})
	defer hubEnd.Close()
	phone, _ := relay.OpenNode(filepath.Join(dir, "phone"), roster, relay.NodeConfig{})
	defer phone.Close()

	nurse := record.Author{UserID: "u-achieng", Role: record.RoleNurse}
	village.Register(ctx, nurse, record.Register{GivenName: "Wanjiru", FamilyName: "Mwangi", Sex: "female", EstimatedBirthYear: 1988, HomeClinic: "kamuga"})

	villageEnd.Sync(ctx)                                    // seal a bundle for the hub
	picked, _ := relay.Carry(ctx, villageEnd.Node(), phone) // the phone visits the village
	for _, it := range picked.Carried {
		raw, _ := phone.Read(ctx, it.Key())
		fmt.Println("the phone can read the patient's name:", bytes.Contains(raw, []byte("Wanjiru")))
	}
	relay.Carry(ctx, phone, hubEnd.Node()) // and then the hub
	st, _ := hubEnd.Sync(ctx)              // the hub opens it and acknowledges it
	fmt.Println("bundles opened at the hub:", st.BundlesReceived)
	charts, _ := hub.Find(ctx, "Wanjiru", 0)
	fmt.Println("charts at the hub:", len(charts))
	// Output:
	// the phone can read the patient's name: false
	// bundles opened at the hub: 1
	// charts at the hub: 1
}
