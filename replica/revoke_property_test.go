package replica_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"testing"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/replica"
)

// TestPropertyRevocationDecidedCausally: however the revocation and the
// revoked tablet's changes reach three checking replicas (from the
// tablet, from the cloud that revoked it, from each other), no replica
// takes a change of the tablet past what the revocation accepts once it
// holds the revocation, no bundle is refused but for such changes, and
// once the revocation is everywhere, syncing brings every replica every
// change the revocation accepts, with no refusal left. A replica the
// revocation reached before the tablet's later changes holds exactly the
// accepted ones.
func TestPropertyRevocationDecidedCausally(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		ctx := context.Background()
		d := newDeployment(t)
		tablet := d.device(t, "north")
		cloud := d.checker(t)
		charts := []string{register(rt, tablet.Replica, "Wanjiru", "Mwangi", "Kamuga"), register(rt, tablet.Replica, "Achieng", "Otieno", "Kamuga")}
		for i, chart := range charts {
			for n := range rapid.IntRange(0, 2).Draw(rt, fmt.Sprintf("edits before %d", i)) {
				edit(rt, tablet.Replica, chart, allergy(10*i+n))
			}
		}
		_, err := replica.SyncPair(ctx, tablet.Replica, cloud.Replica)
		require.NoError(rt, err)
		accepted, err := cloud.ActorSeqs(ctx, tablet.ID())
		require.NoError(rt, err)
		rec, err := d.auth.RevokeAccepting(tablet.ID(), "north", d.now, accepted)
		require.NoError(rt, err)
		_, err = cloud.roster.Add(rec)
		require.NoError(rt, err)
		for i, chart := range charts {
			for n := range rapid.IntRange(0, 2).Draw(rt, fmt.Sprintf("edits after %d", i)) {
				edit(rt, tablet.Replica, chart, allergy(100+10*i+n))
			}
		}
		if rapid.Bool().Draw(rt, "a new chart after") {
			register(rt, tablet.Replica, "Fake", "Patient", "Kamuga")
		}

		reps := []checker{d.checker(t), d.checker(t), d.checker(t)}
		knows := func(c checker) bool { _, err := c.roster.Lookup(tablet.ID()); return errors.Is(err, device.ErrRevoked) }
		late := func(c checker) map[crdt.Hash]bool { // the tablet's changes held past what is accepted
			out := map[crdt.Hash]bool{}
			for chart, bySeq := range actorChanges(t, c.st, tablet.ID()) {
				for seq, h := range bySeq {
					if seq > accepted[chart] {
						out[h] = true
					}
				}
			}
			return out
		}
		taken := make([]map[crdt.Hash]bool, len(reps)) // late changes held when the revocation arrived
		refusedOnly := func(err error, what string) {
			if err != nil && !errIsRevoked(err) {
				rt.Fatalf("%s: refused for another reason than the revocation: %v", what, err)
			}
		}
		push := func(from *replica.Replica, to checker, what string) {
			out, err := from.MakeBundle(ctx, to.ID())
			require.NoError(rt, err)
			before := dumpStore(rt, to.st)
			_, err = to.Receive(ctx, out.Data)
			refusedOnly(err, what)
			if err != nil {
				require.Equal(rt, before, dumpStore(rt, to.st), "%s: a refused bundle changes nothing", what)
			}
		}
		pick := func(label string) int { return rapid.IntRange(0, len(reps)-1).Draw(rt, label) }
		steps := rapid.IntRange(1, 12).Draw(rt, "steps")
		for s := range steps {
			switch rapid.IntRange(0, 3).Draw(rt, fmt.Sprintf("step %d", s)) {
			case 0:
				i := pick("revoked at")
				_, err := reps[i].roster.Add(rec)
				require.NoError(rt, err)
			case 1:
				i := pick("tablet to")
				push(tablet.Replica, reps[i], fmt.Sprintf("tablet to %d", i))
			case 2:
				i := pick("cloud to")
				push(cloud.Replica, reps[i], fmt.Sprintf("cloud to %d", i))
			case 3:
				i, j := pick("sync"), pick("with")
				if i != j {
					_, err := replica.SyncPair(ctx, reps[i].Replica, reps[j].Replica)
					refusedOnly(err, fmt.Sprintf("sync %d with %d", i, j))
				}
			}
			for i, r := range reps {
				if !knows(r) {
					continue
				}
				if taken[i] == nil {
					taken[i] = late(r)
				}
				held := late(r)
				for h := range held {
					require.True(rt, taken[i][h], "replica %d took a change of the revoked tablet past what is accepted after it learnt the revocation", i)
				}
			}
		}

		// The revocation reaches everyone; syncing then converges on the
		// accepted changes with no refusal.
		for _, r := range reps {
			_, err := r.roster.Add(rec)
			require.NoError(rt, err)
		}
		for i, r := range reps {
			if taken[i] == nil {
				taken[i] = late(r)
			}
		}
		all := append([]*replica.Replica{cloud.Replica}, reps[0].Replica, reps[1].Replica, reps[2].Replica)
		for range 2 {
			for i := range all {
				for j := i + 1; j < len(all); j++ {
					_, err := replica.SyncPair(ctx, all[i], all[j])
					require.NoError(rt, err, "once every replica holds the revocation, no sync is refused")
				}
			}
		}
		want := actorChanges(t, cloud.st, tablet.ID())
		for i, r := range reps {
			got := actorChanges(t, r.st, tablet.ID())
			for chart, bySeq := range want {
				for seq, h := range bySeq {
					require.Equal(rt, h, got[chart][seq], "replica %d holds the tablet's accepted change %d of chart %s", i, seq, chart)
				}
			}
			require.True(rt, maps.Equal(taken[i], late(r)), "replica %d holds no late change but those it took before the revocation reached it", i)
		}
	})
}

func errIsRevoked(err error) bool {
	return errors.Is(err, replica.ErrRevokedChange) && errors.Is(err, replica.ErrForgedChange)
}
