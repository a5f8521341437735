package liveroster_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/device/liveroster"
	"github.com/chartsync/chartsync/replica"
)

var (
	_ replica.Keys        = (*liveroster.Roster)(nil)
	_ replica.Revocations = (*liveroster.Roster)(nil)
)

// fakeSource keeps records in a list; a version is how many it holds.
// It counts the looks at it, and fails them while err is set.
type fakeSource struct {
	mu      sync.Mutex
	records [][]byte
	loads   int
	err     error
	// onLoad, if set, runs at each look before the records are merged.
	onLoad func(r *device.Roster)
}

func (s *fakeSource) MergeRoster(_ context.Context, r *device.Roster, since int64) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.loads++
	if s.err != nil {
		return since, s.err
	}
	if s.onLoad != nil {
		s.onLoad(r)
	}
	for _, rec := range s.records[since:] {
		if _, err := r.Add(rec); err != nil {
			return since, err
		}
	}
	return int64(len(s.records)), nil
}

func (s *fakeSource) keep(rec []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.records = append(s.records, rec)
}

func (s *fakeSource) looks() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.loads
}

// clock is a clock the test moves by hand.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// world is an authority, two devices of its clinic and a source holding
// the first one's enrolment.
type world struct {
	auth          *device.Authority
	known, newbie *device.Identity
	newbieRecord  []byte
	src           *fakeSource
	clock         *clock
}

var start = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

func newWorld(t *testing.T) *world {
	t.Helper()
	auth, err := device.NewAuthority()
	require.NoError(t, err)
	known, err := device.Generate("0123456789abcdef0123456789abcdef", "kamuga")
	require.NoError(t, err)
	newbie, err := device.Generate("fedcba9876543210fedcba9876543210", "kamuga")
	require.NoError(t, err)
	rec, err := auth.EnrolRequest(known.Request(), start, 365*24*time.Hour)
	require.NoError(t, err)
	newbieRecord, err := auth.EnrolRequest(newbie.Request(), start, 365*24*time.Hour)
	require.NoError(t, err)
	return &world{auth: auth, known: known, newbie: newbie, newbieRecord: newbieRecord,
		src: &fakeSource{records: [][]byte{rec}}, clock: &clock{now: start}}
}

func (w *world) open(t *testing.T, cfg liveroster.Config) *liveroster.Roster {
	t.Helper()
	cfg.Roster = device.RosterConfig{
		Authorities: []device.TrustedAuthority{{Key: w.auth.PublicKey()}},
		Now:         w.clock.Now,
	}
	cfg.Now = w.clock.Now
	r, err := liveroster.Open(context.Background(), w.src, cfg)
	require.NoError(t, err)
	require.Equal(t, 1, w.src.looks(), "open looks at the source once")
	return r
}

func (w *world) revoke(t *testing.T, id *device.Identity) {
	t.Helper()
	rec, err := w.auth.RevokeAccepting(id.ReplicaID(), id.Clinic(), w.clock.Now(), map[string]uint64{"chart-1": 3})
	require.NoError(t, err)
	w.src.keep(rec)
}

// verify has r verify a change signed by id.
func verify(r *liveroster.Roster, id *device.Identity) error {
	hash := sha256.Sum256([]byte("a change"))
	_, err := r.VerifyChange(id.ReplicaID(), "chart-1", hash, id.SignChange("chart-1", hash))
	return err
}

