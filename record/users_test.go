package record_test

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/device/login"
	"github.com/chartsync/chartsync/record"
)

// hashes of the right shape; the login code makes real ones.
func hashOf(n int) string {
	return fmt.Sprintf("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ%d$aGFzaGhhc2g%d", n, n)
}

// newRoster starts north's roster with admin, and adds the nurse.
func newRoster(t *testing.T) *record.Users {
	t.Helper()
	u, res, err := record.NewUsers("north", crdt.NewActorID(), admin, t0, record.UserUpdate{
		UserID: admin.UserID, Name: admin.Name, Role: record.RoleAdministrator, PasswordHash: hashOf(0)})
	require.NoError(t, err)
	assert.Equal(t, record.UsersID("north"), u.ID())
	assert.Equal(t, admin.UserID, res.EntryID)
	_, err = u.Update(admin, t0.Add(time.Minute), record.UserUpdate{UserID: nurse.UserID, Name: nurse.Name, Role: record.RoleNurse, PasswordHash: hashOf(1)})
	require.NoError(t, err)
	return u
}

func TestUsersIDIsTheSameEverywhere(t *testing.T) {
	assert.Equal(t, record.UsersID("north"), record.UsersID("north"))
	assert.NotEqual(t, record.UsersID("north"), record.UsersID("south"))
	assert.Regexp(t, `^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`, record.UsersID("north"))
	_, _, err := record.New(record.UsersID("north"), crdt.NewActorID(), nurse, t0, record.Register{
		GivenName: "Squatter", Sex: "male", EstimatedBirthYear: 1970, HomeClinic: "south"})
	assert.ErrorIs(t, err, record.ErrInvalid, "no chart may take a roster's ID")
}

func TestUsersUpdate(t *testing.T) {
	u := newRoster(t)
	got, err := u.User(nurse.UserID)
	require.NoError(t, err)
	assert.Equal(t, record.User{ID: nurse.UserID, Name: nurse.Name, Role: record.RoleNurse, PasswordHash: hashOf(1)}, got)

	// A user changes their own password; an administrator disables them.
	_, err = u.Update(nurse, t0.Add(time.Hour), record.UserUpdate{UserID: nurse.UserID, PasswordHash: hashOf(2)})
	require.NoError(t, err, "a user may change their own password")
	_, err = u.Update(admin, t0.Add(2*time.Hour), record.UserUpdate{UserID: nurse.UserID, Disable: true})
	require.NoError(t, err)
	got, err = u.User(nurse.UserID)
	require.NoError(t, err)
	assert.Equal(t, hashOf(2), got.PasswordHash)
	assert.True(t, got.Disabled)

	reopened, err := record.OpenUsers(u.Doc())
	require.NoError(t, err)
	assert.Equal(t, "north", reopened.Clinic())
	list, err := reopened.List()
	require.NoError(t, err)
	require.Len(t, list, 2)
	assert.Equal(t, []string{nurse.UserID, admin.UserID}, []string{list[0].ID, list[1].ID}, "sorted by ID")

	_, err = u.User("nobody")
	assert.ErrorIs(t, err, record.ErrNotFound)
}

