package device_test

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/internal/wire"
)

var t0 = time.Date(2026, 3, 1, 8, 0, 0, 0, time.UTC)

func newReplicaID(t testing.TB) string {
	var b [16]byte
	_, err := rand.Read(b[:])
	require.NoError(t, err)
	return hex.EncodeToString(b[:])
}

func newIdentity(t testing.TB, clinic string) *device.Identity {
	id, err := device.Generate(newReplicaID(t), clinic)
	require.NoError(t, err)
	return id
}

// clock is a settable clock for rosters.
type clock struct{ now time.Time }

func (c *clock) Now() time.Time { return c.now }

func newRoster(t testing.TB, c *clock, auths ...device.TrustedAuthority) *device.Roster {
	r, err := device.NewRoster(device.RosterConfig{Authorities: auths, Now: c.Now})
	require.NoError(t, err)
	return r
}

// reframe rewrites a frame's body with edit and frames it again with a
// correct checksum, as a forger would.
func reframe(t testing.TB, data []byte, edit func(body []byte)) []byte {
	t.Helper()
	_, body, err := wire.Decode(data, data[2], data[4], 1<<20)
	require.NoError(t, err)
	body = append([]byte(nil), body...)
	edit(body)
	return wire.Encode(data[2], data[4], body)
}

func TestIdentitySaveLoad(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "kamuga.key")
	id := newIdentity(t, "kamuga")
	require.NoError(t, id.Save(path))

	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "a device key file must be readable by its owner only")
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 1, "saving keys must leave no temporary file behind")

	got, err := device.Load(path)
	require.NoError(t, err)
	assert.Equal(t, id.ReplicaID(), got.ReplicaID())
	assert.Equal(t, id.Clinic(), got.Clinic())
	assert.True(t, id.Public().Equal(got.Public()), "loaded keys must be the saved keys")
	msg := []byte("bundle")
	require.NoError(t, id.Public().Verify("test/v1", msg, got.Sign("test/v1", msg)), "the loaded signing key must sign as the saved one")

	// Saving again replaces the file atomically.
	other := newIdentity(t, "lwanda")
	require.NoError(t, other.Save(path))
	got, err = device.Load(path)
	require.NoError(t, err)
	assert.Equal(t, other.ReplicaID(), got.ReplicaID())
}

func TestIdentityLoadRefuses(t *testing.T) {
	id := newIdentity(t, "kamuga")
	dir := t.TempDir()
	good := filepath.Join(dir, "good.key")
	require.NoError(t, id.Save(good))
	data, err := os.ReadFile(good)
	require.NoError(t, err)

	tests := []struct {
		name string
		data []byte
		perm os.FileMode
		want error
	}{
		{"readable by others", data, 0o644, device.ErrInsecureKeyFile},
		{"truncated", data[:len(data)-5], 0o600, device.ErrMalformed},
		{"flipped byte", flip(data, 10), 0o600, device.ErrMalformed},
		{"empty", nil, 0o600, device.ErrMalformed},
		{"too large", make([]byte, 4096), 0o600, device.ErrTooLarge},
		{"an enrolment file", mustEnrol(t, id), 0o600, device.ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, tt.name)
			require.NoError(t, os.WriteFile(path, tt.data, tt.perm))
			require.NoError(t, os.Chmod(path, tt.perm))
			_, err := device.Load(path)
			assert.ErrorIs(t, err, tt.want)
		})
	}
	_, err = device.Load(filepath.Join(dir, "missing"))
	assert.ErrorIs(t, err, os.ErrNotExist)
}

func TestSaveLeavesNothingOnError(t *testing.T) {
	dir := t.TempDir()
	id := newIdentity(t, "kamuga")
	// The target is a directory: the rename fails after the temp file is written.
	target := filepath.Join(dir, "keys")
	require.NoError(t, os.Mkdir(target, 0o700))
	require.NoError(t, os.WriteFile(filepath.Join(target, "x"), nil, 0o600))
	require.Error(t, id.Save(target))
	entries, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.Len(t, entries, 1, "a failed save must remove its temporary file")
}

func flip(b []byte, i int) []byte {
	out := append([]byte(nil), b...)
	out[i] ^= 0x40
	return out
}

func mustEnrol(t testing.TB, id *device.Identity) []byte {
	a, err := device.NewAuthority()
	require.NoError(t, err)
	e, err := a.Enrol(id.Public(), t0, time.Hour)
	require.NoError(t, err)
	return e
}