// TestReloadRules: when the roster looks at its source again, counted by
// a fake source, with the clock moved by hand.
func TestReloadRules(t *testing.T) {
	tests := []struct {
		name     string
		cfg      liveroster.Config
		do       func(t *testing.T, w *world, r *liveroster.Roster) error
		wantErr  error // nil: no error
		wantLoad int   // looks at the source after Open's
	}{
		{
			name: "known device, roster fresh: no look",
			do: func(t *testing.T, w *world, r *liveroster.Roster) error {
				w.clock.advance(liveroster.DefaultRefresh)
				return verify(r, w.known)
			},
		},
		{
			name: "known device, roster older than the refresh period: one look",
			do: func(t *testing.T, w *world, r *liveroster.Roster) error {
				w.clock.advance(liveroster.DefaultRefresh + time.Nanosecond)
				return verify(r, w.known)
			},
			wantLoad: 1,
		},
		{
			name: "refresh period set",
			cfg:  liveroster.Config{Refresh: time.Minute},
			do: func(t *testing.T, w *world, r *liveroster.Roster) error {
				w.clock.advance(45 * time.Second)
				require.NoError(t, verify(r, w.known))
				w.clock.advance(16 * time.Second)
				return verify(r, w.known)
			},
			wantLoad: 1,
		},
		{
			name: "device enrolled since: a look, then verified",
			do: func(t *testing.T, w *world, r *liveroster.Roster) error {
				w.src.keep(w.newbieRecord)
				return verify(r, w.newbie)
			},
			wantLoad: 1,
		},
		{
			name: "device never enrolled: a look, then refused",
			do: func(t *testing.T, w *world, r *liveroster.Roster) error {
				return verify(r, w.newbie)
			},
			wantErr:  device.ErrUnknownDevice,
			wantLoad: 1,
		},
		{
			name: "revoked since, refresh due: the change is checked against the revocation",
			do: func(t *testing.T, w *world, r *liveroster.Roster) error {
				w.revoke(t, w.known)
				w.clock.advance(liveroster.DefaultRefresh + time.Second)
				if err := verify(r, w.known); err != nil {
					return err
				}
				seq, revoked := r.AcceptedUpTo(w.known.ReplicaID(), "chart-1")
				assert.True(t, revoked, "the revocation was merged")
				assert.Equal(t, uint64(3), seq)
				return nil
			},
			wantLoad: 1,
		},
		{
			name: "check age zero: CheckRevoked looks at every check",
			do: func(t *testing.T, w *world, r *liveroster.Roster) error {
				require.NoError(t, r.CheckRevoked(context.Background(), w.known.ReplicaID()))
				return r.CheckRevoked(context.Background(), w.known.ReplicaID())
			},
			wantLoad: 2,
		},
		{
			name: "check age set: no look while fresh, a revocation seen once stale",
			cfg:  liveroster.Config{CheckAge: time.Second},
			do: func(t *testing.T, w *world, r *liveroster.Roster) error {
				w.revoke(t, w.known)
				w.clock.advance(time.Second)
				require.NoError(t, r.CheckRevoked(context.Background(), w.known.ReplicaID()), "not seen yet")
				w.clock.advance(time.Nanosecond)
				return r.CheckRevoked(context.Background(), w.known.ReplicaID())
			},
			wantErr:  device.ErrRevoked,
			wantLoad: 1,
		},
		{
			name: "CheckRevoked lets a device the roster does not know through",
			do: func(t *testing.T, w *world, r *liveroster.Roster) error {
				return r.CheckRevoked(context.Background(), w.newbie.ReplicaID())
			},
			wantLoad: 1,
		},
		{
			name: "CheckRevoked lets an expired device through",
			cfg:  liveroster.Config{CheckAge: 1000 * 24 * time.Hour},
			do: func(t *testing.T, w *world, r *liveroster.Roster) error {
				w.clock.advance(400 * 24 * time.Hour)
				_, err := r.Lookup(w.known.ReplicaID())
				require.ErrorIs(t, err, device.ErrExpired)
				return r.CheckRevoked(context.Background(), w.known.ReplicaID())
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newWorld(t)
			r := w.open(t, tc.cfg)
			err := tc.do(t, w, r)
			if tc.wantErr == nil {
				require.NoError(t, err)
			} else {
				require.ErrorIs(t, err, tc.wantErr)
			}
			assert.Equal(t, tc.wantLoad, w.src.looks()-1, "looks at the source after opening")
		})
	}
}

// TestVerifyChangeAfterLearntMeanwhile: a device the roster learnt while
// it looked at its source for it (another look brought it, or a bundle
// carried its enrolment to LearnSigner) is verified, even though the
// source had nothing new.
func TestVerifyChangeAfterLearntMeanwhile(t *testing.T) {
	w := newWorld(t)
	r := w.open(t, liveroster.Config{})
	w.src.onLoad = func(roster *device.Roster) {
		_, err := roster.LearnSigner(w.newbieRecord)
		require.NoError(t, err)
	}
	require.NoError(t, verify(r, w.newbie), "the device the roster now knows is verified")
	assert.Equal(t, 2, w.src.looks())
}

// TestLoadFailure: a look at the source that fails refuses what needed it
// with the source's error, keeps the records merged, and is tried again
// at the next use.
func TestLoadFailure(t *testing.T) {
	w := newWorld(t)
	r := w.open(t, liveroster.Config{})
	down := errors.New("database down")
	w.src.err = down

	err := r.CheckRevoked(context.Background(), w.known.ReplicaID())
	require.ErrorIs(t, err, down)
	assert.NotErrorIs(t, err, device.ErrRevoked, "a failed look is no revocation")

	w.clock.advance(liveroster.DefaultRefresh + time.Second)
	require.ErrorIs(t, verify(r, w.known), down, "a stale roster is not trusted when the source fails")
	require.ErrorIs(t, verify(r, w.known), down, "the next use looks again")

	err = verify(r, w.newbie)
	require.ErrorIs(t, err, down)
	_, lerr := r.Lookup(w.known.ReplicaID())
	require.NoError(t, lerr, "the records merged are kept")

	w.src.err = nil
	require.NoError(t, verify(r, w.known), "the source is back")
	assert.Equal(t, 6, w.src.looks())

	_, err = liveroster.Open(context.Background(), &fakeSource{err: down},
		liveroster.Config{Roster: device.RosterConfig{Authorities: []device.TrustedAuthority{{Key: w.auth.PublicKey()}}}})
	require.ErrorIs(t, err, down, "open fails with the source")
}

// TestConfigRefused: a configuration that cannot work is refused by Open.
func TestConfigRefused(t *testing.T) {
	w := newWorld(t)
	trusted := device.RosterConfig{Authorities: []device.TrustedAuthority{{Key: w.auth.PublicKey()}}}
	for name, cfg := range map[string]liveroster.Config{
		"no authority":     {},
		"negative refresh": {Roster: trusted, Refresh: -time.Second},
		"negative age":     {Roster: trusted, CheckAge: -time.Second},
		"negative timeout": {Roster: trusted, LoadTimeout: -time.Second},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := liveroster.Open(context.Background(), w.src, cfg)
			require.ErrorIs(t, err, liveroster.ErrConfig)
			assert.Equal(t, 0, w.src.looks(), "the source is not looked at")
		})
	}
}
