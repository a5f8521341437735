package faultstore_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"

	"github.com/chartsync/chartsync/replica/store"
	"github.com/chartsync/chartsync/replica/store/faultstore"
)

// Fail the second write after it is stored: its caller is told the
// outcome is unknown, and a re-read shows the batch is there.
func Example() {
	ctx := context.Background()
	s := faultstore.New(store.NewMem())
	defer s.Close()
	s.Arm(faultstore.Fault{At: faultstore.Point{Write: 2, When: faultstore.After}})
	for n := 1; n <= 2; n++ {
		raw := []byte(fmt.Sprintf("change %d", n))
		_, err := s.Write(ctx, store.Batch{Changes: []store.NewChange{{Chart: "c", Hash: sha256.Sum256(raw), Raw: raw}}})
		fmt.Println(s.Writes(n, n)[0], "unknown:", errors.Is(err, store.ErrOutcomeUnknown))
	}
	head, _ := s.Head(ctx)
	fmt.Println("head:", head)
	// Output:
	// write 1 (1 changes) unknown: false
	// write 2 (1 changes) unknown: true
	// head: 2
}
