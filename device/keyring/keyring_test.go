package keyring

import (
	"bytes"
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"filippo.io/age"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fast are parameters small enough for tests to derive many keys.
var fast = Config{Params: Params{Memory: 64, Time: 1, Threads: 1}}

const (
	aminaPassword = "mango tree at the well"
	baraPassword  = "blue door by the river"
)

// newRecovery returns a fresh age identity and its recipient string.
func newRecovery(t testing.TB) (*age.X25519Identity, string) {
	t.Helper()
	id, err := age.GenerateX25519Identity()
	require.NoError(t, err)
	return id, id.Recipient().String()
}

// newKeyring creates a keyring for amina (and bara) in a new directory
// and returns its path, the data key and the recovery identity.
func newKeyring(t testing.TB) (string, []byte, *age.X25519Identity) {
	t.Helper()
	id, rcpt := newRecovery(t)
	path := filepath.Join(t.TempDir(), "keyring")
	key, err := fast.Create(path, rcpt, "amina", aminaPassword)
	require.NoError(t, err)
	require.Len(t, key, KeySize)
	require.NoError(t, fast.AddUser(path, key, "bara", baraPassword))
	return path, key, id
}

// rewrite decodes the keyring at path, lets edit change it, and writes
// it back with a checksum that matches: what someone who edits the file
// on purpose would write.
func rewrite(t *testing.T, path string, edit func(r *ring)) {
	t.Helper()
	r, err := load(path)
	require.NoError(t, err)
	edit(r)
	data, err := r.encode()
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, data, 0o600))
}

// rewriteBytes replaces the keyring file's bytes with edit's.
func rewriteBytes(t *testing.T, path string, edit func([]byte) []byte) {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, edit(bytes.Clone(data)), 0o600))
}

// TestUnlockGivesTheDataKey: each user's password unlocks the same key
// that Create returned, and Users lists them.
func TestUnlockGivesTheDataKey(t *testing.T) {
	path, key, _ := newKeyring(t)
	for user, password := range map[string]string{"amina": aminaPassword, "bara": baraPassword} {
		got, err := Unlock(path, user, password)
		require.NoError(t, err, "unlocking as %s", user)
		assert.Equal(t, key, got, "%s's password unlocks another key than Create's", user)
	}
	users, err := Users(path)
	require.NoError(t, err)
	assert.Equal(t, []string{"amina", "bara"}, users)
}

