package login_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/chartsync/chartsync/device/login"
)

// A nurse mistypes her password five times; the sixth try, right this
// time, is refused until the lockout ends.
func Example() {
	dir, _ := os.MkdirTemp("", "login-example")
	defer os.RemoveAll(dir)

	// When her password was set, the roster stored its hash.
	amina, _ := login.Hash("mango tree at the well", login.DefaultParams)

	now := time.Date(2026, 3, 1, 14, 0, 0, 0, time.UTC)
	guard, err := login.OpenGuard(filepath.Join(dir, "login-state.json"), login.Policy{}, func() time.Time { return now })
	if err != nil {
		fmt.Println(err)
		return
	}

	fmt.Println(guard.Login("amina", amina, "mango tree at the wall"))
	for range 4 {
		err = guard.Login("amina", amina, "mango tree by the well")
	}
	fmt.Println(err)

	err = guard.Login("amina", amina, "mango tree at the well")
	fmt.Println("locked out:", errors.Is(err, login.ErrLockedOut))

	// A name not on the roster reads exactly like a wrong password.
	fmt.Println(guard.Login("amnia", "", "mango tree at the well"))

	now = now.Add(time.Minute)
	fmt.Println("a minute later:", guard.Login("amina", amina, "mango tree at the well"))
	// Output:
	// login: wrong user name or password; 4 more tries before this name is locked for 1 minute
	// login: wrong user name or password; "amina" is locked out after 5 failed logins until 14:01:00 UTC on 1 Mar 2026; wait, or ask an administrator to unlock
	// locked out: true
	// login: wrong user name or password; 4 more tries before this name is locked for 1 minute
	// a minute later: <nil>
}