func TestSignaturePurposes(t *testing.T) {
	id := newIdentity(t, "kamuga")
	other := newIdentity(t, "kamuga")
	msg := []byte("header and ciphertext")
	sig := id.Sign("relay/v1", msg)

	require.NoError(t, id.Public().Verify("relay/v1", msg, sig))
	tests := []struct {
		name    string
		pub     device.Public
		purpose string
		msg     []byte
		sig     []byte
	}{
		{"another purpose", id.Public(), "enrolment/v1", msg, sig},
		{"another device's key", other.Public(), "relay/v1", msg, sig},
		{"changed message", id.Public(), "relay/v1", []byte("header and ciphertexT"), sig},
		{"short signature", id.Public(), "relay/v1", msg, sig[:63]},
		{"no signature", id.Public(), "relay/v1", msg, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.ErrorIs(t, tt.pub.Verify(tt.purpose, tt.msg, tt.sig), device.ErrBadSignature)
		})
	}
}

func TestGenerateRefusesBadInput(t *testing.T) {
	for _, tt := range []struct{ replica, clinic string }{
		{"not-hex", "kamuga"},
		{"ABCDEF0123456789ABCDEF0123456789", "kamuga"}, // upper case is not the canonical form
		{"abcdef", "kamuga"},
		{"abcdef0123456789abcdef0123456789", ""},
		{"abcdef0123456789abcdef0123456789", "../etc"},
		{"abcdef0123456789abcdef0123456789", "kamuga clinic"},
	} {
		_, err := device.Generate(tt.replica, tt.clinic)
		assert.ErrorIs(t, err, device.ErrMalformed, "replica %q clinic %q", tt.replica, tt.clinic)
	}
}

func TestRequestProvesKeyPossession(t *testing.T) {
	id := newIdentity(t, "kamuga")
	req := id.Request()
	pub, err := device.ParseRequest(req)
	require.NoError(t, err)
	assert.True(t, pub.Equal(id.Public()))

	// Someone swaps in another device's signing key: the proof no longer holds.
	other := newIdentity(t, "kamuga")
	swapped := reframe(t, req, func(body []byte) {
		off := 16 + 1 + len("kamuga")
		copy(body[off:off+32], other.Public().SignKey)
	})
	_, err = device.ParseRequest(swapped)
	assert.ErrorIs(t, err, device.ErrBadSignature)

	a, err := device.NewAuthority()
	require.NoError(t, err)
	_, err = a.EnrolRequest(swapped, t0, time.Hour)
	assert.ErrorIs(t, err, device.ErrBadSignature, "an authority must not enrol a request whose proof fails")
	_, err = device.ParseRequest(req[:len(req)-1])
	assert.ErrorIs(t, err, device.ErrMalformed)
}

func TestRequestPEM(t *testing.T) {
	id := newIdentity(t, "kamuga")
	text := id.RequestPEM()
	assert.Contains(t, string(text), device.Fingerprint(id.Public().SignKey), "the text shows the key's fingerprint to compare")
	assert.NotContains(t, string(text), "SECRET")
	pub, err := device.ParseRequest(text)
	require.NoError(t, err, "the text form parses")
	assert.True(t, pub.Equal(id.Public()))

	// The headers are for people; changing them changes nothing parsed.
	edited := bytes.Replace(text, []byte("Clinic: kamuga"), []byte("Clinic: lwanda"), 1)
	require.NotEqual(t, text, edited)
	pub, err = device.ParseRequest(edited)
	require.NoError(t, err)
	assert.Equal(t, "kamuga", pub.Clinic, "the signed clinic is what counts")

	block, _ := pem.Decode(text)
	require.NotNil(t, block)
	block.Bytes[len(block.Bytes)/2] ^= 1
	_, err = device.ParseRequest(pem.EncodeToMemory(block))
	assert.Error(t, err, "a damaged request is refused")
	block.Type = "CERTIFICATE"
	_, err = device.ParseRequest(pem.EncodeToMemory(block))
	assert.ErrorIs(t, err, device.ErrMalformed, "another kind of PEM block is refused")
}

func TestTLSSigner(t *testing.T) {
	id := newIdentity(t, "kamuga")
	s := id.TLSSigner()
	assert.Equal(t, id.Public().SignKey, s.Public(), "the signer's key is the device's signing key")
	msg := append(bytes.Repeat([]byte{' '}, 64), "TLS 1.3, client CertificateVerify\x00transcript"...)
	sig, err := s.Sign(rand.Reader, msg, crypto.Hash(0))
	require.NoError(t, err)
	assert.True(t, ed25519.Verify(id.Public().SignKey, msg, sig), "a plain ed25519 signature, as TLS verifies it")

	// It cannot be used to forge a purpose signature.
	_, err = s.Sign(rand.Reader, []byte("chartsync/relay/v1\x00forged"), crypto.Hash(0))
	assert.ErrorIs(t, err, device.ErrBadSignature)
	_, ok := s.(ed25519.PrivateKey)
	assert.False(t, ok, "the signer does not hand out the key")
}

