package session_test

import (
	"fmt"
	"time"

	"github.com/chartsync/chartsync/device/session"
)

// A session last used 20 minutes ago has ended with the default idle
// time; one used 5 minutes ago has not.
func ExampleExpired() {
	now := time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC)
	fmt.Println(session.Expired(now.Add(-20*time.Minute), now, 0))
	fmt.Println(session.Expired(now.Add(-5*time.Minute), now, 0))
	// Output:
	// true
	// false
}
