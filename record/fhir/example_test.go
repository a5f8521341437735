package fhir_test

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/record/fhir"
)

func Example() {
	nurse := record.Author{UserID: "u-amina", Name: "Amina Okafor", Role: record.RoleNurse, Device: "tablet-1"}
	at := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	chart, _, err := record.New(uuid.NewString(), crdt.NewActorID(), nurse, at, record.Register{
		GivenName: "Wanjiru", FamilyName: "Mwangi", Sex: "female", EstimatedBirthYear: 1988,
		HomeClinic:  "kamuga-dispensary",
		Identifiers: []record.Identifier{{System: record.SystemABHA, Value: "12345678901234"}},
	})
	if err != nil {
		panic(err)
	}
	if _, err := chart.Do(nurse, at.Add(time.Minute), record.Prescribe{Drug: "Panadol", Dose: 1, DoseUnit: "g",
		Route: "oral", Frequency: "QID"}); err != nil {
		panic(err)
	}
	v, err := chart.View()
	if err != nil {
		panic(err)
	}
	data, err := fhir.ExportJSON(v)
	if err != nil {
		panic(err)
	}

	// Elsewhere: the bundle into a new chart, then once more.
	b, err := fhir.Decode(data)
	if err != nil {
		panic(err)
	}
	ids := b.Identifiers()
	fmt.Println("patient identifiers:", ids[0], "and", ids[1].System)
	charts := &fhir.Memory{}
	res, err := fhir.Import(context.Background(), charts, "", nurse, "", b)
	if err != nil {
		panic(err)
	}
	fmt.Println("created:", res.Created, "entries added:", res.Added)
	again, err := fhir.Import(context.Background(), charts, res.ChartID, nurse, "", b)
	if err != nil {
		panic(err)
	}
	fmt.Println("changes the second time:", again.Changes)
	imported, _ := charts.Chart(context.Background(), res.ChartID)
	fmt.Println(imported.Prescriptions[0].Drug, imported.Prescriptions[0].ATC)
	// Output:
	// patient identifiers: abha|12345678901234 and urn:chartsync:fhir-resource
	// created: true entries added: 1
	// changes the second time: 0
	// Panadol N02BE01
}
