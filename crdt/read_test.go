package crdt_test

import (
	"errors"
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/crdt/internal/cmem"
)

// Every read gives back the Automerge memory it used when it returns,
// without waiting for the garbage collector: with collection off, a
// thousand reads of each kind leave (almost) no C memory in use. Left to
// finalizers, a String held about 1 KB of C memory per map on its path
// and Strings a copy of every value it read.
func TestReadsReleaseAutomergeMemory(t *testing.T) {
	if cmem.InUse() == 0 {
		t.Skip("the C heap cannot be measured here")
	}
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	d, _ := chartHistory(t, 300)
	entries, err := d.Keys("entries")
	require.NoError(t, err)
	require.NotEmpty(t, entries)
	entry := []string{"entries", entries[0]}
	reads := []struct {
		name string
		read func() error
	}{
		{"String", func() error { _, err := d.String([]string{"patient"}, "family"); return err }},
		{"String of a nested map", func() error { _, err := d.String(entry, "kind"); return err }},
		{"String of a missing key", func() error {
			_, err := d.String(entry, "absent")
			return expect(err, crdt.ErrNotFound)
		}},
		{"Strings", func() error { _, err := d.Strings(entry...); return err }},
		{"Keys", func() error { _, err := d.Keys("entries"); return err }},
		{"IsMap", func() error { return d.IsMap(entry...) }},
		{"Text", func() error { _, err := d.Text([]string{"patient"}, "note"); return err }},
	}
	const n = 1000
	for _, r := range reads {
		t.Run(r.name, func(t *testing.T) {
			runtime.GC()
			before := cmem.InUse()
			for range n {
				require.NoError(t, r.read())
			}
			perRead := (cmem.InUse() - before) / n
			assert.Less(t, perRead, int64(64), "C memory still in use per %s after it returned: %d bytes", r.name, perRead)
		})
	}
	runtime.KeepAlive(d)
}

// expect returns nil if err matches target, and err (or a stand-in) if not.
func expect(err, target error) error {
	if err == nil {
		return assert.AnError
	}
	if errors.Is(err, target) {
		return nil
	}
	return err
}
