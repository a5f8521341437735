package login

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestHumanDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		time.Second:             "1 second",
		90 * time.Second:        "90 seconds",
		time.Minute:             "1 minute",
		16 * time.Minute:        "16 minutes",
		time.Hour:               "1 hour",
		24 * time.Hour:          "24 hours",
		1500 * time.Millisecond: "1.5s",
	} {
		assert.Equal(t, want, humanDuration(d), "lockout length %v as shown to a person", d)
	}
}
