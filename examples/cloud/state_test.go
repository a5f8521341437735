package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/store/postgres/pgtest"
)

// backends opens, for each kind of state, a new empty one; each call of
// open gives another handle on the same state (another process, another
// node).
func backends(t *testing.T) map[string]func(t *testing.T) (open func() state) {
	return map[string]func(t *testing.T) func() state{
		"files": func(t *testing.T) func() state {
			dir := t.TempDir()
			return func() state {
				st, err := openFileState(dir)
				require.NoError(t, err)
				return st
			}
		},
		"postgres": func(t *testing.T) func() state {
			conn, schema := pgtest.ConnString(t), pgtest.Schema(t)
			key, _ := newOperatorKey()
			return func() state {
				st, err := openPGState(context.Background(), conn, schema, key)
				require.NoError(t, err)
				t.Cleanup(func() { st.Close() })
				return st
			}
		},
	}
}

func TestStateKeepsSecrets(t *testing.T) {
	for name, mk := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			open := mk(t)
			st := open()
			ca, created, err := st.DeviceCA(ctx)
			require.NoError(t, err)
			assert.True(t, created, "the first call makes the CA")
			a, created, err := st.Authority(ctx)
			require.NoError(t, err)
			assert.True(t, created)
			rid := replica.NewID()
			id, created, err := st.Identity(ctx, rid)
			require.NoError(t, err)
			assert.True(t, created)
			assert.Equal(t, rid, id.ReplicaID(), "the identity names the replica it was made for")

			again := open()
			ca2, created, err := again.DeviceCA(ctx)
			require.NoError(t, err)
			assert.False(t, created, "the CA is kept, not made again")
			assert.True(t, ca.Cert.Equal(ca2.Cert))
			a2, created, err := again.Authority(ctx)
			require.NoError(t, err)
			assert.False(t, created)
			assert.Equal(t, a.PublicKey(), a2.PublicKey(), "the same authority key comes back")
			id2, created, err := again.Identity(ctx, replica.NewID())
			require.NoError(t, err)
			assert.False(t, created)
			assert.Equal(t, rid, id2.ReplicaID(), "the kept identity wins over a new replica ID")
			assert.True(t, id.Public().Equal(id2.Public()))
			// The key issues certificates the kept certificate verifies.
			cred, _, err := ca2.IssueServerCert([]string{"127.0.0.1"}, time.Now(), time.Hour)
			require.NoError(t, err)
			assert.NotEmpty(t, cred)
		})
	}
}

// TestNodesMakingSecretsAtOnceShareOne starts several handles making the
// secrets together: every one gets the same.
func TestNodesMakingSecretsAtOnceShareOne(t *testing.T) {
	for name, mk := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			open := mk(t)
			const nodes = 4
			sts := make([]state, nodes)
			for i := range sts {
				sts[i] = open()
			}
			cas := make([][]byte, nodes)
			auths := make([][]byte, nodes)
			ids := make([]string, nodes)
			var wg sync.WaitGroup
			for i := range nodes {
				wg.Go(func() {
					ca, _, err := sts[i].DeviceCA(ctx)
					if assert.NoError(t, err) {
						cas[i] = ca.Cert.Raw
					}
					a, _, err := sts[i].Authority(ctx)
					if assert.NoError(t, err) {
						auths[i] = a.PublicKey()
					}
					id, _, err := sts[i].Identity(ctx, replica.NewID())
					if assert.NoError(t, err) {
						ids[i] = id.ReplicaID()
					}
				})
			}
			wg.Wait()
			for i := 1; i < nodes; i++ {
				assert.Equal(t, cas[0], cas[i], "node %d has the same CA", i)
				assert.Equal(t, auths[0], auths[i], "node %d has the same authority", i)
				assert.Equal(t, ids[0], ids[i], "node %d has the same replica identity", i)
			}
		})
	}
}

func TestStateKeepsRosterAndEnrolments(t *testing.T) {
	for name, mk := range backends(t) {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			open := mk(t)
			st, other := open(), open()
			a, _, err := st.Authority(ctx)
			require.NoError(t, err)
			keys, err := device.Generate(replica.NewID(), "kamuga")
			require.NoError(t, err)
			now := time.Now().Truncate(time.Second)
			signed, err := a.Enrol(keys.Public(), now, time.Hour*24)
			require.NoError(t, err)

			seen, err := device.NewRoster(rosterConfig(a))
			require.NoError(t, err)
			v0, err := other.MergeRoster(ctx, seen, 0)
			require.NoError(t, err)
			_, err = seen.Lookup(keys.ReplicaID())
			require.ErrorIs(t, err, device.ErrUnknownDevice)

			require.NoError(t, st.AddToRoster(ctx, signed))
			require.NoError(t, st.AddToRoster(ctx, signed), "adding a record twice is harmless")
			v1, err := other.MergeRoster(ctx, seen, v0)
			require.NoError(t, err)
			assert.NotEqual(t, v0, v1, "the version moves when a record is added")
			pub, err := seen.Lookup(keys.ReplicaID())
			require.NoError(t, err, "another handle sees the enrolment")
			assert.True(t, pub.Equal(keys.Public()))
			v2, err := other.MergeRoster(ctx, seen, v1)
			require.NoError(t, err)
			assert.Equal(t, v1, v2, "nothing new, the same version")

			rev, err := a.Revoke(keys.ReplicaID(), "kamuga", now.Add(time.Second))
			require.NoError(t, err)
			require.NoError(t, st.AddToRoster(ctx, rev))
			_, err = other.MergeRoster(ctx, seen, v2)
			require.NoError(t, err)
			_, err = seen.Lookup(keys.ReplicaID())
			assert.ErrorIs(t, err, device.ErrRevoked, "the revocation reaches the other handle")

			e := enrolment{Device: "kamuga-tablet-1", Clinic: "kamuga", Replica: keys.ReplicaID(), Issued: now.UTC(), NotAfter: now.Add(time.Hour).UTC()}
			require.NoError(t, st.RecordEnrolment(ctx, e))
			r := e
			r.Revoked = now.Add(time.Second).UTC()
			require.NoError(t, st.RecordEnrolment(ctx, r))
			list, err := other.Enrolments(ctx)
			require.NoError(t, err)
			assert.Equal(t, []enrolment{e, r}, list, "the enrolment and its revocation, in order")
		})
	}
}

