package liveroster_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/device/liveroster"
)

// memorySource is a roster kept in memory: a list of signed records.
type memorySource struct{ records [][]byte }

func (s *memorySource) MergeRoster(_ context.Context, r *device.Roster, since int64) (int64, error) {
	for _, rec := range s.records[since:] {
		if _, err := r.Add(rec); err != nil {
			return since, err
		}
	}
	return int64(len(s.records)), nil
}

// A device revoked in the kept roster is refused at its next connection.
func Example() {
	cloud, _ := device.NewAuthority()
	tablet, _ := device.Generate("0123456789abcdef0123456789abcdef", "kamuga")
	now := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	enrolment, _ := cloud.EnrolRequest(tablet.Request(), now, 365*24*time.Hour)
	kept := &memorySource{records: [][]byte{enrolment}}

	r, err := liveroster.Open(context.Background(), kept, liveroster.Config{
		Roster: device.RosterConfig{Authorities: []device.TrustedAuthority{{Key: cloud.PublicKey()}}},
		Now:    func() time.Time { return now },
	})
	if err != nil {
		fmt.Println("open:", err)
		return
	}
	fmt.Println("before:", r.CheckRevoked(context.Background(), tablet.ReplicaID()))

	revocation, _ := cloud.RevokeAccepting(tablet.ReplicaID(), "kamuga", now, nil)
	kept.records = append(kept.records, revocation)
	err = r.CheckRevoked(context.Background(), tablet.ReplicaID())
	fmt.Println("after: revoked:", errors.Is(err, device.ErrRevoked))
	// Output:
	// before: <nil>
	// after: revoked: true
}
