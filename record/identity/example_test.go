package identity_test

import (
	"fmt"

	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/record/identity"
)

// A woman registered at the village clinic is registered again at the
// district hospital, her names swapped and spelt otherwise, her age
// estimated.
func Example() {
	village := record.Patient{GivenName: "Akosua", FamilyName: "Mensah", Sex: "female", BirthDate: "1990-04-02",
		Village: "Asafo", Phone: "+233 24 555 0101"}
	district := record.Patient{GivenName: "Mensa", FamilyName: "Akossua", Sex: "female", EstimatedBirthYear: 1991,
		Village: "Asafo", Phone: "024 555 0101"}
	sister := record.Patient{GivenName: "Abena", FamilyName: "Mensah", Sex: "female", BirthDate: "1993-01-20",
		Village: "Asafo", Phone: "+233 24 555 0101"}

	for _, c := range identity.Duplicates(district, "", []identity.Chart{{ID: "chart-1", Patient: village}, {ID: "chart-2", Patient: sister}}) {
		fmt.Printf("%s scores %.1f:\n", c.ChartID, c.Score)
		for _, e := range c.Evidence {
			fmt.Printf("  %s: %s\n", e.Reason, e.Detail)
		}
	}

	q := identity.ParseQuery("akosua mensa")
	score, ok := q.Match(village)
	fmt.Println(ok, score)
	// Output:
	// chart-1 scores 11.0:
	//   similar-name: "Mensa Akossua" and "Akosua Mensah", with given and family names swapped (0.97)
	//   same-birth-year: born about 1991 and 1990-04-02
	//   same-village: both in Asafo
	//   same-phone: both reachable on …245550101
	// true 0.91
}
