// Package fuzzseed writes the real inputs a fuzz target starts from to its
// seed corpus in testdata/fuzz, for tests run with -update-fuzz-seeds;
// plain go test then runs every file there.
package fuzzseed

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

var update = flag.Bool("update-fuzz-seeds", false, "write the real inputs fuzz targets start from to testdata/fuzz")

// Write writes seeds, each the list of a fuzz target's arguments ([]byte
// or string), to target's corpus in testdata/fuzz when the tests run with
// -update-fuzz-seeds, and does nothing otherwise.
func Write(tb testing.TB, target string, seeds ...[]any) {
	tb.Helper()
	if !*update {
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

// Bytes writes one-argument seeds of []byte, as Write does.
func Bytes(tb testing.TB, target string, seeds ...[]byte) {
	tb.Helper()
	args := make([][]any, len(seeds))
	for i, s := range seeds {
		args[i] = []any{s}
	}
	Write(tb, target, args...)
}
