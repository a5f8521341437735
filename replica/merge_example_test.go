package replica_test

import (
	"context"
	"fmt"

	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/store"
)

// A woman registered twice, at two clinics offline, is found as a
// duplicate and her charts merged: the survivor shows both charts'
// entries, and the other chart forwards to it.
func ExampleReplica_Merge() {
	ctx := context.Background()
	r, _ := replica.New(ctx, store.NewMem(), replica.Config{})
	defer r.Close()
	nurse := record.Author{UserID: "u-achieng", Role: record.RoleNurse}
	doctor := record.Author{UserID: "u-mutua", Role: record.RoleClinician}

	village, _ := r.Register(ctx, nurse, record.Register{GivenName: "Wanjiru", FamilyName: "Mwangi", Sex: "female",
		EstimatedBirthYear: 1988, Village: "Kamuga", HomeClinic: "kamuga-dispensary"})
	r.Edit(ctx, village, nurse, record.AddAllergy{Substance: "Penicillin", Severity: "severe"})
	district, _ := r.Register(ctx, nurse, record.Register{GivenName: "Wanjeru", FamilyName: "Mwangi", Sex: "female",
		EstimatedBirthYear: 1988, Village: "Kamuga", HomeClinic: "district-hospital"})
	r.Edit(ctx, district, nurse, record.Prescribe{Drug: "Amoxicillin", Dose: 500, DoseUnit: "mg", Route: "oral", Frequency: "TDS"})

	dups, _ := r.DuplicatesOf(ctx, village)
	fmt.Println("duplicate found:", len(dups) == 1 && dups[0].ChartID == district)

	err := r.Merge(ctx, district, village, doctor, "same woman, registered twice")
	fmt.Println("merged:", err == nil)
	v, _ := r.Chart(ctx, district)
	fmt.Println("reading the district chart shows the survivor:", v.ChartID == village)
	fmt.Println("entries:", len(v.Allergies), "allergy,", len(v.Prescriptions), "prescription")
	for _, a := range v.Alerts {
		fmt.Println("alert:", a.Kind)
	}
	fmt.Println("shared with:", v.Referrals[0].Clinic)
	// Output:
	// duplicate found: true
	// merged: true
	// reading the district chart shows the survivor: true
	// entries: 1 allergy, 1 prescription
	// alert: allergy-drug
	// shared with: district-hospital
}
