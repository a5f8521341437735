package gate_test

import (
	"context"
	"encoding/hex"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/gate"
)

// FuzzIdentifyBundle: whatever bytes a file holds, IdentifyBundle neither
// panics nor names a sender that did not sign them: a sender it names is
// a replica ID enrolled in the roster, in its enrolled clinic. Seeded
// with real bundles: signed, unsigned, empty.
func FuzzIdentifyBundle(f *testing.F) {
	ctx := context.Background()
	w := newWorld(f)
	d := w.device(f, "kamuga")
	f.Add(d.bundleFor(f, w.cloud)) // nothing to send yet: a summary
	d.register(f, "kamuga")
	f.Add(d.bundleFor(f, w.cloud))
	unsigned, err := d.rep.MakeBundleFor(ctx, w.cloud.ID(), replica.BundleOptions{NoAuth: true})
	require.NoError(f, err)
	f.Add(unsigned.Data)
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := gate.IdentifyBundle(data, w.roster)
		if err != nil {
			return
		}
		if _, herr := hex.DecodeString(s.Replica); herr != nil || len(s.Replica) != 32 {
			t.Fatalf("identified a sender that is no replica ID: %q", s.Replica)
		}
		if s.Replica != d.rep.ID() || s.Clinic != "kamuga" {
			t.Fatalf("identified %+v, not the only enrolled device", s)
		}
	})
}
