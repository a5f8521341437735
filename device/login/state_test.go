package login

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var st0 = time.Date(2026, 3, 1, 14, 0, 0, 0, time.UTC)

// withSum encodes f with a correct checksum, as a writer that knows the
// format but breaks its rules would.
func withSum(t testing.TB, f stateFile) []byte {
	t.Helper()
	sum, err := f.sum()
	require.NoError(t, err)
	f.SHA256 = sum
	b, err := marshal(f)
	require.NoError(t, err)
	return b
}

func TestStateRoundTrip(t *testing.T) {
	users := map[string]*entry{
		"amina":               {failures: 5, level: 2, last: st0, until: st0.Add(2 * time.Minute)},
		"baraka":              {failures: 1, last: st0.Add(-time.Hour)},
		`"Zawadi" <z>\ & ሰላም`: {failures: 2, level: 1, last: st0.Add(123456789 * time.Nanosecond)},
	}
	data, err := encodeState(users)
	require.NoError(t, err)
	assert.Contains(t, string(data), `"format":"chartsync-login-guard","version":1,"users":[`)
	assert.Contains(t, string(data), `<z>\\ & ሰላም`, "no HTML escaping, so names cannot grow sixfold")
	assert.Contains(t, string(data), `{"user":"baraka","failures":1,"last_failure":"2026-03-01T13:00:00Z"}`,
		"zero fields are left out")
	assert.True(t, strings.HasSuffix(string(data), "\n"))

	back, err := decodeState(data)
	require.NoError(t, err)
	require.Equal(t, len(users), len(back))
	for name, e := range users {
		require.Contains(t, back, name)
		b := back[name]
		assert.Equal(t, e.failures, b.failures, name)
		assert.Equal(t, e.level, b.level, name)
		assert.True(t, e.last.Equal(b.last), name)
		assert.True(t, e.until.Equal(b.until), name)
	}
	again, err := encodeState(back)
	require.NoError(t, err)
	assert.Equal(t, string(data), string(again), "encoding is deterministic")
}

func TestStateEmpty(t *testing.T) {
	data, err := encodeState(map[string]*entry{})
	require.NoError(t, err)
	users, err := decodeState(data)
	require.NoError(t, err)
	assert.Empty(t, users)
}

// Files that a buggy or future writer could produce with a correct
// checksum: the field checks must refuse them.
func TestStateFieldsChecked(t *testing.T) {
	ok := stateUser{User: "amina", Failures: 5, Level: 1, LastFailure: st0, LockedUntil: st0.Add(time.Minute)}
	tests := map[string]func(f *stateFile){
		"version 2":               func(f *stateFile) { f.Version = 2 },
		"version 0":               func(f *stateFile) { f.Version = 0 },
		"other format":            func(f *stateFile) { f.Format = "something-else" },
		"negative failures":       func(f *stateFile) { f.Users[0].Failures = -1 },
		"101 failures":            func(f *stateFile) { f.Users[0].Failures = 101 },
		"negative level":          func(f *stateFile) { f.Users[0].Level = -1 },
		"level 33":                func(f *stateFile) { f.Users[0].Level = 33 },
		"no last failure":         func(f *stateFile) { f.Users[0].LastFailure = time.Time{} },
		"lockout ends at start":   func(f *stateFile) { f.Users[0].LockedUntil = st0 },
		"lockout ends before":     func(f *stateFile) { f.Users[0].LockedUntil = st0.Add(-time.Minute) },
		"lockout of over a day":   func(f *stateFile) { f.Users[0].LockedUntil = st0.Add(24*time.Hour + 1) },
		"empty name":              func(f *stateFile) { f.Users[0].User = "" },
		"name too long":           func(f *stateFile) { f.Users[0].User = strings.Repeat("a", MaxUserName+1) },
		"name with control":       func(f *stateFile) { f.Users[0].User = "am\tina" },
		"name twice":              func(f *stateFile) { f.Users = append(f.Users, f.Users[0]) },
		"more than MaxUsersLimit": func(f *stateFile) { f.Users = make([]stateUser, MaxUsersLimit+1) },
	}
	base := stateFile{Format: stateFormat, Version: stateVersion, Users: []stateUser{ok}}
	_, err := decodeState(withSum(t, base))
	require.NoError(t, err, "the unchanged file is good")
	for name, change := range tests {
		t.Run(name, func(t *testing.T) {
			f := base
			f.Users = append([]stateUser{}, base.Users...)
			change(&f)
			_, err := decodeState(withSum(t, f))
			assert.ErrorIs(t, err, ErrCorruptState)
		})
	}
}

func TestStateUsersCountedBeforeDecoding(t *testing.T) {
	data := `{"format":"chartsync-login-guard","version":1,"users":[` +
		strings.Repeat(`{},`, MaxUsersLimit) + `{}],"sha256":""}`
	_, err := decodeState([]byte(data))
	require.ErrorIs(t, err, ErrCorruptState)
	assert.Contains(t, err.Error(), "more than 10000 users")
}

// The largest state a Guard can hold encodes under MaxStateSize, so a
// Guard never writes a file it cannot read back.
func TestStateWorstCaseFits(t *testing.T) {
	users := make(map[string]*entry, MaxUsersLimit)
	last := time.Date(9999, 12, 30, 23, 59, 59, 999999999, time.FixedZone("", 13*3600))
	for i := range MaxUsersLimit {
		name := []byte(strings.Repeat(`"`, MaxUserName))
		for j, c := range []byte(string(rune('0'+i%10)) + string(rune('0'+i/10%10)) + string(rune('0'+i/100%10)) + string(rune('0'+i/1000%10))) {
			name[j] = c
		}
		users[string(name)] = &entry{failures: maxFailuresLimit, level: maxLevel, last: last, until: last.Add(maxLockoutLimit - 1)}
	}
	data, err := encodeState(users)
	require.NoError(t, err, "the worst case must encode")
	assert.Less(t, len(data), MaxStateSize)
	back, err := decodeState(data)
	require.NoError(t, err)
	assert.Len(t, back, MaxUsersLimit)
	t.Logf("worst-case state file: %d bytes of %d", len(data), MaxStateSize)
}
