package main

import (
	"context"
	"io"
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The quickstart runs end to end and shows a duplicate registered at two
// clinics offline, detected, merged, and the merge reaching the other
// clinic.
func TestQuickstartShowsADuplicateMerged(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir())
	out, err := os.CreateTemp(t.TempDir(), "stdout")
	require.NoError(t, err)
	stdout := os.Stdout
	os.Stdout = out
	runErr := run(context.Background(), false)
	os.Stdout = stdout
	require.NoError(t, runErr, "the quickstart ends without an error")
	_, err = out.Seek(0, io.SeekStart)
	require.NoError(t, err)
	b, err := io.ReadAll(out)
	require.NoError(t, err)
	text := string(b)
	for _, want := range []string{
		"registered Wanjeru Mwangi again",
		"may be the same patient as",
		"same-phone",
		"7. Dr Mutua finds the duplicate and merges it into Wanjiru's chart; the merge reaches Kamuga",
		"Kamuga reads chart",
		"(the Lwanda visit among them), merged from 1 chart",
		"Nothing saved offline was lost.",
	} {
		assert.Contains(t, text, want)
	}
}