func TestUsersUpdateRefusals(t *testing.T) {
	u := newRoster(t)
	other := record.Author{UserID: "u-other-admin", Role: record.RoleAdministrator}
	cases := []struct {
		name string
		by   record.Author
		up   record.UserUpdate
		want error
	}{
		{"a nurse adds a user", nurse, record.UserUpdate{UserID: "u-new", Name: "New", Role: record.RoleNurse, PasswordHash: hashOf(3)}, record.ErrForbidden},
		{"a nurse makes herself administrator", nurse, record.UserUpdate{UserID: nurse.UserID, Role: record.RoleAdministrator}, record.ErrForbidden},
		{"a nurse changes another's password", nurse, record.UserUpdate{UserID: admin.UserID, PasswordHash: hashOf(3)}, record.ErrForbidden},
		{"an administrator the roster does not know", other, record.UserUpdate{UserID: "u-new", Name: "New", Role: record.RoleNurse, PasswordHash: hashOf(3)}, record.ErrForbidden},
		{"a new user without a password", admin, record.UserUpdate{UserID: "u-new", Name: "New", Role: record.RoleNurse}, record.ErrInvalid},
		{"an unknown role", admin, record.UserUpdate{UserID: nurse.UserID, Role: "surgeon"}, record.ErrInvalid},
		{"a password that is not a hash", admin, record.UserUpdate{UserID: nurse.UserID, PasswordHash: "hunter22"}, record.ErrInvalid},
		{"an argon2i hash", admin, record.UserUpdate{UserID: nurse.UserID, PasswordHash: "$argon2i$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA"}, record.ErrInvalid},
		{"an upper-case user ID", admin, record.UserUpdate{UserID: "Amina", Name: "A", Role: record.RoleNurse, PasswordHash: hashOf(3)}, record.ErrInvalid},
		{"a user ID with a slash", admin, record.UserUpdate{UserID: "a/b", Name: "A", Role: record.RoleNurse, PasswordHash: hashOf(3)}, record.ErrInvalid},
		{"nothing to change", admin, record.UserUpdate{UserID: nurse.UserID}, record.ErrInvalid},
		{"disable and enable at once", admin, record.UserUpdate{UserID: nurse.UserID, Disable: true, Enable: true}, record.ErrInvalid},
		{"a name with a newline", admin, record.UserUpdate{UserID: nurse.UserID, Name: "a\nb"}, record.ErrInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			heads := u.Doc().Heads()
			_, err := u.Update(tc.by, t0.Add(time.Hour), tc.up)
			require.ErrorIs(t, err, tc.want)
			assert.Equal(t, heads, u.Doc().Heads(), "a refused update changes nothing")
		})
	}

	_, _, err := record.NewUsers("north", crdt.NewActorID(), nurse, t0, record.UserUpdate{UserID: nurse.UserID, Name: "N", Role: record.RoleNurse, PasswordHash: hashOf(1)})
	assert.ErrorIs(t, err, record.ErrForbidden, "only an administrator starts a roster")
	_, _, err = record.NewUsers("north", crdt.NewActorID(), admin, t0, record.UserUpdate{UserID: nurse.UserID, Name: "N", Role: record.RoleNurse, PasswordHash: hashOf(1)})
	assert.ErrorIs(t, err, record.ErrInvalid, "a roster starts with its administrator")
	_, _, err = record.NewUsers("no clinic!", crdt.NewActorID(), admin, t0, record.UserUpdate{UserID: admin.UserID, Name: "A", Role: record.RoleAdministrator, PasswordHash: hashOf(1)})
	assert.ErrorIs(t, err, record.ErrInvalid)

	// A disabled administrator is no longer one.
	_, err = u.Update(admin, t0.Add(time.Hour), record.UserUpdate{UserID: "u-second", Name: "Second", Role: record.RoleAdministrator, PasswordHash: hashOf(4)})
	require.NoError(t, err)
	second := record.Author{UserID: "u-second", Role: record.RoleAdministrator}
	_, err = u.Update(second, t0.Add(2*time.Hour), record.UserUpdate{UserID: admin.UserID, Disable: true})
	require.NoError(t, err)
	_, err = u.Update(admin, t0.Add(3*time.Hour), record.UserUpdate{UserID: nurse.UserID, Role: record.RoleClinician})
	assert.ErrorIs(t, err, record.ErrForbidden)
}

// editRaw makes a change to a roster document directly, as a modified
// client could.
func editRaw(t *testing.T, doc *crdt.Doc, by record.Author, op string, fn func(tx *crdt.Tx) error) crdt.Change {
	t.Helper()
	msg, err := json.Marshal(map[string]any{"op": op, "user": by.UserID, "name": by.Name, "role": by.Role, "entry": "", "summary": "", "at": t0.UnixMilli()})
	require.NoError(t, err)
	ch, err := doc.Edit(string(msg), t0.Add(time.Hour), fn)
	require.NoError(t, err)
	return ch
}

