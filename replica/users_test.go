package replica_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
)

var (
	northAdmin = record.Author{UserID: "u-femi", Name: "Femi", Role: record.RoleAdministrator}
	northNurse = record.Author{UserID: "u-amina", Name: "Amina", Role: record.RoleNurse}
)

func hashN(n int) string {
	return fmt.Sprintf("$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ%d$aGFzaGhhc2g%d", n, n)
}

// checkedSync is scopedSync with the cloud checking authors.
func checkedSync(t *testing.T, cloud, dev *replica.Replica, clinic string) error {
	t.Helper()
	ctx := context.Background()
	for range 100 {
		up, err := dev.MakeBundle(ctx, cloud.ID())
		require.NoError(t, err)
		if _, err := cloud.ReceiveFrom(ctx, up.Data, replica.ReceiveOptions{Sender: dev.ID(), Clinic: clinic, CheckAuthors: true}); err != nil {
			return err
		}
		down, err := cloud.MakeBundleFor(ctx, dev.ID(), replica.BundleOptions{Clinic: clinic})
		require.NoError(t, err)
		if _, err := dev.Receive(ctx, down.Data); err != nil {
			return err
		}
		if up.Complete && down.Complete {
			return nil
		}
	}
	t.Fatal("sync did not finish in 100 round trips")
	return nil
}

// TestUserRosterReplicates: an administrator starts the north clinic's
// roster on one device; it reaches the clinic's other devices (and no
// other clinic's) through the cloud, which checks every roster change;
// a password changed on one device reaches the others.
func TestUserRosterReplicates(t *testing.T) {
	ctx := context.Background()
	d := newDeployment(t)
	cloudKeys := d.roster(t)
	cloud, _ := newMem(t, replica.Config{Keys: cloudKeys})
	north1, north2, south := d.device(t, "north"), d.device(t, "north"), d.device(t, "south")

	_, err := north1.UpdateUser(ctx, "north", northAdmin, record.UserUpdate{UserID: northAdmin.UserID, Name: "Femi", Role: record.RoleAdministrator, PasswordHash: hashN(0)})
	require.NoError(t, err, "the first administrator starts the roster")
	_, err = north1.UpdateUser(ctx, "north", northAdmin, record.UserUpdate{UserID: northNurse.UserID, Name: "Amina", Role: record.RoleNurse, PasswordHash: hashN(1)})
	require.NoError(t, err)

	require.NoError(t, checkedSync(t, cloud, north1.Replica, "north"))
	require.NoError(t, checkedSync(t, cloud, north2.Replica, "north"))
	require.NoError(t, checkedSync(t, cloud, south.Replica, "south"))

	want, err := north1.Users(ctx, "north")
	require.NoError(t, err)
	require.Len(t, want, 2)
	got, err := north2.Users(ctx, "north")
	require.NoError(t, err)
	assert.Equal(t, want, got, "the roster reaches the clinic's other device")
	southSees, err := south.Users(ctx, "north")
	require.NoError(t, err)
	assert.Empty(t, southSees, "another clinic's devices do not get north's roster")
	charts, err := north2.Find(ctx, "", 0)
	require.NoError(t, err)
	assert.Empty(t, charts, "a roster is not a patient's chart")

	// The nurse changes her password on the second device.
	_, err = north2.UpdateUser(ctx, "north", northNurse, record.UserUpdate{UserID: northNurse.UserID, PasswordHash: hashN(2)})
	require.NoError(t, err)
	require.NoError(t, checkedSync(t, cloud, north2.Replica, "north"))
	require.NoError(t, checkedSync(t, cloud, north1.Replica, "north"))
	amina, err := north1.User(ctx, "north", northNurse.UserID)
	require.NoError(t, err)
	assert.Equal(t, hashN(2), amina.PasswordHash, "a changed password reaches the other device")

	// A nurse may not add users, on the device or by claiming to be an
	// administrator.
	_, err = north1.UpdateUser(ctx, "north", northNurse, record.UserUpdate{UserID: "u-new", Name: "New", Role: record.RoleAdministrator, PasswordHash: hashN(3)})
	require.ErrorIs(t, err, record.ErrForbidden)
	claims := record.Author{UserID: northNurse.UserID, Role: record.RoleAdministrator}
	_, err = north1.UpdateUser(ctx, "north", claims, record.UserUpdate{UserID: "u-new", Name: "New", Role: record.RoleAdministrator, PasswordHash: hashN(3)})
	require.ErrorIs(t, err, record.ErrForbidden, "the roster, not the claimed role, says who administers")

	// The clinic's read policy travels with the roster.
	_, err = north1.SetHidden(ctx, "north", northNurse, record.RoleRegistrationClerk, []record.Section{record.SectionNotes})
	require.ErrorIs(t, err, record.ErrForbidden)
	_, err = north1.SetHidden(ctx, "north", northAdmin, record.RoleRegistrationClerk, []record.Section{record.SectionNotes})
	require.NoError(t, err)
	require.NoError(t, checkedSync(t, cloud, north1.Replica, "north"))
	require.NoError(t, checkedSync(t, cloud, north2.Replica, "north"))
	p, err := north2.ReadPolicy(ctx, "north")
	require.NoError(t, err)
	assert.Equal(t, record.ReadPolicy{record.RoleRegistrationClerk: {record.SectionNotes}}, p)
}

