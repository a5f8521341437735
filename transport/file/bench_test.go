package file_test

import (
	"os"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/transport/file"
)

// BenchmarkImportReplayedFile: what finding a replay costs. A hub holding
// 200 charts the clinic has not acknowledged imports the clinic's file
// again (already applied): "receive" is the replica's Receive of its
// bytes alone, "import-file" ImportFile, which also reads the hub's
// positions for the clinic (the bundle it would send, twice) to refuse
// it with ErrReplayed.
func BenchmarkImportReplayedFile(b *testing.B) {
	clinic, hub := openReplica(b, "clinic"), openReplica(b, "hub")
	for range 200 {
		register(b, hub, "Wanjiru")
	}
	register(b, clinic, "Amina")
	stick := b.TempDir()
	ex, err := file.Export(b.Context(), clinic, hub.ID(), stick)
	require.NoError(b, err)
	_, err = file.ImportFile(b.Context(), hub, ex.Path)
	require.NoError(b, err)
	data, err := os.ReadFile(ex.Path)
	require.NoError(b, err)
	b.Run("receive", func(b *testing.B) {
		for b.Loop() {
			if _, err := hub.Receive(b.Context(), data); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("import-file", func(b *testing.B) {
		for b.Loop() {
			if _, err := file.ImportFile(b.Context(), hub, ex.Path); err == nil {
				b.Fatal("a replay was taken")
			}
		}
	})
}