func TestCheckUsersChange(t *testing.T) {
	base := newRoster(t)
	put := func(k, v string) func(tx *crdt.Tx) error {
		return func(tx *crdt.Tx) error { return tx.Put(nil, k, v) }
	}
	cases := []struct {
		name string
		by   record.Author
		op   string
		fn   func(tx *crdt.Tx) error
		want error
	}{
		{"an administrator adds a user", admin, "put-user", func(tx *crdt.Tx) error {
			for k, v := range map[string]string{"name": "Lab", "role": "lab-technician", "password": hashOf(5)} {
				if err := tx.Put(nil, "user/u-lab/"+k, v); err != nil {
					return err
				}
			}
			return nil
		}, nil},
		{"a nurse changes her own password", nurse, "set-password", put("user/u-amina/password", hashOf(6)), nil},
		{"a nurse changes the administrator's password", nurse, "set-password", put("user/u-femi/password", hashOf(6)), record.ErrForbidden},
		{"a nurse makes herself administrator", nurse, "put-user", put("user/u-amina/role", "administrator"), record.ErrForbidden},
		{"a lab technician claiming to be an administrator", record.Author{UserID: "u-chege", Role: record.RoleAdministrator}, "put-user",
			put("user/u-amina/disabled", "true"), record.ErrForbidden},
		{"a user added without a password", admin, "put-user", put("user/u-x/name", "X"), record.ErrInvalid},
		{"a field that is not a user field", admin, "put-user", put("user/u-amina/salary", "100"), record.ErrInvalid},
		{"a key outside the users", admin, "put-user", put("chart", "x"), record.ErrInvalid},
		{"a bad password hash", admin, "put-user", put("user/u-amina/password", "plain"), record.ErrInvalid},
		{"the clinic rewritten", admin, "put-user", put("clinic", "south"), record.ErrInvalid},
		{"a map instead of a value", admin, "put-user", func(tx *crdt.Tx) error { return tx.PutMap(nil, "user/u-zed/name") }, record.ErrInvalid},
		{"two users in one change", admin, "put-user", func(tx *crdt.Tx) error {
			if err := tx.Put(nil, "user/u-amina/disabled", "true"); err != nil {
				return err
			}
			return tx.Put(nil, "user/u-femi/name", "F")
		}, record.ErrInvalid},
		{"a chart operation's message", admin, "add-allergy", put("user/u-amina/disabled", "true"), record.ErrInvalid},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fork, err := base.Doc().Fork(nil, crdt.NewActorID())
			require.NoError(t, err)
			ch := editRaw(t, fork, tc.by, tc.op, tc.fn)
			_, err = record.CheckUsersChange(base.Doc(), ch)
			if tc.want == nil {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, tc.want)
			}
		})
	}

	// Every change record itself makes passes.
	chs, err := base.Doc().Changes(nil)
	require.NoError(t, err)
	for _, c := range chs {
		assert.True(t, record.IsUsersChange(c))
		_, err := record.CheckUsersChange(base.Doc(), c)
		assert.NoError(t, err)
	}

	// A roster change made on a chart is refused.
	chart, _, err := record.New("0b8f6c1e-1c4f-4b8e-9d53-2f1d9c7a1e10", crdt.NewActorID(), nurse, t0, record.Register{
		GivenName: "Amina", Sex: "female", EstimatedBirthYear: 1990, HomeClinic: "north"})
	require.NoError(t, err)
	ch := editRaw(t, chart.Doc(), admin, "put-user", put("user/u-x/disabled", "true"))
	_, err = record.CheckUsersChange(chart.Doc(), ch)
	assert.ErrorIs(t, err, record.ErrNotAUserRoster)
}

// TestPropertyRostersConverge: devices of one clinic start or change the
// roster offline, in any order, and exchange changes in random partial
// deliveries; once all have all changes, every device lists the same
// users, and every change passes CheckUsersChange.
func TestPropertyRostersConverge(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		n := rapid.IntRange(2, 4).Draw(rt, "devices")
		docs := make([]*record.Users, n)
		for i := range docs {
			// Each device bootstraps the roster with the same administrator.
			u, _, err := record.NewUsers("north", crdt.NewActorID(), admin, t0, record.UserUpdate{
				UserID: admin.UserID, Name: admin.Name, Role: record.RoleAdministrator, PasswordHash: hashOf(i)})
			require.NoError(rt, err)
			docs[i] = u
		}
		ids := []string{"u-a", "u-b", "u-c"}
		steps := rapid.IntRange(1, 30).Draw(rt, "steps")
		for s := range steps {
			i := rapid.IntRange(0, n-1).Draw(rt, "device")
			if rapid.Bool().Draw(rt, "sync") {
				j := rapid.IntRange(0, n-1).Draw(rt, "from")
				if i != j {
					_, err := docs[i].Doc().Merge(docs[j].Doc())
					require.NoError(rt, err)
				}
				continue
			}
			id := rapid.SampledFrom(ids).Draw(rt, "user")
			up := record.UserUpdate{UserID: id}
			switch rapid.IntRange(0, 3).Draw(rt, "what") {
			case 0:
				up.Name, up.Role, up.PasswordHash = "User "+id, rapid.SampledFrom(record.Roles()).Draw(rt, "role"), hashOf(s)
			case 1:
				up.PasswordHash = hashOf(100 + s)
			case 2:
				up.Disable = true
			case 3:
				up.Enable = true
			}
			_, err := docs[i].Update(admin, t0.Add(time.Duration(s)*time.Minute), up)
			if err != nil {
				require.ErrorIs(rt, err, record.ErrInvalid, "only updates of users this device has not met fail")
			}
		}
		for i := range docs {
			for j := range docs {
				if i != j {
					_, err := docs[i].Doc().Merge(docs[j].Doc())
					require.NoError(rt, err)
				}
			}
		}
		want, err := docs[0].List()
		require.NoError(rt, err)
		for _, d := range docs[1:] {
			got, err := d.List()
			require.NoError(rt, err)
			require.Equal(rt, want, got, "every device lists the same users")
		}
		chs, err := docs[0].Doc().Changes(nil)
		require.NoError(rt, err)
		for _, c := range chs {
			_, err := record.CheckUsersChange(docs[0].Doc(), c)
			require.NoError(rt, err, "a change record made passes the check")
		}
	})
}

