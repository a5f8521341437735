package device_test

import (
	"errors"
	"fmt"
	"time"

	"github.com/chartsync/chartsync/device"
)

// A village clinic that was never online is enrolled by the hub from a
// request carried on a USB stick; any replica that trusts the hub's key
// then knows the clinic's keys.
func Example() {
	hub, _ := device.NewAuthority()
	clinic, _ := device.Generate("0123456789abcdef0123456789abcdef", "lwanda")

	request := clinic.Request() // to the hub, on a USB stick
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	enrolment, err := hub.EnrolRequest(request, now, 365*24*time.Hour)
	if err != nil {
		fmt.Println("refused:", err)
		return
	}

	roster, _ := device.NewRoster(device.RosterConfig{
		Authorities: []device.TrustedAuthority{{Key: hub.PublicKey(), Clinics: []string{"lwanda"}}},
		Now:         func() time.Time { return now },
	})
	if _, err := roster.Add(enrolment); err != nil {
		fmt.Println("refused:", err)
		return
	}
	pub, _ := roster.Lookup(clinic.ReplicaID())
	fmt.Println("enrolled:", pub.ReplicaID, "of", pub.Clinic)

	_, err = roster.Lookup("fedcba9876543210fedcba9876543210")
	fmt.Println("stranger unknown:", errors.Is(err, device.ErrUnknownDevice))
	// Output:
	// enrolled: 0123456789abcdef0123456789abcdef of lwanda
	// stranger unknown: true
}
