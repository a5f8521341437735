package keyring_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"filippo.io/age"

	"github.com/chartsync/chartsync/device/keyring"
)

// A clinic tablet is set up for Amina, with the cloud able to recover it;
// Amina unlocks it, adds a colleague and changes her password; when every
// password is forgotten, the cloud's identity recovers the key.
func Example() {
	dir, _ := os.MkdirTemp("", "keyring-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "keyring")

	// The cloud's recovery identity stays with the cloud; the tablet
	// knows only its recipient string.
	cloud, _ := age.GenerateX25519Identity()

	// Real devices use the zero Config (DefaultParams); the example is
	// quicker with small parameters.
	cfg := keyring.Config{Params: keyring.Params{Memory: 64, Time: 1, Threads: 1}}

	key, err := cfg.Create(path, cloud.Recipient().String(), "amina", "mango tree at the well")
	if err != nil {
		fmt.Println(err)
		return
	}
	// key is what sqlite.Config.Key takes to encrypt the database.

	unlocked, _ := keyring.Unlock(path, "amina", "mango tree at the well")
	fmt.Println("Amina unlocks the key:", string(unlocked) == string(key))

	_, err = keyring.Unlock(path, "amina", "mango tree at the wall")
	fmt.Println("a typo:", errors.Is(err, keyring.ErrWrongPassword))

	_ = cfg.AddUser(path, unlocked, "bara", "blue door by the river")
	_ = cfg.ChangePassword(path, "amina", "mango tree at the well", "goats in the schoolyard")
	users, _ := keyring.Users(path)
	fmt.Println("users:", users)

	recovered, _ := keyring.Recover(path, cloud)
	fmt.Println("the cloud recovers the key:", string(recovered) == string(key))
	// Output:
	// Amina unlocks the key: true
	// a typo: true
	// users: [amina bara]
	// the cloud recovers the key: true
}
