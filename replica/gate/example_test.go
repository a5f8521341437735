package gate_test

import (
	"context"
	"fmt"
	"time"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/gate"
	"github.com/chartsync/chartsync/replica/store"
)

// A cloud takes a bundle a device of one clinic carried in on a USB
// stick, and refuses it: it changes a chart of another clinic. The
// refusal's code is the one HTTPS would answer with, and the access log
// records it the same way.
func Example() {
	ctx := context.Background()
	auth, _ := device.NewAuthority()
	roster, _ := device.NewRoster(device.RosterConfig{Authorities: []device.TrustedAuthority{{Key: auth.PublicKey()}}})
	cloud, _ := replica.New(ctx, store.NewMem(), replica.Config{Keys: roster})
	defer cloud.Close()

	id, _ := device.Generate(replica.NewID(), "kamuga")
	rec, _ := auth.Enrol(id.Public(), time.Now().Truncate(time.Second), time.Hour)
	_, _ = roster.Add(rec)
	tablet, _ := replica.New(ctx, store.NewMem(), replica.Config{Signer: id})
	defer tablet.Close()
	nurse := record.Author{UserID: "u-achieng", Role: record.RoleNurse}
	_, _ = tablet.Register(ctx, nurse, record.Register{GivenName: "Amina", Sex: "female", EstimatedBirthYear: 1990, HomeClinic: "lwanda"})
	out, _ := tablet.MakeBundle(ctx, cloud.ID()) // signed: the file's content

	var log memLog
	g, _ := gate.New(gate.Config{Replica: cloud, AccessLog: &log})
	sender, err := gate.IdentifyBundle(out.Data, roster)
	if err != nil {
		fmt.Println("unauthenticated:", err)
		return
	}
	_, err = g.Receive(ctx, sender, out.Data)
	fmt.Println("sender's clinic:", sender.Clinic)
	fmt.Println("refused:", gate.CodeOf(err))
	fmt.Println("recorded:", log.all()[0].Action)
	// Output:
	// sender's clinic: kamuga
	// refused: out-of-scope
	// recorded: refused
}
