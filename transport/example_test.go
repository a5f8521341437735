package transport_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/transport"
)

// A clinic and the cloud sync over an in-memory courier that loses the
// first bundle: the next cycle resends it.
func Example() {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "transport-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	clinic, err := replica.Open(ctx, filepath.Join(dir, "clinic.db"), replica.Config{})
	if err != nil {
		panic(err)
	}
	defer clinic.Close()
	cloud, err := replica.Open(ctx, filepath.Join(dir, "cloud.db"), replica.Config{})
	if err != nil {
		panic(err)
	}
	defer cloud.Close()

	nurse := record.Author{UserID: "u-amina", Name: "Amina", Role: record.RoleNurse, Device: "tablet-1"}
	id, err := clinic.Register(ctx, nurse, record.Register{
		GivenName: "Wanjiru", FamilyName: "Mwangi", Sex: "female", EstimatedBirthYear: 1988,
		Village: "Kamuga", HomeClinic: "kamuga-dispensary",
	})
	if err != nil {
		panic(err)
	}

	net := transport.NewMemory()
	up, down := net.Link(clinic, cloud.ID()), net.Link(cloud, clinic.ID())
	sync := func(who string, l transport.Link) {
		st, err := l.Sync(ctx)
		if err != nil {
			panic(err)
		}
		fmt.Printf("%s: received %d bundles (%d new changes), sent %d changes\n", who, st.BundlesReceived, st.ChangesApplied, st.ChangesSent)
	}
	sync("clinic", up)
	fmt.Println("lost in transit:", net.Drop(clinic.ID(), cloud.ID()))
	sync("cloud", down)
	sync("clinic", up)
	sync("cloud", down)
	sync("clinic", up)

	v, err := cloud.Chart(ctx, id)
	if err != nil {
		panic(err)
	}
	fmt.Println("cloud shows:", v.Patient.FullName())
	// Output:
	// clinic: received 0 bundles (0 new changes), sent 1 changes
	// lost in transit: 1
	// cloud: received 0 bundles (0 new changes), sent 0 changes
	// clinic: received 1 bundles (0 new changes), sent 1 changes
	// cloud: received 1 bundles (1 new changes), sent 0 changes
	// clinic: received 1 bundles (0 new changes), sent 0 changes
	// cloud shows: Wanjiru Mwangi
}
