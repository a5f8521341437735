package login_test

import (
	"encoding/base64"
	"errors"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/device/login"
)

// tiny are argon2 parameters small enough for tests to hash hundreds of
// times a second.
var tiny = login.Params{Memory: 64, Time: 1, Threads: 1}

const (
	goodSalt = "c29tZXNhbHRzb21lc2FsdA"                      // 16 bytes
	goodKey  = "YWJjZGVmZ2hpamtsbW5vcHFyc3R1dnd4eXphYmNkZWY" // 32 bytes
)

func TestHashVerify(t *testing.T) {
	tests := []struct {
		name      string
		password  string // hashed
		attempt   string // verified
		hashErr   error
		verifyErr error
	}{
		{name: "right password", password: "correct horse", attempt: "correct horse"},
		{name: "wrong password", password: "correct horse", attempt: "correct horsE", verifyErr: login.ErrWrongPassword},
		{name: "empty attempt", password: "correct horse", attempt: "", verifyErr: login.ErrWrongPassword},
		{name: "prefix of the password", password: "correct horse", attempt: "correct", verifyErr: login.ErrWrongPassword},
		{name: "exactly 8 characters", password: "12345678", attempt: "12345678"},
		{name: "8 non-ASCII characters", password: "ሰላምሰላምሰላ", attempt: "ሰላምሰላምሰላ"},
		{name: "1024 bytes", password: strings.Repeat("a", 1024), attempt: strings.Repeat("a", 1024)},
		{name: "attempt over 1024 bytes", password: strings.Repeat("a", 1024), attempt: strings.Repeat("a", 1025), verifyErr: login.ErrWrongPassword},
		{name: "empty password", password: "", hashErr: login.ErrWeakPassword},
		{name: "7 characters", password: "1234567", hashErr: login.ErrWeakPassword},
		{name: "7 characters in 21 bytes", password: "ሰላምሰላም", hashErr: login.ErrWeakPassword},
		{name: "1025 bytes", password: strings.Repeat("a", 1025), hashErr: login.ErrPasswordTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			encoded, err := login.Hash(tt.password, tiny)
			if tt.hashErr != nil {
				require.ErrorIs(t, err, tt.hashErr, "Hash should refuse the password")
				assert.Empty(t, encoded, "a refused password has no hash")
				return
			}
			require.NoError(t, err, "Hash should accept the password")
			err = login.Verify(encoded, tt.attempt)
			if tt.verifyErr != nil {
				assert.ErrorIs(t, err, tt.verifyErr, "Verify should refuse the attempt")
			} else {
				assert.NoError(t, err, "Verify should accept the right password")
			}
		})
	}
}

func TestHashFormat(t *testing.T) {
	a, err := login.Hash("correct horse", login.Params{Memory: 256, Time: 3, Threads: 2})
	require.NoError(t, err)
	b, err := login.Hash("correct horse", login.Params{Memory: 256, Time: 3, Threads: 2})
	require.NoError(t, err)

	re := regexp.MustCompile(`^\$argon2id\$v=19\$m=256,t=3,p=2\$([A-Za-z0-9+/]+)\$([A-Za-z0-9+/]+)$`)
	m := re.FindStringSubmatch(a)
	require.NotNil(t, m, "hash %q is not in PHC form", a)
	salt, err := base64.RawStdEncoding.DecodeString(m[1])
	require.NoError(t, err)
	key, err := base64.RawStdEncoding.DecodeString(m[2])
	require.NoError(t, err)
	assert.Len(t, salt, 16, "salt length")
	assert.Len(t, key, 32, "key length")
	assert.NotEqual(t, a, b, "two hashes of one password must have different salts")

	p, err := login.ParseHash(a)
	require.NoError(t, err)
	assert.Equal(t, login.Params{Memory: 256, Time: 3, Threads: 2}, p, "ParseHash should give the parameters back")
}

// The reference implementation's argon2id test vector (phc-winner-argon2,
// src/test.c): Verify reads hashes made by other tools.
func TestVerifyReferenceVector(t *testing.T) {
	const ref = "$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc"
	assert.NoError(t, login.Verify(ref, "password"), "the reference hash of \"password\" should verify")
	assert.ErrorIs(t, login.Verify(ref, "passwore"), login.ErrWrongPassword)
}

func TestDefaultParams(t *testing.T) {
	require.NoError(t, login.DefaultParams.Validate())
	assert.GreaterOrEqual(t, login.DefaultParams.Memory, uint32(19456), "OWASP minimum memory")
	assert.GreaterOrEqual(t, login.DefaultParams.Time, uint32(2), "OWASP minimum passes")

	encoded, err := login.Hash("correct horse battery", login.DefaultParams)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(encoded, "$argon2id$v=19$m=19456,t=2,p=1$"), "hash %q", encoded)
	assert.NoError(t, login.Verify(encoded, "correct horse battery"))
	assert.ErrorIs(t, login.Verify(encoded, "correct horse batterY"), login.ErrWrongPassword)
}