// TestUnlockErrors: each way Unlock can fail gives its typed error, and
// the file is left byte for byte as it was.
func TestUnlockErrors(t *testing.T) {
	other, _, _ := newKeyring(t)
	for _, tt := range []struct {
		name     string
		user     string
		password string
		edit     func(t *testing.T, path string)
		want     error
	}{
		{name: "wrong password", user: "amina", password: baraPassword, want: ErrWrongPassword},
		{name: "empty password", user: "amina", password: "", want: ErrWrongPassword},
		{name: "password over the bound", user: "amina", password: strings.Repeat("m", MaxPasswordLength+1), want: ErrWrongPassword},
		{name: "unknown user", user: "chiku", password: aminaPassword, want: ErrUnknownUser},
		{name: "user ID of another case", user: "Amina", password: aminaPassword, want: ErrUnknownUser},
		{name: "missing file", user: "amina", password: aminaPassword, want: fs.ErrNotExist,
			edit: func(t *testing.T, path string) { require.NoError(t, os.Remove(path)) }},
		{name: "empty file", user: "amina", password: aminaPassword, want: ErrDamaged,
			edit: func(t *testing.T, path string) { rewriteBytes(t, path, func([]byte) []byte { return nil }) }},
		{name: "truncated", user: "amina", password: aminaPassword, want: ErrDamaged,
			edit: func(t *testing.T, path string) { rewriteBytes(t, path, func(b []byte) []byte { return b[:len(b)/2] }) }},
		{name: "not JSON", user: "amina", password: aminaPassword, want: ErrDamaged,
			edit: func(t *testing.T, path string) {
				rewriteBytes(t, path, func([]byte) []byte { return []byte("PK\x03\x04") })
			}},
		{name: "larger than MaxFileSize", user: "amina", password: aminaPassword, want: ErrDamaged,
			edit: func(t *testing.T, path string) {
				rewriteBytes(t, path, func(b []byte) []byte { return append(b, bytes.Repeat([]byte(" "), MaxFileSize)...) })
			}},
		{name: "data after the keyring", user: "amina", password: aminaPassword, want: ErrDamaged,
			edit: func(t *testing.T, path string) {
				rewriteBytes(t, path, func(b []byte) []byte { return append(b, "{}"...) })
			}},
		{name: "a changed sealed key", user: "amina", password: aminaPassword, want: ErrDamaged,
			edit: func(t *testing.T, path string) {
				r, err := load(path)
				require.NoError(t, err)
				sealed := base64.StdEncoding.EncodeToString(r.Users[0].Sealed)
				flipped := []byte(sealed)
				flipped[5] = map[bool]byte{true: 'B', false: 'A'}[flipped[5] == 'A'] // still base64
				rewriteBytes(t, path, func(b []byte) []byte { return bytes.Replace(b, []byte(sealed), flipped, 1) })
			}},
		{name: "a checksum that does not match", user: "amina", password: aminaPassword, want: ErrDamaged,
			edit: func(t *testing.T, path string) {
				r, err := load(path)
				require.NoError(t, err)
				data, err := r.encode()
				require.NoError(t, err)
				f := strings.Index(string(data), `"sha256":"`) + len(`"sha256":"`)
				rewriteBytes(t, path, func(b []byte) []byte { b[f] ^= 1; return b })
			}},
		{name: "unknown field", user: "amina", password: aminaPassword, want: ErrDamaged,
			edit: func(t *testing.T, path string) {
				rewriteBytes(t, path, func(b []byte) []byte {
					return bytes.Replace(b, []byte(`{"keyring"`), []byte(`{"extra":1,"keyring"`), 1)
				})
			}},
		{name: "another version", user: "amina", password: aminaPassword, want: ErrDamaged,
			edit: func(t *testing.T, path string) { rewrite(t, path, func(r *ring) { r.Version = 2 }) }},
		{name: "another format", user: "amina", password: aminaPassword, want: ErrDamaged,
			edit: func(t *testing.T, path string) { rewrite(t, path, func(r *ring) { r.Format = "age" }) }},
		{name: "no users", user: "amina", password: aminaPassword, want: ErrDamaged,
			edit: func(t *testing.T, path string) { rewrite(t, path, func(r *ring) { r.Users = nil }) }},
		{name: "a user twice", user: "amina", password: aminaPassword, want: ErrDamaged,
			edit: func(t *testing.T, path string) { rewrite(t, path, func(r *ring) { r.Users[1].User = "amina" }) }},
		{name: "users out of order", user: "amina", password: aminaPassword, want: ErrDamaged,
			edit: func(t *testing.T, path string) {
				rewrite(t, path, func(r *ring) { r.Users[0], r.Users[1] = r.Users[1], r.Users[0] })
			}},
		{name: "a user ID with a control character", user: "amina", password: aminaPassword, want: ErrDamaged,
			edit: func(t *testing.T, path string) { rewrite(t, path, func(r *ring) { r.Users[1].User = "bara\n" }) }},
		{name: "memory over the bound", user: "amina", password: aminaPassword, want: ErrDamaged,
			edit: func(t *testing.T, path string) {
				rewrite(t, path, func(r *ring) { r.Users[0].Argon2id.Memory = MaxMemory + 1 })
			}},
		{name: "work over the bound", user: "amina", password: aminaPassword, want: ErrDamaged,
			edit: func(t *testing.T, path string) {
				rewrite(t, path, func(r *ring) { r.Users[0].Argon2id = Params{Memory: MaxMemory, Time: 5, Threads: 1} })
			}},
		{name: "zero threads", user: "amina", password: aminaPassword, want: ErrDamaged,
			edit: func(t *testing.T, path string) { rewrite(t, path, func(r *ring) { r.Users[0].Argon2id.Threads = 0 }) }},
		{name: "a short salt", user: "amina", password: aminaPassword, want: ErrDamaged,
			edit: func(t *testing.T, path string) {
				rewrite(t, path, func(r *ring) { r.Users[0].Salt = r.Users[0].Salt[:8] })
			}},
		{name: "a short nonce", user: "amina", password: aminaPassword, want: ErrDamaged,
			edit: func(t *testing.T, path string) {
				rewrite(t, path, func(r *ring) { r.Users[0].Nonce = r.Users[0].Nonce[:12] })
			}},
		{name: "a truncated sealed key", user: "amina", password: aminaPassword, want: ErrDamaged,
			edit: func(t *testing.T, path string) {
				rewrite(t, path, func(r *ring) { r.Users[0].Sealed = r.Users[0].Sealed[:40] })
			}},
		{name: "a short key check", user: "amina", password: aminaPassword, want: ErrDamaged,
			edit: func(t *testing.T, path string) { rewrite(t, path, func(r *ring) { r.KeyCheck = r.KeyCheck[:16] }) }},
		{name: "a recipient that does not parse", user: "amina", password: aminaPassword, want: ErrDamaged,
			edit: func(t *testing.T, path string) { rewrite(t, path, func(r *ring) { r.Recovery.Recipient = "age1nope" }) }},
		{name: "no recovery entry", user: "amina", password: aminaPassword, want: ErrDamaged,
			edit: func(t *testing.T, path string) { rewrite(t, path, func(r *ring) { r.Recovery.Age = nil }) }},
		{name: "an entry from another device's keyring", user: "amina", password: aminaPassword, want: ErrDamaged,
			edit: func(t *testing.T, path string) {
				theirs, err := load(other)
				require.NoError(t, err)
				rewrite(t, path, func(r *ring) { r.Users[0] = theirs.Users[0] })
			}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path, _, _ := newKeyring(t)
			if tt.edit != nil {
				tt.edit(t, path)
			}
			before, _ := os.ReadFile(path)
			key, err := Unlock(path, tt.user, tt.password)
			require.ErrorIs(t, err, tt.want)
			assert.Nil(t, key, "a refused unlock returned a key")
			for _, other := range []error{ErrWrongPassword, ErrUnknownUser, ErrDamaged} {
				if other != tt.want {
					assert.NotErrorIs(t, err, other, "the error says more than one thing: %v", err)
				}
			}
			after, _ := os.ReadFile(path)
			assert.Equal(t, before, after, "a refused unlock changed the file")
		})
	}
}