// TestPasswordHashParametersBounded: the user roster takes a password hash
// only if its argon2 parameters are within what every device of the
// clinic can afford to check at each login (device/login's bounds: 64 MiB,
// 4 lanes, 10 passes, 64 MiB × 4 of work). A hash over them is refused as
// an invalid update here and as an invalid change from a peer, so no
// device is sent a hash whose login would exhaust its memory. The verdicts
// are login's own.
func TestPasswordHashParametersBounded(t *testing.T) {
	cases := []struct {
		params string
		ok     bool
	}{
		{"m=19456,t=2,p=1", true},  // login.DefaultParams
		{"m=65536,t=3,p=4", true},  // RFC 9106's second recommendation
		{"m=65536,t=4,p=4", true},  // the most work
		{"m=25600,t=10,p=1", true}, // the most passes
		{"m=64,t=1,p=1", true},
		{"m=1048576,t=1,p=16", false}, // 1 GiB in 16 lanes
		{"m=131072,t=1,p=1", false},
		{"m=65537,t=1,p=1", false},
		{"m=65536,t=5,p=1", false},
		{"m=1024,t=11,p=1", false},
		{"m=19456,t=2,p=5", false},
		{"m=31,t=1,p=4", false}, // under 8 KiB a lane
		{"m=0,t=1,p=1", false},
		{"m=64,t=0,p=1", false},
		{"m=64,t=1,p=0", false},
		{"m=4294967296,t=1,p=1", false},
		{"m=9999999999,t=9999999999,p=999", false},
		{"m=019456,t=2,p=1", false}, // not the canonical form login reads
	}
	for _, tc := range cases {
		t.Run(tc.params, func(t *testing.T) {
			hash := "$argon2id$v=19$" + tc.params + "$c29tZXNhbHRzb21lc2FsdA$YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXphYmNkZWY"
			_, loginErr := login.ParseHash(hash)
			require.Equal(t, tc.ok, loginErr == nil, "login's verdict on %s: %v", tc.params, loginErr)

			u := newRoster(t)
			heads := u.Doc().Heads()
			_, err := u.Update(admin, t0.Add(time.Hour), record.UserUpdate{UserID: nurse.UserID, PasswordHash: hash})
			fork, ferr := u.Doc().Fork(heads, crdt.NewActorID())
			require.NoError(t, ferr)
			ch := editRaw(t, fork, admin, "put-user", func(tx *crdt.Tx) error { return tx.Put(nil, "user/u-amina/password", hash) })
			_, checkErr := record.CheckUsersChange(u.Doc(), ch)
			if tc.ok {
				require.NoError(t, err, "an administrator sets a hash with %s", tc.params)
				require.NoError(t, checkErr, "a peer's change setting a hash with %s", tc.params)
				return
			}
			require.ErrorIs(t, err, record.ErrInvalid, "a hash with %s is refused", tc.params)
			assert.Equal(t, heads, u.Doc().Heads(), "a refused update changes nothing")
			require.ErrorIs(t, checkErr, record.ErrInvalid, "a peer's change setting a hash with %s is invalid", tc.params)
		})
	}
}
