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
	"time"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/internal/atomicfile"
	"github.com/chartsync/chartsync/internal/dirlock"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/transport/httpsync"
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

// openDir creates the data directory if needed and opens its device CA.
func openDir(dir string) (*httpsync.DeviceCA, bool, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("create data directory: %w", err)
	}
	return httpsync.OpenDeviceCA(filepath.Join(dir, dirCA), time.Now())
}

// openAuthority loads the cloud's enrolment authority key (DIR/ca/
// authority.key), which signs the relay enrolments of the devices it
// enrols, creating it if missing.
func openAuthority(dir string) (a *device.Authority, created bool, err error) {
	path := filepath.Join(dir, dirCA, fileAuth)
	a, err = device.LoadAuthority(path)
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return a, false, err
	}
	if a, err = device.NewAuthority(); err != nil {
		return nil, false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, false, err
	}
	return a, true, a.Save(path)
}

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

// enrolment is one line of devices.jsonl.
type enrolment struct {
	Device   string    `json:"device"`
	Clinic   string    `json:"clinic"`
	Replica  string    `json:"replica"`
	Key      string    `json:"key,omitempty"` // the device key's fingerprint
	Serial   string    `json:"serial"`
	Issued   time.Time `json:"issued"`
	NotAfter time.Time `json:"not_after"`
	File     string    `json:"file"`
}

func appendEnrolment(dir string, e enrolment) error {
	line, err := json.Marshal(e)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(dir, fileDevices), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(append(line, '\n')); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
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
