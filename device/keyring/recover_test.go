package keyring

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"filippo.io/age"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestRecoverWithoutAnyPassword: the recovery identity gives the data key
// with no password, and an administrator then gives the device a new user
// (and a forgotten password a new value) without re-encrypting anything.
func TestRecoverWithoutAnyPassword(t *testing.T) {
	path, key, id := newKeyring(t)
	got, err := Recover(path, id)
	require.NoError(t, err)
	assert.Equal(t, key, got, "Recover gives another key than Create's")

	require.NoError(t, fast.AddUser(path, got, "chiku", "a new administrator password"))
	require.NoError(t, fast.ResetPassword(path, got, "amina", "amina's new password"))
	for user, password := range map[string]string{"chiku": "a new administrator password", "amina": "amina's new password", "bara": baraPassword} {
		k, err := Unlock(path, user, password)
		require.NoError(t, err, "%s after recovery", user)
		assert.Equal(t, key, k)
	}
	_, err = Unlock(path, "amina", aminaPassword)
	require.ErrorIs(t, err, ErrWrongPassword, "amina's forgotten password still unlocks after a reset")
}

// TestRecoverToAHybridRecipient: a post-quantum hybrid recipient works
// as the recovery recipient.
func TestRecoverToAHybridRecipient(t *testing.T) {
	id, err := age.GenerateHybridIdentity()
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "keyring")
	key, err := fast.Create(path, id.Recipient().String(), "amina", aminaPassword)
	require.NoError(t, err)
	got, err := Recover(path, id)
	require.NoError(t, err)
	assert.Equal(t, key, got)
}

// TestRecoverErrors: another identity, no identity, and a damaged
// recovery entry are refused with their typed errors.
func TestRecoverErrors(t *testing.T) {
	stranger, _ := newRecovery(t)
	otherPath, _, otherID := newKeyring(t)
	for _, tt := range []struct {
		name     string
		identity func(own *age.X25519Identity) age.Identity
		edit     func(t *testing.T, path string)
		want     error
	}{
		{name: "another identity", identity: func(*age.X25519Identity) age.Identity { return stranger }, want: ErrWrongIdentity},
		{name: "no identity", identity: func(*age.X25519Identity) age.Identity { return nil }, want: ErrWrongIdentity},
		{name: "a passphrase identity", identity: func(*age.X25519Identity) age.Identity {
			id, err := age.NewScryptIdentity("a passphrase")
			require.NoError(t, err)
			return id
		}, want: ErrWrongIdentity},
		{name: "a recovery entry cut short", identity: func(own *age.X25519Identity) age.Identity { return own }, want: ErrDamaged,
			edit: func(t *testing.T, path string) {
				rewrite(t, path, func(r *ring) { r.Recovery.Age = r.Recovery.Age[:len(r.Recovery.Age)-8] })
			}},
		{name: "a recovery entry with a flipped bit", identity: func(own *age.X25519Identity) age.Identity { return own }, want: ErrDamaged,
			edit: func(t *testing.T, path string) {
				rewrite(t, path, func(r *ring) { r.Recovery.Age[len(r.Recovery.Age)-1] ^= 1 })
			}},
		{name: "another device's recovery entry", identity: func(*age.X25519Identity) age.Identity { return otherID }, want: ErrDamaged,
			edit: func(t *testing.T, path string) {
				theirs, err := load(otherPath)
				require.NoError(t, err)
				rewrite(t, path, func(r *ring) { r.Recovery = theirs.Recovery })
			}},
		{name: "a damaged file", identity: func(own *age.X25519Identity) age.Identity { return own }, want: ErrDamaged,
			edit: func(t *testing.T, path string) { rewriteBytes(t, path, func(b []byte) []byte { return b[1:] }) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path, _, id := newKeyring(t)
			if tt.edit != nil {
				tt.edit(t, path)
			}
			key, err := Recover(path, tt.identity(id))
			require.ErrorIs(t, err, tt.want)
			assert.Nil(t, key)
		})
	}
}

