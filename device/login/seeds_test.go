package login

import (
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

var updateFuzzSeeds = flag.Bool("update-fuzz-seeds", false, "write the real inputs fuzz targets start from to testdata/fuzz")

// writeSeeds writes seeds, real inputs of a fuzz target (each a list of
// its arguments, []byte or string), to its corpus in testdata/fuzz when the
// tests run with -update-fuzz-seeds; plain go test runs every file there.
func writeSeeds(tb testing.TB, target string, seeds ...[]any) {
	tb.Helper()
	if !*updateFuzzSeeds {
		return
	}
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	for _, args := range seeds {
		var b strings.Builder
		b.WriteString("go test fuzz v1\n")
		for _, a := range args {
			switch v := a.(type) {
			case []byte:
				b.WriteString("[]byte(" + strconv.Quote(string(v)) + ")\n")
			case string:
				b.WriteString("string(" + strconv.Quote(v) + ")\n")
			default:
				tb.Fatalf("seed argument of type %T", a)
			}
		}
		sum := sha256.Sum256([]byte(b.String()))
		if err := os.WriteFile(filepath.Join(dir, hex.EncodeToString(sum[:8])), []byte(b.String()), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
}