func TestParamsValidate(t *testing.T) {
	tests := []struct {
		name string
		p    login.Params
		ok   bool
	}{
		{"tiny", tiny, true},
		{"default", login.DefaultParams, true},
		{"64 MiB once", login.Params{Memory: 64 << 10, Time: 1, Threads: 1}, true},
		{"4 threads", login.Params{Memory: 128, Time: 1, Threads: 4}, true},
		{"zero", login.Params{}, false},
		{"no threads", login.Params{Memory: 64, Time: 1}, false},
		{"no time", login.Params{Memory: 64, Threads: 1}, false},
		{"no memory", login.Params{Time: 1, Threads: 1}, false},
		{"less than 8 KiB per thread", login.Params{Memory: 31, Time: 1, Threads: 4}, false},
		{"over 64 MiB", login.Params{Memory: 64<<10 + 1, Time: 1, Threads: 1}, false},
		{"11 passes", login.Params{Memory: 64, Time: 11, Threads: 1}, false},
		{"5 threads", login.Params{Memory: 256, Time: 1, Threads: 5}, false},
		{"64 MiB 5 times", login.Params{Memory: 64 << 10, Time: 5, Threads: 1}, false},
		{"max uint32 memory", login.Params{Memory: ^uint32(0), Time: 1, Threads: 1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.p.Validate()
			if tt.ok {
				assert.NoError(t, err, "parameters %+v should be accepted", tt.p)
				return
			}
			assert.ErrorIs(t, err, login.ErrInvalidParams, "parameters %+v should be refused", tt.p)
			_, err = login.Hash("correct horse", tt.p)
			assert.ErrorIs(t, err, login.ErrInvalidParams, "Hash should refuse parameters %+v", tt.p)
		})
	}
}