// TestFileHoldsNoSecret: after a keyring's whole life (created, users
// added and removed, passwords changed and reset) its file holds neither
// the data key (raw, hex or base64) nor any password, past or present,
// and is the owner's alone.
func TestFileHoldsNoSecret(t *testing.T) {
	path, key, _ := newKeyring(t)
	passwords := []string{aminaPassword, baraPassword, "chiku's first password", "chiku's second password", "amina's reset password"}
	require.NoError(t, fast.AddUser(path, key, "chiku", passwords[2]))
	require.NoError(t, fast.ChangePassword(path, "chiku", passwords[2], passwords[3]))
	require.NoError(t, fast.ResetPassword(path, key, "amina", passwords[4]))
	require.NoError(t, RemoveUser(path, key, "bara"))

	data, err := os.ReadFile(path)
	require.NoError(t, err)
	secrets := map[string][]byte{
		"the key":                 key,
		"the key in hex":          []byte(hex.EncodeToString(key)),
		"the key in base64":       []byte(base64.StdEncoding.EncodeToString(key)),
		"the key in base64 (URL)": []byte(base64.RawURLEncoding.EncodeToString(key)),
		"half the key":            key[:KeySize/2],
	}
	for i, p := range passwords {
		secrets["password "+string(rune('0'+i))] = []byte(p)
		secrets["password "+string(rune('0'+i))+" in base64"] = []byte(base64.StdEncoding.EncodeToString([]byte(p)))
	}
	for what, s := range secrets {
		assert.False(t, bytes.Contains(data, s), "the keyring file holds %s", what)
	}
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "the keyring file is readable by others")
}

// TestFailedWriteLeavesTheKeyringAsItWas: when writing the new file fails
// (its rename, or for Create its sync), AddUser, ChangePassword and Create
// report it, the keyring is byte for byte as
// it was, still unlocks, and no temporary file is left behind.
func TestFailedWriteLeavesTheKeyringAsItWas(t *testing.T) {
	path, key, _ := newKeyring(t)
	before, err := os.ReadFile(path)
	require.NoError(t, err)
	errDisk := errors.New("no space left on device")
	writeOptions.Rename = func(string, string) error { return errDisk }
	t.Cleanup(func() { writeOptions.Rename = nil })

	require.ErrorIs(t, fast.AddUser(path, key, "chiku", "chiku's password"), errDisk)
	require.ErrorIs(t, fast.ChangePassword(path, "amina", aminaPassword, "amina's new password"), errDisk)
	after, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, before, after, "a failed write changed the keyring")
	assert.Equal(t, []string{"keyring"}, dirNames(t, filepath.Dir(path)), "a failed write left a temporary file")
	_, err = Unlock(path, "amina", aminaPassword)
	require.NoError(t, err, "amina's old password no longer unlocks after a failed change")

	// Create puts its file in place with a link, not a rename: fail its
	// sync instead.
	writeOptions.Sync = func(*os.File) error { return errDisk }
	t.Cleanup(func() { writeOptions.Sync = nil })
	_, rcpt := newRecovery(t)
	fresh := filepath.Join(filepath.Dir(path), "other-keyring")
	_, err = fast.Create(fresh, rcpt, "amina", aminaPassword)
	require.ErrorIs(t, err, errDisk)
	assert.NoFileExists(t, fresh, "a failed Create left a keyring")
	assert.Equal(t, []string{"keyring"}, dirNames(t, filepath.Dir(path)), "a failed Create left a temporary file")
}

// TestChangePasswordKeepsTheKey: a changed password unlocks the same key,
// the old one no longer does, and the entry's salt and nonce are new.
func TestChangePasswordKeepsTheKey(t *testing.T) {
	path, key, _ := newKeyring(t)
	old, err := load(path)
	require.NoError(t, err)
	require.NoError(t, fast.ChangePassword(path, "amina", aminaPassword, "amina's new password"))
	got, err := Unlock(path, "amina", "amina's new password")
	require.NoError(t, err)
	assert.Equal(t, key, got, "the new password unlocks another key")
	_, err = Unlock(path, "amina", aminaPassword)
	require.ErrorIs(t, err, ErrWrongPassword, "the old password still unlocks")
	now, err := load(path)
	require.NoError(t, err)
	assert.NotEqual(t, old.Users[0].Salt, now.Users[0].Salt, "the salt was reused")
	assert.NotEqual(t, old.Users[0].Nonce, now.Users[0].Nonce, "the nonce was reused")
	assert.Equal(t, old.Users[1], now.Users[1], "another user's entry changed")
}

