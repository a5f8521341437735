package login_test

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/device/login"
)

// phc is an encoded hash with the given parameters and a well-formed salt
// and key: what a peer could put in the replicated user roster.
func phc(p login.Params) string {
	return fmt.Sprintf("$argon2id$v=19$m=%d,t=%d,p=%d$%s$%s", p.Memory, p.Time, p.Threads, goodSalt, goodKey)
}

// costly are parameters a 2 GiB tablet cannot afford at every login, each
// over one bound.
var costly = map[string]login.Params{
	"1 GiB in 16 lanes":        {Memory: 1 << 20, Time: 1, Threads: 16},
	"128 MiB":                  {Memory: 128 << 10, Time: 1, Threads: 1},
	"64 MiB and 1 KiB":         {Memory: 64<<10 + 1, Time: 1, Threads: 1},
	"5 lanes":                  {Memory: 19456, Time: 2, Threads: 5},
	"11 passes":                {Memory: 1024, Time: 11, Threads: 1},
	"64 MiB 5 times":           {Memory: 64 << 10, Time: 5, Threads: 1},
	"26 MiB 10 times (work)":   {Memory: 26 << 10, Time: 10, Threads: 1},
	"most a hash string holds": {Memory: ^uint32(0), Time: ^uint32(0), Threads: 255},
}

// TestParamsBoundsForSmallDevices: parameters are bounded to what a 2 GiB
// tablet can afford at every login (memory at most 64 MiB, at most 4
// lanes, at most 10 passes, memory×passes at most 64 MiB × 4); within
// them, the parameters others recommend pass.
func TestParamsBoundsForSmallDevices(t *testing.T) {
	accepted := map[string]login.Params{
		"default (OWASP 19 MiB, 2 passes)": login.DefaultParams,
		"OWASP 46 MiB once":                {Memory: 47104, Time: 1, Threads: 1},
		"OWASP 7 MiB 5 times":              {Memory: 7168, Time: 5, Threads: 1},
		"RFC 9106 64 MiB, 3 passes, 4":     {Memory: 64 << 10, Time: 3, Threads: 4},
		"64 MiB 4 times":                   {Memory: 64 << 10, Time: 4, Threads: 4},
		"25 MiB 10 times":                  {Memory: 25 << 10, Time: 10, Threads: 1},
		"tiny":                             tiny,
	}
	for name, p := range accepted {
		t.Run("accepted "+name, func(t *testing.T) {
			assert.NoError(t, p.Validate())
			got, err := login.ParseHash(phc(p))
			require.NoError(t, err, "a stored hash with parameters %+v should parse", p)
			assert.Equal(t, p, got)
		})
	}
	for name, p := range costly {
		t.Run("refused "+name, func(t *testing.T) {
			assert.ErrorIs(t, p.Validate(), login.ErrInvalidParams, "parameters %+v should be refused", p)
			_, err := login.ParseHash(phc(p))
			assert.ErrorIs(t, err, login.ErrMalformedHash, "a stored hash with %+v should not parse", p)
			if p.Threads <= login.MaxThreads {
				assert.ErrorIs(t, err, login.ErrInvalidParams, "the cause should be the bounds")
			}
			_, err = login.Hash("correct horse", p)
			assert.ErrorIs(t, err, login.ErrInvalidParams, "Hash should refuse %+v", p)
		})
	}
	assert.Equal(t, uint32(64<<10), uint32(login.MaxMemory), "64 MiB")
	assert.Equal(t, 4, int(login.MaxThreads))
	assert.Equal(t, 10, int(login.MaxTime))
	assert.Equal(t, uint64(64<<10)*4, uint64(login.MaxWork))
}

// TestLoginRefusesCostlyStoredHash: a user roster entry whose hash asks
// for more than the bounds (it came from a peer) makes Login fail at once
// with *MalformedHashError, computing nothing: no 1 GiB allocation, no
// failure counted.
func TestLoginRefusesCostlyStoredHash(t *testing.T) {
	f := newFixture(t, login.Policy{})
	for name, p := range costly {
		t.Run(name, func(t *testing.T) {
			var err error
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			err = f.guard.Login("amina", phc(p), aminaPassword)
			runtime.ReadMemStats(&after)
			var m *login.MalformedHashError
			require.ErrorAs(t, err, &m, "a hash over the bounds is unusable")
			assert.ErrorIs(t, err, login.ErrMalformedHash)
			allocated := after.TotalAlloc - before.TotalAlloc
			assert.Less(t, allocated, uint64(1<<20), "refusing %+v allocated %d bytes", p, allocated)
			failures, _ := f.guard.Status("amina")
			assert.Zero(t, failures, "no password was tried")
		})
	}
}

// TestOpenGuardRefusesOversizedStateUnread: a state file far over
// MaxStateSize is refused (ErrCorruptState) by its size, without being
// read into memory.
func TestOpenGuardRefusesOversizedStateUnread(t *testing.T) {
	path := filepath.Join(t.TempDir(), "login-state.json")
	f, err := os.Create(path)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(1<<30)) // sparse: costs no disk
	require.NoError(t, f.Close())
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	_, err = login.OpenGuard(path, login.Policy{DecoyParams: tiny}, nil)
	runtime.ReadMemStats(&after)
	require.ErrorIs(t, err, login.ErrCorruptState)
	allocated := after.TotalAlloc - before.TotalAlloc
	assert.Less(t, allocated, uint64(1<<20), "refusing a 1 GiB state file allocated %d bytes", allocated)
}