func TestAuthoritySaveLoad(t *testing.T) {
	a, err := device.NewAuthority()
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "cloud.authority")
	require.NoError(t, a.Save(path))
	got, err := device.LoadAuthority(path)
	require.NoError(t, err)
	assert.Equal(t, a.PublicKey(), got.PublicKey())
	require.NoError(t, os.Chmod(path, 0o640))
	_, err = device.LoadAuthority(path)
	assert.ErrorIs(t, err, device.ErrInsecureKeyFile)
}

func TestFingerprint(t *testing.T) {
	a, err := device.NewAuthority()
	require.NoError(t, err)
	fp := device.Fingerprint(a.PublicKey())
	assert.Regexp(t, `^[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}$`, fp)
	b, err := device.NewAuthority()
	require.NoError(t, err)
	assert.NotEqual(t, fp, device.Fingerprint(b.PublicKey()))
	assert.Equal(t, fp, device.Fingerprint(ed25519.PublicKey(append([]byte(nil), a.PublicKey()...))))
}

func TestPrintingKeysLeaksNoSecret(t *testing.T) {
	id := newIdentity(t, "kamuga")
	a, err := device.NewAuthority()
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "k")
	require.NoError(t, id.Save(path))
	for _, v := range []any{id, a, id.TLSSigner()} {
		for _, format := range []string{"%v", "%+v", "%#v", "%s"} {
			out := fmt.Sprintf(format, v)
			assert.NotContains(t, out, "AGE-SECRET-KEY", "printing %T with %s shows its age secret", v, format)
			assert.Regexp(t, `[0-9a-f]{4}-[0-9a-f]{4}`, out, "printing %T with %s names its fingerprint", v, format)
		}
	}
	// The ed25519 seed is in the key file; printing must not show it.
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	_, body, err := wire.Decode(data, data[2], data[4], 1024)
	require.NoError(t, err)
	seed := body[16+1+len("kamuga") : 16+1+len("kamuga")+32]
	for _, v := range []any{id, id.TLSSigner()} {
		for _, format := range []string{"%v", "%+v", "%#v", "%x"} {
			assert.NotContains(t, fmt.Sprintf(format, v), fmt.Sprintf("%x", seed), "printing %T with %s", v, format)
			assert.NotContains(t, fmt.Sprintf(format, v), fmt.Sprint(seed), "printing %T with %s", v, format)
		}
	}
}

// TestKeysAsBytes: an identity and an authority key go to bytes and back
// without a file, as the bytes their files hold; damaged bytes are
// refused with a typed error.
func TestKeysAsBytes(t *testing.T) {
	dir := t.TempDir()
	id := newIdentity(t, "kamuga")
	idBytes, err := id.MarshalBinary()
	require.NoError(t, err)
	back, err := device.ParseIdentity(idBytes)
	require.NoError(t, err, "an identity's bytes parse")
	assert.True(t, back.Public().Equal(id.Public()), "the same keys come back")
	msg := []byte("chart 1")
	require.NoError(t, id.Public().Verify(device.PurposeRequest, msg, back.Sign(device.PurposeRequest, msg)), "the parsed identity signs as the original")
	assert.Equal(t, id.AgeIdentity(), back.AgeIdentity(), "with the same age identity")
	require.NoError(t, id.Save(filepath.Join(dir, "identity")))
	file, err := os.ReadFile(filepath.Join(dir, "identity"))
	require.NoError(t, err)
	assert.Equal(t, file, idBytes, "the bytes are the key file's")

	a, err := device.NewAuthority()
	require.NoError(t, err)
	aBytes, err := a.MarshalBinary()
	require.NoError(t, err)
	aBack, err := device.ParseAuthority(aBytes)
	require.NoError(t, err, "an authority's bytes parse")
	assert.Equal(t, a.PublicKey(), aBack.PublicKey(), "the same authority comes back")
	require.NoError(t, a.Save(filepath.Join(dir, "authority")))
	file, err = os.ReadFile(filepath.Join(dir, "authority"))
	require.NoError(t, err)
	assert.Equal(t, file, aBytes, "the bytes are the key file's")

	for _, tc := range []struct {
		name  string
		parse func([]byte) error
		data  []byte
	}{
		{"an identity cut short", func(b []byte) error { _, err := device.ParseIdentity(b); return err }, idBytes[:len(idBytes)/2]},
		{"an identity bit-flipped", func(b []byte) error { _, err := device.ParseIdentity(b); return err }, flip(idBytes, len(idBytes)-3)},
		{"an authority as an identity", func(b []byte) error { _, err := device.ParseIdentity(b); return err }, aBytes},
		{"an authority cut short", func(b []byte) error { _, err := device.ParseAuthority(b); return err }, aBytes[:len(aBytes)-1]},
		{"an identity as an authority", func(b []byte) error { _, err := device.ParseAuthority(b); return err }, idBytes},
		{"nothing", func(b []byte) error { _, err := device.ParseAuthority(b); return err }, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.ErrorIs(t, tc.parse(tc.data), device.ErrMalformed)
		})
	}
}
