package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/chartsync/chartsync/internal/atomicfile"
	"github.com/chartsync/chartsync/internal/dirlock"
	"github.com/chartsync/chartsync/replica"
)

// Files in the data directory.
const (
	fileReplica = "cloud.db"
	fileInfo    = "cloud.json"
	fileLock    = "serve.lock"
	fileDevices = "devices.jsonl"
	fileEnrol   = "enrol.lock"
	fileRoster  = "roster"        // the relay roster: every device.Enrolment the authority signed
	fileAuth    = "authority.key" // in dirCA: the device.Authority key that signs relay enrolments
	dirCA       = "ca"
	dirTLS      = "tls"
)

// info is what enrol needs to know about the cloud without opening its
// database (which serve holds): written by serve and enrol.
type info struct {
	Replica string `json:"replica"`
	URL     string `json:"url,omitempty"` // where serve last listened
}

func readInfo(dir string) (info, error) {
	var in info
	data, err := os.ReadFile(filepath.Join(dir, fileInfo))
	if err != nil {
		return in, err
	}
	if err := json.Unmarshal(data, &in); err != nil {
		return in, fmt.Errorf("%s: %w", filepath.Join(dir, fileInfo), err)
	}
	return in, nil
}

func writeInfo(dir string, in info) error {
	data, err := json.MarshalIndent(in, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, fileInfo), append(data, '\n'), atomicfile.Options{Perm: 0o644})
}

// lockDir takes the data directory's lock, which serve holds while it
// runs: two processes must never open the replica at once.
func lockDir(dir string) (unlock func(), err error) { return lockFile(dir, fileLock) }

// lockFile takes an exclusive lock on the file name in dir, or returns an
// error matching errLocked (naming the process that holds it).
func lockFile(dir, name string) (unlock func(), err error) {
	l, err := dirlock.AcquireNamed(dir, name)
	if err != nil {
		return nil, err
	}
	return func() { _ = l.Release() }, nil
}

// errLocked matches the error of a lock another process holds.
var errLocked = dirlock.ErrLocked

// cloudReplicaID returns the cloud's replica ID: from cloud.json, or, if
// the cloud has never been served, by opening (creating) its replica.
func cloudReplicaID(ctx context.Context, dir string) (info, error) {
	in, err := readInfo(dir)
	if err == nil {
		return in, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return in, err
	}
	unlock, err := lockDir(dir)
	if err != nil {
		return in, err
	}
	defer unlock()
	r, err := replica.Open(ctx, filepath.Join(dir, fileReplica), replica.Config{})
	if err != nil {
		return in, err
	}
	in.Replica = r.ID()
	if err := r.Close(); err != nil {
		return in, err
	}
	return in, writeInfo(dir, in)
}

// nextCert returns the first PEM certificate in data and what follows it,
// or nil at the end.
func nextCert(data []byte) (*x509.Certificate, []byte, error) {
	for {
		b, rest := pem.Decode(data)
		if b == nil {
			return nil, nil, nil
		}
		if b.Type == "CERTIFICATE" {
			c, err := x509.ParseCertificate(b.Bytes)
			return c, rest, err
		}
		data = rest
	}
}
