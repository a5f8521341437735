package keyring

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"filippo.io/age"

	"github.com/chartsync/chartsync/internal/fuzzseed"
)

// fuzzIdentity is the recovery identity of the keyrings in the seed
// corpus, so that the fuzz target can run Recover on what it decodes. It
// protects nothing but test files.
const fuzzIdentity = "AGE-SECRET-KEY-1JKN7ZW68CW6DP09KA963ZZPDUWGQ6N4S64HVU55U5ECT3YJ9PCSS80W998"

// seedKeyrings returns the bytes of real keyrings: one user, three users
// after a password change and a removal, and one recovered to a hybrid
// recipient.
func seedKeyrings(tb testing.TB) [][]byte {
	tb.Helper()
	id, err := age.ParseX25519Identity(fuzzIdentity)
	if err != nil {
		tb.Fatal(err)
	}
	dir := tb.TempDir()
	must := func(err error) {
		tb.Helper()
		if err != nil {
			tb.Fatal(err)
		}
	}
	read := func(path string) []byte {
		data, err := os.ReadFile(path)
		must(err)
		return data
	}
	one := filepath.Join(dir, "one")
	key, err := fast.Create(one, id.Recipient().String(), "amina", aminaPassword)
	must(err)
	seeds := [][]byte{read(one)}

	many := filepath.Join(dir, "many")
	_, err = fast.Create(many, id.Recipient().String(), "amina", aminaPassword)
	must(err)
	key, err = Unlock(many, "amina", aminaPassword)
	must(err)
	for _, u := range []string{"bara", "chiku", "dawit"} {
		must(Config{Params: Params{Memory: 128, Time: 2, Threads: 2}}.AddUser(many, key, u, baraPassword))
	}
	must(fast.ChangePassword(many, "bara", baraPassword, aminaPassword))
	must(RemoveUser(many, key, "chiku"))
	seeds = append(seeds, read(many))

	hid, err := age.GenerateHybridIdentity()
	must(err)
	hybrid := filepath.Join(dir, "hybrid")
	_, err = fast.Create(hybrid, hid.Recipient().String(), "Ngozi Okonkwo-Adébáyọ̀", aminaPassword)
	must(err)
	return append(seeds, read(hybrid))
}

// FuzzDecode: no file makes the decoder, Unlock's unsealing or Recover's
// decryption panic; every refusal matches ErrDamaged (Recover's also
// ErrWrongIdentity); what decodes is within every bound, and encodes to
// a file that decodes to the same keyring. Each input is tried as a
// file, and as the body of a file with a checksum that matches, so that
// mutations get past the checksum to the fields.
func FuzzDecode(f *testing.F) {
	seeds := seedKeyrings(f)
	fuzzseed.Bytes(f, "FuzzDecode", seeds...)
	for _, s := range seeds {
		f.Add(s)
		f.Add(s[:len(s)/2])
	}
	f.Add([]byte(`{"keyring":{},"sha256":""}`))
	f.Add([]byte(`{"keyring":null,"sha256":"74234e98afe7498fb5daf1f36ac2d78acc339464f950703b8c019892f982b90b"}`))
	f.Add([]byte(""))
	identity, err := age.ParseX25519Identity(fuzzIdentity)
	if err != nil {
		f.Fatal(err)
	}

	f.Fuzz(func(t *testing.T, data []byte) {
		checkDecode(t, data, identity)
		var fl file
		if err := strictUnmarshal(data, &fl); err == nil {
			data = fl.Keyring // a real file: its body
		}
		sum := sha256.Sum256(data)
		checkDecode(t, []byte(`{"keyring":`+string(data)+`,"sha256":"`+hex.EncodeToString(sum[:])+`"}`), identity)
	})
}

// checkDecode decodes data and checks what FuzzDecode promises of it.
func checkDecode(t *testing.T, data []byte, identity age.Identity) {
	r, err := decode(data)
	if err != nil {
		if !errors.Is(err, ErrDamaged) {
			t.Fatalf("decode error %v does not match ErrDamaged", err)
		}
		return
	}
	if err := r.validate(); err != nil {
		t.Fatalf("decoded a keyring that does not validate: %v", err)
	}
	enc, err := r.encode()
	if err != nil {
		t.Fatal(err)
	}
	again, err := decode(enc)
	if err != nil {
		t.Fatalf("the encoding of a decoded keyring does not decode: %v", err)
	}
	if string(mustEncode(t, again)) != string(enc) {
		t.Fatalf("a decoded keyring encodes differently the second time")
	}
	for _, e := range r.Users {
		// Parameters are bounded, but up to 128 MiB: only derive
		// keys with small ones.
		if e.Argon2id.Memory > 1024 || e.Argon2id.Time > 2 {
			continue
		}
		key, err := r.open(e, aminaPassword)
		if err != nil && !errors.Is(err, ErrWrongPassword) && !errors.Is(err, ErrDamaged) {
			t.Fatalf("unsealing %q: %v", e.User, err)
		}
		if err == nil && !r.holds(key) {
			t.Fatalf("unsealing %q gave a key that is not the keyring's", e.User)
		}
	}
	key, err := r.recoverKey(identity)
	if err != nil && !errors.Is(err, ErrWrongIdentity) && !errors.Is(err, ErrDamaged) {
		t.Fatalf("recovering: %v", err)
	}
	if err == nil && !r.holds(key) {
		t.Fatalf("recovering gave a key that is not the keyring's")
	}
}

func mustEncode(t *testing.T, r *ring) []byte {
	t.Helper()
	data, err := r.encode()
	if err != nil {
		t.Fatal(err)
	}
	return data
}