// TestEntriesCannotBeSwapped moves each user's entry to the other's name
// (with a checksum that matches): neither password opens the entry now
// under its name, because the user ID is sealed with the key.
func TestEntriesCannotBeSwapped(t *testing.T) {
	path, _, _ := newKeyring(t)
	rewrite(t, path, func(r *ring) {
		r.Users[0].User, r.Users[1].User = r.Users[1].User, r.Users[0].User
		slices.SortFunc(r.Users, func(a, b entry) int { return strings.Compare(a.User, b.User) })
	})
	_, err := Unlock(path, "bara", aminaPassword)
	require.ErrorIs(t, err, ErrWrongPassword, "amina's entry, named bara, opened with amina's password")
	_, err = Unlock(path, "amina", baraPassword)
	require.ErrorIs(t, err, ErrWrongPassword, "bara's entry, named amina, opened with bara's password")
}

// TestCreateErrors: Create refuses each bad argument with its typed error
// and writes no file, and never replaces a keyring.
func TestCreateErrors(t *testing.T) {
	id, rcpt := newRecovery(t)
	for _, tt := range []struct {
		name      string
		cfg       Config
		recipient string
		user      string
		password  string
		exists    bool
		want      error
	}{
		{name: "a keyring exists", cfg: fast, recipient: rcpt, user: "amina", password: aminaPassword, exists: true, want: ErrExists},
		{name: "no recipient", cfg: fast, user: "amina", password: aminaPassword, want: ErrInvalidRecipient},
		{name: "a recipient that does not parse", cfg: fast, recipient: "age1qqqq", user: "amina", password: aminaPassword, want: ErrInvalidRecipient},
		{name: "an identity instead of a recipient", cfg: fast, recipient: id.String(), user: "amina", password: aminaPassword, want: ErrInvalidRecipient},
		{name: "no user", cfg: fast, recipient: rcpt, password: aminaPassword, want: ErrInvalidUser},
		{name: "a user ID with a newline", cfg: fast, recipient: rcpt, user: "amina\n", password: aminaPassword, want: ErrInvalidUser},
		{name: "a user ID too long", cfg: fast, recipient: rcpt, user: strings.Repeat("a", MaxUserLength+1), password: aminaPassword, want: ErrInvalidUser},
		{name: "a user ID not UTF-8", cfg: fast, recipient: rcpt, user: "am\xffina", password: aminaPassword, want: ErrInvalidUser},
		{name: "a short password", cfg: fast, recipient: rcpt, user: "amina", password: "mango", want: ErrWeakPassword},
		{name: "a password too long", cfg: fast, recipient: rcpt, user: "amina", password: strings.Repeat("m", MaxPasswordLength+1), want: ErrPasswordTooLong},
		{name: "parameters out of bounds", cfg: Config{Params: Params{Memory: MaxMemory * 2, Time: 1, Threads: 1}}, recipient: rcpt, user: "amina", password: aminaPassword, want: ErrInvalidParams},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "keyring")
			var before []byte
			if tt.exists {
				_, err := fast.Create(path, rcpt, "bara", baraPassword)
				require.NoError(t, err)
				before, _ = os.ReadFile(path)
			}
			key, err := tt.cfg.Create(path, tt.recipient, tt.user, tt.password)
			require.ErrorIs(t, err, tt.want)
			assert.Nil(t, key)
			after, err := os.ReadFile(path)
			if tt.exists {
				assert.Equal(t, before, after, "Create changed the keyring that was there")
			} else {
				assert.ErrorIs(t, err, fs.ErrNotExist, "a refused Create left a file")
			}
			want := []string(nil)
			if tt.exists {
				want = []string{"keyring"}
			}
			assert.Equal(t, want, dirNames(t, filepath.Dir(path)), "a refused Create left a temporary file")
		})
	}
}

