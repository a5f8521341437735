package replica_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/store"
)

// TestForkedReplicaWritesNothing: once a replica is found forked, every
// call that makes a change as its actor refuses with a *ForkedError
// naming it, and the store is exactly as it was, after a restart too:
// registering, editing, merging and unmerging charts, adding and changing
// the clinic's users, setting what a role may read, and importing charts
// made as this replica. Importing a chart made by another replica still
// writes nothing of this replica's.
func TestForkedReplicaWritesNothing(t *testing.T) {
	ctx := context.Background()
	const clinic = "kamuga-dispensary"
	writes := []struct {
		name  string
		write func(r *replica.Replica, f *forkedWritesFixture) error
	}{
		{"register a patient", func(r *replica.Replica, _ *forkedWritesFixture) error {
			_, err := r.Register(ctx, nurse, record.Register{GivenName: "Esther", FamilyName: "Wambui", Sex: "female", EstimatedBirthYear: 1990, Village: "Kamuga", HomeClinic: clinic})
			return err
		}},
		{"edit a chart", func(r *replica.Replica, f *forkedWritesFixture) error {
			_, err := r.Edit(ctx, f.a, doctor, allergy(7))
			return err
		}},
		{"merge two charts", func(r *replica.Replica, f *forkedWritesFixture) error {
			return r.Merge(ctx, f.b, f.a, doctor, "same woman")
		}},
		{"unmerge a chart", func(r *replica.Replica, f *forkedWritesFixture) error {
			return r.Unmerge(ctx, f.c, doctor, "not the same")
		}},
		{"add a user", func(r *replica.Replica, _ *forkedWritesFixture) error {
			_, err := r.UpdateUser(ctx, clinic, admin, record.UserUpdate{UserID: "u-new", Name: "New", Role: record.RoleNurse, PasswordHash: hashN(5)})
			return err
		}},
		{"change a user's password", func(r *replica.Replica, _ *forkedWritesFixture) error {
			_, err := r.UpdateUser(ctx, clinic, admin, record.UserUpdate{UserID: admin.UserID, PasswordHash: hashN(6)})
			return err
		}},
		{"disable a user", func(r *replica.Replica, _ *forkedWritesFixture) error {
			_, err := r.UpdateUser(ctx, clinic, admin, record.UserUpdate{UserID: admin.UserID, Disable: true})
			return err
		}},
		{"hide a section from a role", func(r *replica.Replica, _ *forkedWritesFixture) error {
			_, err := r.SetHidden(ctx, clinic, admin, record.RoleRegistrationClerk, []record.Section{record.SectionPrescriptions})
			return err
		}},
		{"import a chart made as this replica", func(r *replica.Replica, _ *forkedWritesFixture) error {
			c, _, err := record.New(uuid.NewString(), r.ID(), nurse, frozenAt, record.Register{GivenName: "Imani", FamilyName: "Kariuki", Sex: "female", EstimatedBirthYear: 1975, Village: "Kamuga", HomeClinic: clinic})
			if err != nil {
				return err
			}
			return r.Import(ctx, []*record.Chart{c})
		}},
	}
	for _, w := range writes {
		t.Run(w.name, func(t *testing.T) {
			f := newForkedWritesFixture(t)
			require.NoError(t, w.write(f.r, f), "before the replica is forked, the write is allowed")
			f = newForkedWritesFixture(t)
			require.ErrorIs(t, f.r.MarkForked(ctx, errors.New("peer cloud holds another change at position 3")), replica.ErrForkedReplica)
			before := dumpStore(t, f.st)
			r := f.r
			for restart := range 2 {
				if restart == 1 {
					r = reopenMem(t, r, f.st, f.cfg)
				}
				err := w.write(r, f)
				require.ErrorIs(t, err, replica.ErrForkedReplica, "a forked replica must not write as its actor")
				var fe *replica.ForkedError
				require.True(t, errors.As(err, &fe), "the error is a *ForkedError")
				assert.Equal(t, r.ID(), fe.Replica, "the error names the forked replica")
				assert.True(t, fe.Self)
				assert.Equal(t, before, dumpStore(t, f.st), "nothing is written")
			}
		})
	}

	t.Run("import a chart made by another replica", func(t *testing.T) {
		f := newForkedWritesFixture(t)
		require.ErrorIs(t, f.r.MarkForked(ctx, errors.New("forked")), replica.ErrForkedReplica)
		c, _, err := record.New(uuid.NewString(), replica.NewID(), nurse, frozenAt, record.Register{GivenName: "Imani", FamilyName: "Kariuki", Sex: "female", EstimatedBirthYear: 1975, Village: "Kamuga", HomeClinic: clinic})
		require.NoError(t, err)
		require.NoError(t, f.r.Import(ctx, []*record.Chart{c}), "another replica's changes are not written as this one")
	})
}

// forkedWritesFixture is a replica with a roster and three charts, C
// merged into B.
type forkedWritesFixture struct {
	r       *replica.Replica
	st      *store.Mem
	cfg     replica.Config
	a, b, c string
}

func newForkedWritesFixture(t *testing.T) *forkedWritesFixture {
	ctx := context.Background()
	f := &forkedWritesFixture{cfg: replica.Config{Now: frozen}}
	f.r, f.st = newMem(t, f.cfg)
	_, err := f.r.UpdateUser(ctx, "kamuga-dispensary", admin, record.UserUpdate{UserID: admin.UserID, Name: "Femi", Role: record.RoleAdministrator, PasswordHash: hashN(0)})
	require.NoError(t, err)
	f.a = register(t, f.r, "Wanjiru", "Mwangi", "Kamuga")
	f.b = register(t, f.r, "Wanjiru", "Mwangi", "Kamuga")
	f.c = register(t, f.r, "Wanjiku", "Mwangi", "Kamuga")
	require.NoError(t, f.r.Merge(ctx, f.c, f.b, doctor, "same woman"))
	return f
}