// TestEntriesKeepTheirParameters: an entry written with other parameters
// than today's still unlocks (Unlock reads them from the entry), and a
// password change writes the config's.
func TestEntriesKeepTheirParameters(t *testing.T) {
	path, key, _ := newKeyring(t)
	stronger := Config{Params: Params{Memory: 256, Time: 2, Threads: 2}}
	require.NoError(t, stronger.AddUser(path, key, "chiku", "chiku's password"))
	got, err := Unlock(path, "chiku", "chiku's password")
	require.NoError(t, err)
	assert.Equal(t, key, got)
	require.NoError(t, stronger.ChangePassword(path, "amina", aminaPassword, "amina's new password"))
	r, err := load(path)
	require.NoError(t, err)
	i, _ := r.find("amina")
	assert.Equal(t, stronger.Params, r.Users[i].Argon2id)
	j, _ := r.find("bara")
	assert.Equal(t, fast.Params, r.Users[j].Argon2id)
}

// TestZeroConfigUsesDefaultParams: the zero Config writes DefaultParams.
func TestZeroConfigUsesDefaultParams(t *testing.T) {
	if testing.Short() {
		t.Skip("derives a key with DefaultParams")
	}
	_, rcpt := newRecovery(t)
	path := filepath.Join(t.TempDir(), "keyring")
	_, err := Create(path, rcpt, "amina", aminaPassword)
	require.NoError(t, err)
	r, err := load(path)
	require.NoError(t, err)
	assert.Equal(t, DefaultParams, r.Users[0].Argon2id)
	require.NoError(t, DefaultParams.Validate())
}

// TestCreateForKeyRebuildsADamagedKeyring: a damaged keyring refuses every
// password; the key recovered from an older copy of the file makes a new
// keyring for the same key, which the new user's password unlocks. A key
// of the wrong size, or a path that holds a keyring, is refused.
func TestCreateForKeyRebuildsADamagedKeyring(t *testing.T) {
	path, key, id := newKeyring(t)
	copyPath := filepath.Join(t.TempDir(), "keyring-copy")
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(copyPath, data, 0o600))
	rewriteBytes(t, path, func(b []byte) []byte { return b[:len(b)-40] })
	_, err = Unlock(path, "amina", aminaPassword)
	require.ErrorIs(t, err, ErrDamaged)

	recovered, err := Recover(copyPath, id)
	require.NoError(t, err)
	require.ErrorIs(t, fast.CreateForKey(path, recovered, id.Recipient().String(), "admin", "the administrator's password"), ErrExists)
	require.ErrorIs(t, fast.CreateForKey(filepath.Join(t.TempDir(), "k"), recovered[:16], id.Recipient().String(), "admin", "the administrator's password"), ErrWrongKey)
	require.NoError(t, os.Remove(path))
	require.NoError(t, fast.CreateForKey(path, recovered, id.Recipient().String(), "admin", "the administrator's password"))
	got, err := Unlock(path, "admin", "the administrator's password")
	require.NoError(t, err)
	assert.Equal(t, key, got, "the rebuilt keyring holds another key")
	again, err := Recover(path, id)
	require.NoError(t, err)
	assert.Equal(t, key, again, "the rebuilt keyring's recovery entry holds another key")
}

// TestCreateNeverReplacesAKeyring: a keyring that appears while Create
// writes its own (another process creating one) is kept byte for byte,
// Create reports ErrExists, and no temporary file is left.
func TestCreateNeverReplacesAKeyring(t *testing.T) {
	_, rcpt := newRecovery(t)
	path := filepath.Join(t.TempDir(), "keyring")
	var theirs []byte
	writeOptions.Sync = func(f *os.File) error {
		writeOptions.Sync = nil // the other Create syncs as usual
		_, err := fast.Create(path, rcpt, "bara", baraPassword)
		require.NoError(t, err, "the other process's Create")
		theirs, err = os.ReadFile(path)
		require.NoError(t, err)
		return f.Sync()
	}
	t.Cleanup(func() { writeOptions.Sync = nil })
	key, err := fast.Create(path, rcpt, "amina", aminaPassword)
	require.ErrorIs(t, err, ErrExists)
	assert.Nil(t, key)
	got, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Equal(t, theirs, got, "Create replaced a keyring made while it wrote")
	assert.Equal(t, []string{"keyring"}, dirNames(t, filepath.Dir(path)), "Create left a temporary file")
}