func TestVerifyMalformed(t *testing.T) {
	h := func(alg, version, params, salt, key string) string {
		return "$" + alg + "$" + version + "$" + params + "$" + salt + "$" + key
	}
	good := h("argon2id", "v=19", "m=64,t=1,p=1", goodSalt, goodKey)
	require.ErrorIs(t, login.Verify(good, "x"), login.ErrWrongPassword, "the base of the malformed cases should parse")

	tests := map[string]string{
		"empty":                     "",
		"a dollar":                  "$",
		"bare word":                 "argon2id",
		"no leading dollar":         strings.TrimPrefix(good, "$"),
		"trailing dollar":           good + "$",
		"missing key":               h("argon2id", "v=19", "m=64,t=1,p=1", goodSalt, "")[:len(good)-len(goodKey)-1],
		"empty key":                 h("argon2id", "v=19", "m=64,t=1,p=1", goodSalt, ""),
		"empty salt":                h("argon2id", "v=19", "m=64,t=1,p=1", "", goodKey),
		"argon2i":                   h("argon2i", "v=19", "m=64,t=1,p=1", goodSalt, goodKey),
		"argon2d":                   h("argon2d", "v=19", "m=64,t=1,p=1", goodSalt, goodKey),
		"ARGON2ID":                  h("ARGON2ID", "v=19", "m=64,t=1,p=1", goodSalt, goodKey),
		"bcrypt":                    "$2b$12$abcdefghijklmnopqrstuuABCDEFGHIJKLMNOPQRSTUVWXYZ01234",
		"version 16":                h("argon2id", "v=16", "m=64,t=1,p=1", goodSalt, goodKey),
		"version 019":               h("argon2id", "v=019", "m=64,t=1,p=1", goodSalt, goodKey),
		"no version":                "$argon2id$m=64,t=1,p=1$" + goodSalt + "$" + goodKey,
		"version without number":    h("argon2id", "v=", "m=64,t=1,p=1", goodSalt, goodKey),
		"memory 0":                  h("argon2id", "v=19", "m=0,t=1,p=1", goodSalt, goodKey),
		"memory 7":                  h("argon2id", "v=19", "m=7,t=1,p=1", goodSalt, goodKey),
		"memory over 64 MiB":        h("argon2id", "v=19", "m=65537,t=1,p=1", goodSalt, goodKey),
		"1 GiB in 16 lanes":         h("argon2id", "v=19", "m=1048576,t=1,p=16", goodSalt, goodKey),
		"memory over uint32":        h("argon2id", "v=19", "m=4294967296,t=1,p=1", goodSalt, goodKey),
		"memory of 30 digits":       h("argon2id", "v=19", "m=999999999999999999999999999999,t=1,p=1", goodSalt, goodKey),
		"memory with leading zero":  h("argon2id", "v=19", "m=064,t=1,p=1", goodSalt, goodKey),
		"memory with plus sign":     h("argon2id", "v=19", "m=+64,t=1,p=1", goodSalt, goodKey),
		"memory negative":           h("argon2id", "v=19", "m=-64,t=1,p=1", goodSalt, goodKey),
		"memory in hex":             h("argon2id", "v=19", "m=0x40,t=1,p=1", goodSalt, goodKey),
		"memory with space":         h("argon2id", "v=19", "m= 64,t=1,p=1", goodSalt, goodKey),
		"time 0":                    h("argon2id", "v=19", "m=64,t=0,p=1", goodSalt, goodKey),
		"time 11":                   h("argon2id", "v=19", "m=64,t=11,p=1", goodSalt, goodKey),
		"64 MiB 5 times":            h("argon2id", "v=19", "m=65536,t=5,p=1", goodSalt, goodKey),
		"threads 0":                 h("argon2id", "v=19", "m=64,t=1,p=0", goodSalt, goodKey),
		"threads 5":                 h("argon2id", "v=19", "m=1024,t=1,p=5", goodSalt, goodKey),
		"threads 256":               h("argon2id", "v=19", "m=4096,t=1,p=256", goodSalt, goodKey),
		"parameters reordered":      h("argon2id", "v=19", "t=1,m=64,p=1", goodSalt, goodKey),
		"parameter missing":         h("argon2id", "v=19", "m=64,t=1", goodSalt, goodKey),
		"extra keyid parameter":     h("argon2id", "v=19", "m=64,t=1,p=1,keyid=abc", goodSalt, goodKey),
		"parameter repeated":        h("argon2id", "v=19", "m=64,m=64,t=1", goodSalt, goodKey),
		"parameters empty":          h("argon2id", "v=19", "", goodSalt, goodKey),
		"salt with padding":         h("argon2id", "v=19", "m=64,t=1,p=1", goodSalt+"==", goodKey),
		"salt in URL alphabet":      h("argon2id", "v=19", "m=64,t=1,p=1", "c29tZXNh-_Rzb21lc2FsdA", goodKey),
		"salt of 7 bytes":           h("argon2id", "v=19", "m=64,t=1,p=1", "c29tZXNhbHQ"[:10], goodKey),
		"salt of 65 bytes":          h("argon2id", "v=19", "m=64,t=1,p=1", strings.Repeat("A", 87), goodKey),
		"salt with newline":         h("argon2id", "v=19", "m=64,t=1,p=1", goodSalt[:8]+"\n"+goodSalt[8:], goodKey),
		"salt with stray bits":      h("argon2id", "v=19", "m=64,t=1,p=1", goodSalt[:len(goodSalt)-1]+"B", goodKey),
		"salt with invalid char":    h("argon2id", "v=19", "m=64,t=1,p=1", goodSalt[:5]+"*"+goodSalt[6:], goodKey),
		"key of 15 bytes":           h("argon2id", "v=19", "m=64,t=1,p=1", goodSalt, "YWJjZGVmZ2hpamtsbW5v"),
		"key of 65 bytes":           h("argon2id", "v=19", "m=64,t=1,p=1", goodSalt, strings.Repeat("A", 87)),
		"key with trailing space":   good + " ",
		"leading space":             " " + good,
		"NUL inside":                strings.Replace(good, "v=19", "v=1\x009", 1),
		"256-character string":      good + strings.Repeat("A", 257-len(good)),
		"a megabyte of dollars":     strings.Repeat("$", 1<<20),
		"fields of a thousand more": strings.Repeat("$argon2id", 1000),
	}
	for name, encoded := range tests {
		t.Run(name, func(t *testing.T) {
			err := login.Verify(encoded, "correct horse")
			require.ErrorIs(t, err, login.ErrMalformedHash, "Verify should refuse %q", encoded)
			var m *login.MalformedHashError
			require.ErrorAs(t, err, &m, "the error should say what is wrong")
			assert.NotEmpty(t, m.Reason)
			assert.NotErrorIs(t, err, login.ErrWrongPassword, "a malformed hash is not a wrong password")
			if len(encoded) > 20 {
				assert.NotContains(t, err.Error(), encoded, "the error should not repeat the hash")
			}
			_, err = login.ParseHash(encoded)
			assert.ErrorIs(t, err, login.ErrMalformedHash, "ParseHash should refuse %q", encoded)
		})
	}
}

func TestMalformedHashOutOfBoundsWrapsParams(t *testing.T) {
	err := login.Verify("$argon2id$v=19$m=64,t=21,p=1$"+goodSalt+"$"+goodKey, "correct horse")
	assert.ErrorIs(t, err, login.ErrMalformedHash)
	assert.ErrorIs(t, err, login.ErrInvalidParams, "the cause should be the parameter bounds")
	assert.Contains(t, err.Error(), "ask an administrator", "the message should say what to do next")
}

func TestErrorsSayWhatToDo(t *testing.T) {
	for _, err := range []error{login.ErrWrongPassword, login.ErrLockedOut, login.ErrWeakPassword,
		login.ErrPasswordTooLong, login.ErrMalformedHash, login.ErrBadUserName, login.ErrCorruptState,
		login.ErrStateNotSaved, login.ErrTooManyLockouts} {
		assert.Regexp(t, `; (check|wait|choose|ask|free)`, err.Error(), "error %q should say what to do next", err)
	}
	assert.False(t, errors.Is(login.ErrWrongPassword, login.ErrLockedOut))
}
