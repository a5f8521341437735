package record_test

import (
	"fmt"

	"github.com/chartsync/chartsync/record"
)

// The shipped drug dictionary finds a drug by its generic name, a
// spelling or a brand, whatever the strength and dose form written.
func ExampleDictionary_Lookup() {
	dict := record.DrugDictionary()
	for _, name := range []string{"Tylenol 500 mg tablets", "amoxycillin", "Septrin DS", "Grandmother's tonic"} {
		if d, ok := dict.Lookup(name); ok {
			fmt.Printf("%s: %s %s %v\n", name, d.Code(), d.Name, dict.GroupsOf(d))
		} else {
			fmt.Printf("%s: not in the dictionary\n", name)
		}
	}
	// Output:
	// Tylenol 500 mg tablets: N02BE01 paracetamol []
	// amoxycillin: J01CA04 amoxicillin [penicillins]
	// Septrin DS: J01EE01 sulfamethoxazole + trimethoprim [sulfonamides]
	// Grandmother's tonic: not in the dictionary
}
