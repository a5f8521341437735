package main

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestDemo runs the whole demo: it returns an error unless every replica
// converges and every acknowledgement comes home.
func TestDemo(t *testing.T) {
	require.NoError(t, run(context.Background(), false), "the relay demo must end with every replica converged")
}
