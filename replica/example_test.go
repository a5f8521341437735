package replica_test

import (
	"context"
	"fmt"

	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/store"
)

// A clinic registers a patient offline and syncs with the cloud; a second
// sync, with nothing new, is one small round trip.
func Example() {
	ctx := context.Background()
	clinic, err := replica.New(ctx, store.NewMem(), replica.Config{}) // replica.Open(ctx, path, ...) on disk
	if err != nil {
		panic(err)
	}
	defer clinic.Close()
	cloud, err := replica.New(ctx, store.NewMem(), replica.Config{})
	if err != nil {
		panic(err)
	}
	defer cloud.Close()

	nurse := record.Author{UserID: "u-amina", Name: "Amina", Role: record.RoleNurse, Device: "tablet-1"}
	id, err := clinic.Register(ctx, nurse, record.Register{
		GivenName: "Wanjiru", FamilyName: "Mwangi", Sex: "female", EstimatedBirthYear: 1988, HomeClinic: "kamuga-dispensary",
	})
	if err != nil {
		panic(err)
	}
	if _, err := clinic.Edit(ctx, id, nurse, record.AddAllergy{Substance: "Penicillin", Severity: "severe"}); err != nil {
		panic(err)
	}

	stats, err := replica.SyncPair(ctx, clinic, cloud)
	if err != nil {
		panic(err)
	}
	fmt.Println("changes sent to the cloud:", stats.ChangesAToB)
	v, err := cloud.Chart(ctx, id)
	if err != nil {
		panic(err)
	}
	fmt.Println(v.Patient.FullName(), "is allergic to", v.Allergies[0].Substance)

	stats, err = replica.SyncPair(ctx, clinic, cloud)
	if err != nil {
		panic(err)
	}
	fmt.Println("idle sync:", stats.RoundTrips, "round trip,", stats.ChangesAToB+stats.ChangesBToA, "changes,", stats.BytesAToB+stats.BytesBToA < 200, "under 200 bytes")
	// Output:
	// changes sent to the cloud: 2
	// Wanjiru Mwangi is allergic to Penicillin
	// idle sync: 1 round trip, 0 changes, true under 200 bytes
}

// A bundle can travel one way, on a USB stick or a phone: the recipient
// applies it whenever it arrives, as many times as it arrives.
func ExampleReplica_MakeBundle() {
	ctx := context.Background()
	clinic, _ := replica.New(ctx, store.NewMem(), replica.Config{})
	defer clinic.Close()
	hub, _ := replica.New(ctx, store.NewMem(), replica.Config{})
	defer hub.Close()
	chw := record.Author{UserID: "u-zawadi", Role: record.RoleCommunityHealthWorker}
	if _, err := clinic.Register(ctx, chw, record.Register{GivenName: "Baraka", Sex: "male", EstimatedBirthYear: 1960, HomeClinic: "siaya"}); err != nil {
		panic(err)
	}

	out, err := clinic.MakeBundle(ctx, hub.ID()) // write out.Data to a file
	if err != nil {
		panic(err)
	}
	for range 2 { // the file is carried twice
		got, err := hub.Receive(ctx, out.Data)
		if err != nil {
			panic(err)
		}
		fmt.Printf("applied %d, already held %d\n", got.Applied, got.Duplicates)
	}
	// Output:
	// applied 1, already held 0
	// applied 0, already held 1
}
