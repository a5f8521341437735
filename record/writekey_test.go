package record_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
)

// TestWritesAreKeyedByTheirChange: every write a chart holds (made by
// every operation of the fixture, on several devices, with conflicts)
// is stored under "<actor>.<seq>.<i>" of the change that added it, with
// i counting the change's writes from 0: keys no other change can make,
// and which repeat the device's actor rather than carry random bytes.
func TestWritesAreKeyedByTheirChange(t *testing.T) {
	f := newFixture(t)
	d := f.chart.Doc()
	all, err := d.Strings("w")
	require.NoError(t, err)
	changes, err := d.Changes(nil)
	require.NoError(t, err)
	seen := 0
	for i := range changes {
		info, err := crdt.Judge(&changes[i])
		require.NoError(t, err)
		n := 0
		for _, op := range info.Ops {
			if op.Action != crdt.ActionSet || op.Key.IsElem || op.Value.Type != crdt.ValueString {
				continue
			}
			if _, ok := all[op.Key.Prop]; !ok || op.Obj.Counter == 0 {
				continue
			}
			want := fmt.Sprintf("%s.%d.%d", info.Actor, info.Seq, n)
			assert.Equal(t, want, op.Key.Prop, "write %d of change %s", n, info.Hash)
			n++
			seen++
		}
	}
	assert.Equal(t, len(all), seen, "every write found in a change")
	assert.Greater(t, seen, 40)
}
