package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/transport/httpsync"
)

// fileIdentity is the cloud's key pair in dirCA.
const fileIdentity = "cloud.key"

// fileState keeps the cloud's state in its data directory, as files (see
// the command's doc). Changes to the roster and the identity are made
// under the directory's enrolment lock.
type fileState struct{ dir string }

var _ state = fileState{}

func openFileState(dir string) (fileState, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fileState{}, fmt.Errorf("create data directory: %w", err)
	}
	return fileState{dir: dir}, nil
}

func (s fileState) Close() error { return nil }

// DeviceCA loads DIR/ca/ca.crt and ca.key, creating them if missing.
func (s fileState) DeviceCA(context.Context) (*httpsync.DeviceCA, bool, error) {
	dir := filepath.Join(s.dir, dirCA)
	if _, err := os.Stat(filepath.Join(dir, "ca.crt")); err == nil {
		return httpsync.OpenDeviceCA(dir, time.Now())
	}
	unlock, err := s.lock()
	if err != nil {
		return nil, false, err
	}
	defer unlock()
	return httpsync.OpenDeviceCA(dir, time.Now())
}

// Authority loads DIR/ca/authority.key, creating it if missing.
func (s fileState) Authority(context.Context) (*device.Authority, bool, error) {
	path := filepath.Join(s.dir, dirCA, fileAuth)
	a, err := device.LoadAuthority(path)
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return a, false, err
	}
	unlock, err := s.lock()
	if err != nil {
		return nil, false, err
	}
	defer unlock()
	// Made by another process while this one waited?
	if a, err = device.LoadAuthority(path); err == nil || !errors.Is(err, os.ErrNotExist) {
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

// Identity loads DIR/ca/cloud.key, creating it if missing.
func (s fileState) Identity(_ context.Context, newID string) (*device.Identity, bool, error) {
	path := filepath.Join(s.dir, dirCA, fileIdentity)
	id, err := device.Load(path)
	if err == nil || !errors.Is(err, os.ErrNotExist) {
		return id, false, err
	}
	unlock, err := s.lock()
	if err != nil {
		return nil, false, err
	}
	defer unlock()
	if id, err = device.Load(path); err == nil || !errors.Is(err, os.ErrNotExist) {
		return id, false, err
	}
	if id, err = newIdentity(newID); err != nil {
		return nil, false, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, false, err
	}
	return id, true, id.Save(path)
}

// lock takes the enrolment lock, waiting a little for another enrolment.
func (s fileState) lock() (func(), error) {
	for range 50 {
		unlock, err := lockFile(s.dir, fileEnrol)
		if !errors.Is(err, errLocked) {
			return unlock, err
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil, errors.New("another enrolment is running in this data directory; try again in a moment")
}

func (s fileState) AddToRoster(ctx context.Context, signed []byte) error {
	a, _, err := s.Authority(ctx)
	if err != nil {
		return err
	}
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	path := filepath.Join(s.dir, fileRoster)
	r, err := device.LoadRoster(path, rosterConfig(a))
	if err != nil {
		return err
	}
	if _, err := r.Add(signed); err != nil {
		return err
	}
	return r.Save(path)
}

// MergeRoster reads the roster file if its modification time or size
// changed since version.
func (s fileState) MergeRoster(_ context.Context, r *device.Roster, since int64) (int64, error) {
	path := filepath.Join(s.dir, fileRoster)
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return since, nil
	}
	if err != nil {
		return since, fmt.Errorf("roster: %w", err)
	}
	version := fi.ModTime().UnixNano() ^ fi.Size()
	if version == since {
		return since, nil
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return since, fmt.Errorf("roster: %w", err)
	}
	if _, err := r.Merge(data); err != nil {
		return since, fmt.Errorf("roster %s: %w (the roster is rebuilt by enrolling the devices again)", path, err)
	}
	return version, nil
}

func (s fileState) RecordEnrolment(_ context.Context, e enrolment) error {
	line, err := json.Marshal(e)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(s.dir, fileDevices), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
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

func (s fileState) Enrolments(context.Context) ([]enrolment, error) {
	f, err := os.Open(filepath.Join(s.dir, fileDevices))
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []enrolment
	lines := bufio.NewScanner(f)
	for lines.Scan() {
		var e enrolment
		if err := json.Unmarshal(lines.Bytes(), &e); err != nil {
			return nil, fmt.Errorf("%s: %w", f.Name(), err)
		}
		out = append(out, e)
	}
	return out, lines.Err()
}

func (s fileState) Served(ctx context.Context) (info, error) { return cloudReplicaID(ctx, s.dir) }

func (s fileState) SetServed(_ context.Context, in info) error { return writeInfo(s.dir, in) }
