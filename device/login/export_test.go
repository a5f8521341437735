package login

import (
	"os"
	"sync/atomic"

	"github.com/chartsync/chartsync/internal/atomicfile"
)

// CountVerifies makes g count the hashes it computes (roster or decoy)
// and returns the counter. Call it before g is shared.
func CountVerifies(g *Guard) *atomic.Int64 {
	var n atomic.Int64
	verify := g.verify
	g.verify = func(encoded, password string) error {
		n.Add(1)
		return verify(encoded, password)
	}
	return &n
}

// FailRenames makes g's durable state writes fail at the rename with err
// (nil: durable writes that succeed).
func FailRenames(g *Guard, err error) {
	g.write = atomicfile.Write
	g.writeOpts.Rename = nil
	if err != nil {
		g.writeOpts.Rename = func(string, string) error { return err }
	}
}

// FastWrites makes g write its state without fsync (a temporary file and
// a rename), for tests that save thousands of times on a busy disk. Tests
// of durability leave it out.
func FastWrites(g *Guard) {
	g.write = func(path string, data []byte, _ atomicfile.Options) error {
		if err := os.WriteFile(path+".fast", data, 0o600); err != nil {
			return err
		}
		return os.Rename(path+".fast", path)
	}
}

// WriteThenFail makes g's state writes put the file in place and then
// report err, as a failure to sync the directory after the rename would.
func WriteThenFail(g *Guard, err error) {
	g.write = func(path string, data []byte, o atomicfile.Options) error {
		if werr := atomicfile.Write(path, data, o); werr != nil {
			return werr
		}
		return err
	}
}
