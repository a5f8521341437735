package record_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/chartsync/chartsync/record"
)

func TestSurvivor(t *testing.T) {
	cases := []struct {
		name     string
		pointers map[string]string // held charts and their pointers
		from     string
		want     string
		cycle    []string
	}{
		{"not merged", map[string]string{"a": ""}, "a", "a", nil},
		{"merged", map[string]string{"a": "", "b": "a"}, "b", "a", nil},
		{"a chain", map[string]string{"a": "", "b": "a", "c": "b"}, "c", "a", nil},
		{"merged into each other: the smaller ID", map[string]string{"a": "b", "b": "a"}, "a", "a", []string{"a", "b"}},
		{"from the other side too", map[string]string{"a": "b", "b": "a"}, "b", "a", []string{"a", "b"}},
		{"into a cycle", map[string]string{"a": "c", "b": "a", "c": "b", "d": "c"}, "d", "a", []string{"a", "b", "c"}},
		{"into a chart not held: the last held", map[string]string{"b": "a", "c": "b"}, "c", "b", nil},
		{"itself", map[string]string{"a": "a"}, "a", "a", []string{"a"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, cycle := record.Survivor(tc.from, func(id string) (string, bool) {
				p, ok := tc.pointers[id]
				return p, ok
			})
			assert.Equal(t, tc.want, got)
			assert.Equal(t, tc.cycle, cycle)
		})
	}
}
