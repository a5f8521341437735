package keyring

import (
	"fmt"
	"path/filepath"
	"slices"
	"testing"

	"filippo.io/age"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"
)

// TestModel: any sequence of added and removed users and changed and
// reset passwords keeps the keyring agreeing with a model (a map from
// user to password): each current user's password unlocks the data key
// Create returned, every password a user had before and every removed
// user is refused, the file lists exactly the model's users, and each
// refused step leaves the model as it was.
func TestModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		path := filepath.Join(t.TempDir(), "keyring")
		id, err := age.GenerateX25519Identity()
		require.NoError(rt, err)
		rcpt := id.Recipient().String()
		names := []string{"amina", "bara", "chiku", "dawit", "esi"}
		passwordOf := func(rt *rapid.T, label string) string {
			return fmt.Sprintf("%s password %d", label, rapid.IntRange(0, 3).Draw(rt, label))
		}
		first := rapid.SampledFrom(names).Draw(rt, "first")
		firstPassword := passwordOf(rt, "first")
		key, err := fast.Create(path, rcpt, first, firstPassword)
		require.NoError(rt, err)

		current := map[string]string{first: firstPassword} // user → password
		refused := map[string][]string{}                   // user → passwords that must not unlock
		retire := func(user, password string) {
			if password != current[user] {
				refused[user] = append(refused[user], password)
			}
		}

		steps := rapid.IntRange(1, 12).Draw(rt, "steps")
		for range steps {
			user := rapid.SampledFrom(names).Draw(rt, "user")
			password, has := current[user]
			switch op := rapid.IntRange(0, 3).Draw(rt, "op"); op {
			case 0: // add
				p := passwordOf(rt, "new")
				err := fast.AddUser(path, key, user, p)
				if has {
					require.ErrorIs(rt, err, ErrUserExists)
					break
				}
				require.NoError(rt, err)
				current[user] = p
				refused[user] = slices.DeleteFunc(refused[user], func(old string) bool { return old == p })
			case 1: // remove
				err := RemoveUser(path, key, user)
				switch {
				case !has:
					require.ErrorIs(rt, err, ErrUnknownUser)
				case len(current) == 1:
					require.ErrorIs(rt, err, ErrLastUser)
				default:
					require.NoError(rt, err)
					refused[user] = append(refused[user], password)
					delete(current, user)
				}
			case 2: // change, with the right or a wrong old password
				old := password
				if rapid.Bool().Draw(rt, "wrong old password") {
					old = "not " + password
				}
				p := passwordOf(rt, "changed")
				err := fast.ChangePassword(path, user, old, p)
				switch {
				case !has:
					require.ErrorIs(rt, err, ErrUnknownUser)
				case old != password:
					require.ErrorIs(rt, err, ErrWrongPassword)
				default:
					require.NoError(rt, err)
					current[user] = p
					retire(user, password)
				}
			case 3: // reset by an administrator holding the key
				p := passwordOf(rt, "reset")
				err := fast.ResetPassword(path, key, user, p)
				if !has {
					require.ErrorIs(rt, err, ErrUnknownUser)
					break
				}
				require.NoError(rt, err)
				current[user] = p
				retire(user, password)
			}
		}

		users, err := Users(path)
		require.NoError(rt, err)
		want := make([]string, 0, len(current))
		for u := range current {
			want = append(want, u)
		}
		slices.Sort(want)
		require.Equal(rt, want, users, "the keyring lists other users than the model")
		for user, password := range current {
			got, err := Unlock(path, user, password)
			require.NoError(rt, err, "%s's current password", user)
			require.Equal(rt, key, got, "%s's password unlocks another key", user)
		}
		for user, olds := range refused {
			for _, old := range olds {
				if p, ok := current[user]; ok && p == old {
					continue // the same password set again
				}
				_, err := Unlock(path, user, old)
				if _, ok := current[user]; ok {
					require.ErrorIs(rt, err, ErrWrongPassword, "%s's old password %q still unlocks", user, old)
				} else {
					require.ErrorIs(rt, err, ErrUnknownUser, "removed user %s still unlocks", user)
				}
			}
		}
	})
}
