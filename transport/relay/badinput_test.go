package relay

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/replica"
)

// A bundle a checking replica refuses for what it carries is a refusal
// (Collect counts it, acknowledges it and goes on); the recipient's own
// failures are not (Collect stops and keeps the bundle to try again).
func TestRefusalsAreBadInput(t *testing.T) {
	for _, tc := range []struct {
		err error
		bad bool
	}{
		{replica.ErrUnauthorizedChange, true},
		{replica.ErrForgedChange, true},
		{replica.ErrRevokedChange, true},
		{replica.ErrOutOfScope, true},
		{replica.ErrWrongSender, true},
		{replica.ErrMalformedBundle, true},
		{device.ErrRevoked, true},
		{ErrReplayed, true},
		{replica.ErrClosed, false},
		{&replica.ForkedError{Replica: "r", Self: true, Reason: "copied"}, false},
		{errors.New("disk full"), false},
	} {
		t.Run(tc.err.Error(), func(t *testing.T) {
			assert.Equal(t, tc.bad, isBadInput(fmt.Errorf("receive bundle: %w", tc.err)))
		})
	}
}