// TestRosterStartsMergeAndOtherClinicsAreRefused: two devices of a clinic
// that start its roster while apart end up with one roster holding both
// administrators (sync never stalls on it); a device of another clinic
// may neither start nor change it, even naming one of its administrators.
func TestRosterStartsMergeAndOtherClinicsAreRefused(t *testing.T) {
	ctx := context.Background()
	d := newDeployment(t)
	cloud, cloudStore := newMem(t, replica.Config{Keys: d.roster(t)})
	first, second, south := d.device(t, "north"), d.device(t, "north"), d.device(t, "south")
	_, err := first.UpdateUser(ctx, "north", northAdmin, record.UserUpdate{UserID: northAdmin.UserID, Name: "Femi", Role: record.RoleAdministrator, PasswordHash: hashN(0)})
	require.NoError(t, err)
	other := record.Author{UserID: "u-other", Role: record.RoleAdministrator}
	_, err = second.UpdateUser(ctx, "north", other, record.UserUpdate{UserID: other.UserID, Name: "Other", Role: record.RoleAdministrator, PasswordHash: hashN(9)})
	require.NoError(t, err)
	require.NoError(t, checkedSync(t, cloud, first.Replica, "north"))
	require.NoError(t, checkedSync(t, cloud, second.Replica, "north"), "a second start of the roster merges")
	require.NoError(t, checkedSync(t, cloud, first.Replica, "north"))
	a, err := first.Users(ctx, "north")
	require.NoError(t, err)
	b, err := second.Users(ctx, "north")
	require.NoError(t, err)
	require.Len(t, a, 2)
	assert.Equal(t, a, b, "both devices hold one roster with both administrators")

	// A south device that got hold of north's roster adds itself an
	// administrator, in the name of north's administrator.
	southHub, _ := newMem(t, replica.Config{Keys: d.roster(t)})
	_, err = replica.SyncPair(ctx, first.Replica, southHub)
	require.NoError(t, err)
	_, err = replica.SyncPair(ctx, southHub, south.Replica)
	require.NoError(t, err)
	_, err = south.UpdateUser(ctx, "north", northAdmin, record.UserUpdate{UserID: "u-mallory", Name: "Mallory", Role: record.RoleAdministrator, PasswordHash: hashN(7)})
	require.NoError(t, err, "on its own, the device does not check its own signer")
	before := dumpStore(t, cloudStore)
	up, err := south.MakeBundle(ctx, first.ID())
	require.NoError(t, err)
	_, err = first.ReceiveFrom(ctx, up.Data, replica.ReceiveOptions{CheckAuthors: true})
	require.ErrorIs(t, err, replica.ErrUnauthorizedChange, "a north device refuses a south device's roster change")
	assert.Contains(t, err.Error(), "a device of clinic south")
	assert.Equal(t, before, dumpStore(t, cloudStore))
	users, err := first.Users(ctx, "north")
	require.NoError(t, err)
	assert.Len(t, users, 2, "mallory is not on north's roster")
}

// TestRosterChangeOnAChartIsRefused: a change labelled as a roster
// change but made on a patient's chart is refused by a checking replica.
func TestRosterChangeOnAChartIsRefused(t *testing.T) {
	ctx := context.Background()
	cloud, _ := newMem(t, replica.Config{CheckAuthors: true})
	dev, _ := newMem(t, replica.Config{})
	id := registerAt(t, dev, "Amina", "north")
	_, err := replica.SyncPair(ctx, dev, cloud)
	require.NoError(t, err)

	// A modified client files a roster start under the chart's ID.
	u, _, err := record.NewUsers("north", crdt.NewActorID(), northAdmin, time.Date(2026, 3, 2, 9, 0, 0, 0, time.UTC), record.UserUpdate{UserID: northAdmin.UserID, Name: "Femi", Role: record.RoleAdministrator, PasswordHash: hashN(0)})
	require.NoError(t, err)
	chs, err := u.Doc().Changes(nil)
	require.NoError(t, err)
	data := encode(t, replica.Bundle{From: dev.ID(), To: cloud.ID(), Changes: []replica.BundleChange{{Chart: id, Raw: chs[0].Raw}}})
	_, err = cloud.Receive(ctx, data)
	require.ErrorIs(t, err, replica.ErrUnauthorizedChange, "a roster start filed under a chart's ID is refused")
}