// dirNames returns the names of the entries of dir.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

// TestChangesRefused: each refused AddUser, RemoveUser, ChangePassword
// and ResetPassword gives its typed error and leaves the file byte for
// byte as it was, and every password still unlocks.
func TestChangesRefused(t *testing.T) {
	stranger := bytes.Repeat([]byte{7}, KeySize)
	for _, tt := range []struct {
		name   string
		change func(path string, key []byte) error
		want   error
		setup  func(t *testing.T, path string, key []byte)
	}{
		{"add a user with another key", func(p string, _ []byte) error { return fast.AddUser(p, stranger, "chiku", aminaPassword) }, ErrWrongKey, nil},
		{"add a user with a short key", func(p string, k []byte) error { return fast.AddUser(p, k[:16], "chiku", aminaPassword) }, ErrWrongKey, nil},
		{"add a user with no key", func(p string, _ []byte) error { return fast.AddUser(p, nil, "chiku", aminaPassword) }, ErrWrongKey, nil},
		{"add a user who has an entry", func(p string, k []byte) error { return fast.AddUser(p, k, "bara", aminaPassword) }, ErrUserExists, nil},
		{"add a user with an invalid ID", func(p string, k []byte) error { return fast.AddUser(p, k, "", aminaPassword) }, ErrInvalidUser, nil},
		{"add a user with a short password", func(p string, k []byte) error { return fast.AddUser(p, k, "chiku", "1234") }, ErrWeakPassword, nil},
		{"add a user with bad parameters", func(p string, k []byte) error {
			return Config{Params: Params{Memory: 1, Time: 1, Threads: 1}}.AddUser(p, k, "chiku", aminaPassword)
		}, ErrInvalidParams, nil},
		{"remove an unknown user", func(p string, k []byte) error { return RemoveUser(p, k, "chiku") }, ErrUnknownUser, nil},
		{"remove a user with another key", func(p string, _ []byte) error { return RemoveUser(p, stranger, "bara") }, ErrWrongKey, nil},
		{"remove the last user", func(p string, k []byte) error { return RemoveUser(p, k, "amina") }, ErrLastUser,
			func(t *testing.T, p string, k []byte) { require.NoError(t, RemoveUser(p, k, "bara")) }},
		{"change a password with a wrong one", func(p string, _ []byte) error {
			return fast.ChangePassword(p, "amina", baraPassword, "a brand new password")
		}, ErrWrongPassword, nil},
		{"change an unknown user's password", func(p string, _ []byte) error {
			return fast.ChangePassword(p, "chiku", aminaPassword, "a brand new password")
		}, ErrUnknownUser, nil},
		{"change a password to a short one", func(p string, _ []byte) error { return fast.ChangePassword(p, "amina", aminaPassword, "mango") }, ErrWeakPassword, nil},
		{"change a password to one too long", func(p string, _ []byte) error {
			return fast.ChangePassword(p, "amina", aminaPassword, strings.Repeat("m", MaxPasswordLength+1))
		}, ErrPasswordTooLong, nil},
		{"reset a password with another key", func(p string, _ []byte) error {
			return fast.ResetPassword(p, stranger, "amina", "a brand new password")
		}, ErrWrongKey, nil},
		{"reset an unknown user's password", func(p string, k []byte) error { return fast.ResetPassword(p, k, "chiku", "a brand new password") }, ErrUnknownUser, nil},
		{"add a user to a damaged keyring", func(p string, k []byte) error { return fast.AddUser(p, k, "chiku", aminaPassword) }, ErrDamaged,
			func(t *testing.T, p string, _ []byte) { require.NoError(t, os.WriteFile(p, []byte("{}"), 0o600)) }},
		{"change a password in a damaged keyring", func(p string, _ []byte) error {
			return fast.ChangePassword(p, "amina", aminaPassword, "a brand new password")
		}, ErrDamaged, func(t *testing.T, p string, _ []byte) {
			rewriteBytes(t, p, func(b []byte) []byte { return b[:len(b)-3] })
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path, key, _ := newKeyring(t)
			if tt.setup != nil {
				tt.setup(t, path, key)
			}
			before, err := os.ReadFile(path)
			require.NoError(t, err)
			require.ErrorIs(t, tt.change(path, key), tt.want)
			after, err := os.ReadFile(path)
			require.NoError(t, err)
			assert.Equal(t, before, after, "a refused change changed the file")
			assert.Equal(t, []string{"keyring"}, dirNames(t, filepath.Dir(path)), "a refused change left a temporary file")
			if errors.Is(tt.want, ErrDamaged) {
				return
			}
			users, err := Users(path)
			require.NoError(t, err)
			for _, u := range users {
				password := map[string]string{"amina": aminaPassword, "bara": baraPassword}[u]
				got, err := Unlock(path, u, password)
				require.NoError(t, err, "%s's password no longer unlocks after a refused change", u)
				assert.Equal(t, key, got)
			}
		})
	}
}
