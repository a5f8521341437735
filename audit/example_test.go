package audit_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/chartsync/chartsync/audit"
)

func Example() {
	dir, err := os.MkdirTemp("", "audit-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "access.log")

	// A fixed clock, so that the output is the same every run.
	now := time.Date(2025, 3, 4, 9, 30, 0, 0, time.UTC)
	log, err := audit.Open(path, audit.Config{Now: func() time.Time { return now }})
	if err != nil {
		panic(err)
	}
	defer log.Close()

	// One sync of the Kamuga tablet: two charts sent down, one change
	// accepted, one refused.
	ctx := context.Background()
	tablet := "5f0c2a9e7d3b41c8a6e2f90b1d4c7e35"
	err = log.Append(ctx,
		audit.Entry{Action: audit.Read, Device: tablet, Clinic: "kamuga", Chart: "c-17", Changes: 4},
		audit.Entry{Action: audit.Read, Device: tablet, Clinic: "kamuga", Chart: "c-23", Changes: 1},
		audit.Entry{Action: audit.Write, Device: tablet, Clinic: "kamuga", User: "u-achieng", Role: "nurse", Chart: "c-17", Changes: 2},
		audit.Entry{Action: audit.Refused, Device: tablet, Clinic: "kamuga", User: "u-otieno", Role: "lab-technician",
			Chart: "c-17", Changes: 1, Detail: "lab-technician may not prescribe"},
	)
	if err != nil {
		panic(err)
	}

	// The auditor asks who touched chart c-17.
	n, err := log.Export(ctx, os.Stdout, audit.Filter{Chart: "c-17"}, audit.CSV)
	if err != nil {
		panic(err)
	}
	fmt.Println(n, "entries")

	// And checks the chain of a copy of the file.
	f, err := os.Open(path)
	if err != nil {
		panic(err)
	}
	defer f.Close()
	n, err = audit.Verify(ctx, f)
	fmt.Println(n, "records verify:", err == nil)
	// Output:
	// seq,time,action,device,clinic,user,role,chart,changes,detail
	// 1,2025-03-04T09:30:00Z,read,5f0c2a9e7d3b41c8a6e2f90b1d4c7e35,kamuga,,,c-17,4,
	// 3,2025-03-04T09:30:00Z,write,5f0c2a9e7d3b41c8a6e2f90b1d4c7e35,kamuga,u-achieng,nurse,c-17,2,
	// 4,2025-03-04T09:30:00Z,refused,5f0c2a9e7d3b41c8a6e2f90b1d4c7e35,kamuga,u-otieno,lab-technician,c-17,1,lab-technician may not prescribe
	// 3 entries
	// 4 records verify: true
}