func TestDatabaseSecretsAreSealedWithTheOperatorKey(t *testing.T) {
	ctx := context.Background()
	conn, schema := pgtest.ConnString(t), pgtest.Schema(t)
	key, _ := newOperatorKey()
	st, err := openPGState(ctx, conn, schema, key)
	require.NoError(t, err)
	defer st.Close()
	ca, _, err := st.DeviceCA(ctx)
	require.NoError(t, err)
	_, keyPEM, err := ca.MarshalPEM()
	require.NoError(t, err)
	a, _, err := st.Authority(ctx)
	require.NoError(t, err)
	_, _, err = st.Identity(ctx, replica.NewID())
	require.NoError(t, err)

	c, err := pgx.Connect(ctx, conn)
	require.NoError(t, err)
	defer c.Close(ctx)
	rows, err := c.Query(ctx, "SELECT name, sealed, public FROM "+pgx.Identifier{schema, "cloud_secrets"}.Sanitize())
	require.NoError(t, err)
	n := 0
	for rows.Next() {
		var name string
		var sealed, public []byte
		require.NoError(t, rows.Scan(&name, &sealed, &public))
		n++
		for _, b := range [][]byte{sealed, public} {
			assert.False(t, bytes.Contains(b, []byte("PRIVATE KEY")), "%s: no key in the clear", name)
			assert.False(t, bytes.Contains(b, keyPEM[40:80]), "%s: the CA key is not in the database", name)
		}
	}
	require.NoError(t, rows.Err())
	assert.Equal(t, 3, n, "the CA, the authority and the identity")

	wrong, _ := newOperatorKey()
	other, err := openPGState(ctx, conn, schema, wrong)
	require.NoError(t, err)
	defer other.Close()
	_, _, err = other.DeviceCA(ctx)
	assert.ErrorIs(t, err, errWrongKey, "the wrong key cannot open the CA")
	_, _, err = other.Authority(ctx)
	assert.ErrorIs(t, err, errWrongKey)
	_, _, err = other.Identity(ctx, replica.NewID())
	assert.ErrorIs(t, err, errWrongKey)

	// A secret moved to another's row does not open: each is bound to
	// its name.
	_, err = c.Exec(ctx, "UPDATE "+pgx.Identifier{schema, "cloud_secrets"}.Sanitize()+
		" SET sealed = (SELECT sealed FROM "+pgx.Identifier{schema, "cloud_secrets"}.Sanitize()+" WHERE name = 'cloud identity') WHERE name = 'enrolment authority'")
	require.NoError(t, err)
	_, _, err = st.Authority(ctx)
	assert.ErrorIs(t, err, errWrongKey, "a swapped secret is refused")
	assert.NotNil(t, a)
}

func TestOperatorKey(t *testing.T) {
	dir := t.TempDir()
	key, text := newOperatorKey()
	good := filepath.Join(dir, "key")
	require.NoError(t, os.WriteFile(good, []byte(text), 0o600))
	got, err := loadOperatorKey(good)
	require.NoError(t, err)
	assert.Equal(t, key.k, got.k, "the key file reads back")
	sealed := key.seal("x", []byte("secret"))
	plain, err := got.open("x", sealed)
	require.NoError(t, err)
	assert.Equal(t, "secret", string(plain))
	_, err = got.open("y", sealed)
	assert.ErrorIs(t, err, errWrongKey, "a secret opens only under its own name")
	sealed[len(sealed)-1] ^= 1
	_, err = got.open("x", sealed)
	assert.ErrorIs(t, err, errWrongKey, "an altered secret is refused")
	_, err = got.open("x", []byte{1, 2})
	assert.ErrorIs(t, err, errWrongKey, "a short one too, without a panic")

	open := filepath.Join(dir, "open")
	require.NoError(t, os.WriteFile(open, []byte(text), 0o644))
	_, err = loadOperatorKey(open)
	assert.ErrorContains(t, err, "others may read it")

	bad := filepath.Join(dir, "bad")
	require.NoError(t, os.WriteFile(bad, []byte("not a key\n"), 0o600))
	_, err = loadOperatorKey(bad)
	assert.ErrorIs(t, err, errBadKey)

	t.Setenv(envKey, "")
	_, err = loadOperatorKey("")
	assert.ErrorIs(t, err, errNoKey)
	t.Setenv(envKey, text)
	got, err = loadOperatorKey("")
	require.NoError(t, err)
	assert.Equal(t, key.k, got.k, "the key from the environment")
}
