package file_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/transport/file"
)

// A clinic with no signal sends its charts to the district hub on a USB
// stick. The hub's reply file acknowledges them, so the clinic's next
// export carries nothing it already delivered.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "file-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	clinic, err := replica.Open(ctx, filepath.Join(dir, "clinic.db"), replica.Config{})
	if err != nil {
		panic(err)
	}
	defer clinic.Close()
	hub, err := replica.Open(ctx, filepath.Join(dir, "hub.db"), replica.Config{})
	if err != nil {
		panic(err)
	}
	defer hub.Close()
	stick := filepath.Join(dir, "stick")
	if err := os.Mkdir(stick, 0o700); err != nil {
		panic(err)
	}

	nurse := record.Author{UserID: "u-amina", Name: "Amina", Role: record.RoleNurse, Device: "tablet-1"}
	id, err := clinic.Register(ctx, nurse, record.Register{
		GivenName: "Wanjiru", FamilyName: "Mwangi", Sex: "female", EstimatedBirthYear: 1988,
		Village: "Kamuga", HomeClinic: "kamuga-dispensary",
	})
	if err != nil {
		panic(err)
	}
	if _, err := clinic.Edit(ctx, id, nurse, record.AddAllergy{Substance: "Penicillin", Reaction: "rash", Severity: "moderate"}); err != nil {
		panic(err)
	}

	// At the clinic.
	ex, err := file.Export(ctx, clinic, hub.ID(), stick)
	if err != nil {
		panic(err)
	}
	fmt.Println("clinic exports", ex.Changes, "changes")

	// At the hub, days later.
	im, err := file.Import(ctx, hub, stick)
	if err != nil {
		panic(err)
	}
	fmt.Println("hub imports", im.Accepted, "file with", im.Applied, "new changes")
	reply, err := file.Export(ctx, hub, clinic.ID(), stick)
	if err != nil {
		panic(err)
	}
	fmt.Println("hub replies with", reply.Changes, "changes and an acknowledgement")

	// Back at the clinic.
	im, err = file.Import(ctx, clinic, stick)
	if err != nil {
		panic(err)
	}
	fmt.Println("clinic imports", im.Accepted, "file")
	ex, err = file.Export(ctx, clinic, hub.ID(), stick)
	if err != nil {
		panic(err)
	}
	fmt.Println("clinic's next export carries", ex.Changes, "changes and replaces", ex.Superseded, "file")
	entries, err := os.ReadDir(stick)
	if err != nil {
		panic(err)
	}
	fmt.Println("files on the stick:", len(entries))
	// Output:
	// clinic exports 2 changes
	// hub imports 1 file with 2 new changes
	// hub replies with 0 changes and an acknowledgement
	// clinic imports 1 file
	// clinic's next export carries 0 changes and replaces 1 file
	// files on the stick: 2
}
