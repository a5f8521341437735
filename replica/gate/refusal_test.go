package gate_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/gate"
)

// TestCodeOfForked: a bundle refused because its author is forked (a
// change reusing a sequence number, as Receive reports it: matching
// ErrMalformedBundle too) has its own code, not "malformed-bundle", so
// that the courier can tell the sender it is a copy; ForkedReplica names
// the forked replica. A bundle that is only malformed keeps its code.
func TestCodeOfForked(t *testing.T) {
	const tablet = "0123456789abcdef0123456789abcdef"
	fe := &replica.ForkedError{Replica: tablet, Reason: "its change 1a2b of chart c reuses sequence number 3"}
	for _, tc := range []struct {
		name   string
		err    error
		code   string
		forked string
	}{
		{"as Receive refuses it", fmt.Errorf("receive bundle: chart c: %w: %w", replica.ErrMalformedBundle, fe), gate.CodeForked, tablet},
		{"the forked error alone", fe, gate.CodeForked, tablet},
		{"wrapped again", fmt.Errorf("gate: %w", fmt.Errorf("receive bundle: chart c: %w: %w", replica.ErrMalformedBundle, fe)), gate.CodeForked, tablet},
		{"only malformed", fmt.Errorf("receive bundle: %w", replica.ErrMalformedBundle), gate.CodeMalformed, ""},
		{"no refusal", errors.New("disk full"), "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.code, gate.CodeOf(tc.err), "the refusal's code")
			assert.Equal(t, tc.forked, gate.ForkedReplica(tc.err), "the replica named forked")
		})
	}
	assert.False(t, gate.Recorded(gate.CodeForked), "a copied device is not an intruder: its refusal is not an access log entry")
}
