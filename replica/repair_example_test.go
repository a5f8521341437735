package replica_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
)

// A tablet whose database is damaged is rebuilt as a new replica from
// what can still be read; its first sync with the cloud brings back the
// rest, and ApplySalvaged then applies its own changes that waited.
func ExampleRepair() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "repair-example-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "tablet.db")
	tablet, err := replica.Open(ctx, path, replica.Config{})
	if err != nil {
		panic(err)
	}
	nurse := record.Author{UserID: "u-amina", Name: "Amina", Role: record.RoleNurse, Device: "tablet-1"}
	id, err := tablet.Register(ctx, nurse, record.Register{
		GivenName: "Wanjiru", FamilyName: "Mwangi", Sex: "female", EstimatedBirthYear: 1988, HomeClinic: "kamuga-dispensary",
	})
	if err != nil {
		panic(err)
	}
	if _, err := tablet.Edit(ctx, id, nurse, record.AddAllergy{Substance: "Penicillin", Severity: "severe"}); err != nil {
		panic(err)
	}
	old := tablet.ID()
	tablet.Close()

	// (Here a disk fault damages the database: replica.Open refuses it
	// with an error matching replica.ErrDamaged.)
	repaired, rep, err := replica.Repair(ctx, path, filepath.Join(dir, "repaired.db"), replica.Config{})
	if errors.Is(err, replica.ErrUnsalvageable) {
		fmt.Println("nothing could be read: restore from a backup")
		return
	}
	if err != nil {
		panic(err)
	}
	defer repaired.Close()
	fmt.Println("new replica ID:", repaired.ID() != old)
	fmt.Println("changes read:", rep.Salvage.Read, "lost:", len(rep.Salvage.Lost), "waiting:", rep.Waiting)
	// Output:
	// new replica ID: true
	// changes read: 2 lost: 0 waiting: 0
}
