package crdt_test

import (
	"fmt"
	"time"

	"github.com/chartsync/chartsync/crdt"
)

// ChangeOps reads what a change does without applying it.
func ExampleChangeOps() {
	d, _ := crdt.New("aa01")
	at := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	_, _ = d.Edit("create", at, func(tx *crdt.Tx) error { return tx.PutMap(nil, "patient") })
	ch, _ := d.Edit("name", at, func(tx *crdt.Tx) error {
		if err := tx.Put([]string{"patient"}, "family", "Okafor"); err != nil {
			return err
		}
		return tx.PutText([]string{"patient"}, "note", "ok")
	})

	info, err := crdt.ChangeOps(ch.Raw)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(info.Actor, info.Seq, info.Message)
	for _, op := range info.Ops {
		fmt.Printf("%s in %s at %s: %s %q (insert %v)\n", op.ID, op.Obj, op.Key, op.Action, op.Value.Str, op.Insert)
	}
	// Output:
	// aa01 2 name
	// 2@aa01 in 1@aa01 at "family": set "Okafor" (insert false)
	// 3@aa01 in 1@aa01 at "note": makeText "" (insert false)
	// 4@aa01 in 3@aa01 at _head: set "o" (insert true)
	// 5@aa01 in 3@aa01 at 4@aa01: set "k" (insert true)
}
