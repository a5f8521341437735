package record_test

import (
	"fmt"
	"time"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/record"
)

// Two clinicians edit copies of one chart offline, then merge: both
// prescriptions are kept, the concurrent doses are shown as a conflict,
// and the duplicate drug raises an alert.
func Example() {
	nurse := record.Author{UserID: "u-amina", Name: "Amina", Role: record.RoleNurse, Device: "tablet-1"}
	doctor := record.Author{UserID: "u-baraka", Name: "Dr Baraka", Role: record.RoleClinician, Device: "laptop-2"}
	at := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)

	clinic, _, err := record.New("6f1c2a8e-4b7d-4c1e-9a3b-2d5e8f7a9c01", crdt.NewActorID(), nurse, at, record.Register{
		GivenName: "Wanjiru", FamilyName: "Mwangi", Sex: "female", EstimatedBirthYear: 1988,
		Village: "Kamuga", HomeClinic: "kamuga-dispensary",
	})
	if err != nil {
		panic(err)
	}
	rx, err := clinic.Do(nurse, at.Add(time.Minute), record.Prescribe{
		Drug: "Amoxicillin", Dose: 500, DoseUnit: "mg", Route: "oral", Frequency: "TDS", DurationDays: 5,
	})
	if err != nil {
		panic(err)
	}

	// The doctor takes a copy away; both edit offline.
	fork, err := clinic.Doc().Fork(nil, crdt.NewActorID())
	if err != nil {
		panic(err)
	}
	away, err := record.Open(fork)
	if err != nil {
		panic(err)
	}
	must(clinic.Do(nurse, at.Add(time.Hour), record.ReviseDose{PrescriptionID: rx.EntryID, Dose: 250}))
	must(away.Do(doctor, at.Add(2*time.Hour), record.ReviseDose{PrescriptionID: rx.EntryID, Dose: 1000}))
	must(away.Do(doctor, at.Add(2*time.Hour), record.Prescribe{Drug: "Amoxicillin", Dose: 500, DoseUnit: "mg", Route: "oral", Frequency: "BD"}))

	// They meet again.
	if _, err := clinic.Doc().Merge(away.Doc()); err != nil {
		panic(err)
	}
	v, err := clinic.View()
	if err != nil {
		panic(err)
	}
	fmt.Println("prescriptions:", len(v.Prescriptions))
	for _, c := range v.Conflicts {
		fmt.Printf("conflict on %s %s, showing %s:\n", c.Entry, c.Field, c.Shown)
		for _, w := range c.Values {
			fmt.Printf("  %s by %s\n", w.Value, w.By)
		}
	}
	for _, a := range v.Alerts {
		fmt.Println("alert:", a.Kind, a.Severity)
	}
	// Output:
	// prescriptions: 2
	// conflict on Amoxicillin dose, showing 1000:
	//   1000 by Dr Baraka (clinician)
	//   250 by Amina (nurse)
	// alert: duplicate-drug high
}

func must(_ record.Result, err error) {
	if err != nil {
		panic(err)
	}
}
