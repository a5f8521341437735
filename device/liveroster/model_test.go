package liveroster_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/device/liveroster"
)

// TestReloadModel: for any sequence of clock moves, records kept, change
// verifications and revocation checks, the roster looks at its source
// exactly when a simple model of the rules says, and answers as the
// records it then holds say.
func TestReloadModel(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		w := newWorld(t)
		checkAge := rapid.SampledFrom([]time.Duration{0, time.Second, time.Minute}).Draw(rt, "checkAge")
		r := w.open(t, liveroster.Config{CheckAge: checkAge})

		// The model: when the source was last looked at, how many records
		// it held then, and which records are kept.
		read, merged := start, 1
		newbieAt, revokedAt := -1, -1 // index of the record in the source, -1: not kept
		loads := 1
		look := func() {
			loads++
			read, merged = w.clock.Now(), len(w.src.records)
		}
		knows := func(at int) bool { return at >= 0 && at < merged }

		steps := rapid.IntRange(1, 30).Draw(rt, "steps")
		for i := 0; i < steps; i++ {
			switch op := rapid.IntRange(0, 4).Draw(rt, "op"); op {
			case 0:
				// The periods themselves, to land on their bounds.
				w.clock.advance(rapid.SampledFrom([]time.Duration{
					0, time.Nanosecond, time.Second, liveroster.DefaultRefresh, time.Minute,
				}).Draw(rt, "advance"))
			case 1:
				if newbieAt < 0 {
					newbieAt = len(w.src.records)
					w.src.keep(w.newbieRecord)
				}
			case 2:
				if revokedAt < 0 {
					revokedAt = len(w.src.records)
					w.revoke(t, w.known)
				}
			case 3:
				newbie := rapid.Bool().Draw(rt, "newbie")
				id := w.known
				if newbie {
					id = w.newbie
				}
				err := verify(r, id)
				if w.clock.Now().Sub(read) > liveroster.DefaultRefresh {
					look()
				}
				if newbie && !knows(newbieAt) {
					look()
				}
				if newbie && !knows(newbieAt) {
					require.ErrorIs(t, err, device.ErrUnknownDevice, "step %d", i)
				} else {
					require.NoError(t, err, "step %d: a change of a device the roster knows", i)
				}
			case 4:
				err := r.CheckRevoked(context.Background(), w.known.ReplicaID())
				if checkAge == 0 || w.clock.Now().Sub(read) > checkAge {
					look()
				}
				if knows(revokedAt) {
					require.ErrorIs(t, err, device.ErrRevoked, "step %d", i)
				} else {
					require.NoError(t, err, "step %d", i)
				}
			}
			require.Equal(t, loads, w.src.looks(), "step %d: looks at the source", i)
		}
	})
}

// TestConcurrentUse: verifications and checks from many goroutines while
// the source gains records (run with -race); once done, the roster holds
// every record kept.
func TestConcurrentUse(t *testing.T) {
	w := newWorld(t)
	r := w.open(t, liveroster.Config{})
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 20 {
				switch {
				case g == 0 && i == 5:
					w.src.keep(w.newbieRecord)
				case g%2 == 0:
					_ = verify(r, w.newbie)
				default:
					_ = r.CheckRevoked(context.Background(), w.known.ReplicaID())
				}
			}
		}()
	}
	wg.Wait()
	require.NoError(t, verify(r, w.newbie), "the device enrolled meanwhile is known")
}
