package faultvfs_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/chartsync/chartsync/replica/store"
	"github.com/chartsync/chartsync/replica/store/sqlite"
	"github.com/chartsync/chartsync/replica/store/sqlite/faultvfs"
)

// A store on a disk that fills up: the write fails, says so, and stores
// nothing.
func Example() {
	if err := faultvfs.Install(); err != nil {
		panic(err)
	}
	dir, err := os.MkdirTemp("", "faultvfs-example-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()
	s, err := sqlite.Open(ctx, filepath.Join(dir, "charts.db"))
	if err != nil {
		panic(err)
	}
	defer s.Close()

	faultvfs.Arm(dir, faultvfs.DiskFull(0)...)
	_, err = s.Write(ctx, store.Batch{Meta: map[string]string{"allergy": "penicillin"}})
	faultvfs.Disarm()
	fmt.Println("disk full:", errors.Is(err, store.ErrDiskFull))
	fmt.Println("outcome unknown:", errors.Is(err, store.ErrOutcomeUnknown))
	_, err = s.Meta(ctx, "allergy")
	fmt.Println("stored:", err == nil)
	// Output:
	// disk full: true
	// outcome unknown: false
	// stored: false
}
