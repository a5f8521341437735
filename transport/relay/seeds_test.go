package relay

import (
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

var updateFuzzSeeds = flag.Bool("update-fuzz-seeds", false, "write the real files fuzz targets start from to testdata/fuzz")

// writeSeeds writes seeds, real files a fuzz target starts from, to its
// corpus in testdata/fuzz when the tests run with -update-fuzz-seeds;
// plain go test runs every file there.
func writeSeeds(tb testing.TB, target string, seeds ...[]byte) {
	tb.Helper()
	if !*updateFuzzSeeds {
		return
	}
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	for _, s := range seeds {
		sum := sha256.Sum256(s)
		entry := "go test fuzz v1\n[]byte(" + strconv.Quote(string(s)) + ")\n"
		if err := os.WriteFile(filepath.Join(dir, hex.EncodeToString(sum[:8])), []byte(entry), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
}
