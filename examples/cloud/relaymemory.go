package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/chartsync/chartsync/internal/atomicfile"
)

// relayMemory is what the cloud remembers of the relay bundles it
// applied, each by its key (relay.Header.Key: sender and bundle ID) until
// the bundle expires, so that a copy imported again is reported as a
// replay and applies nothing. Once a bundle has expired, any copy of it is
// refused as expired, and it is forgotten.
//
// The data directory keeps it in relay-applied.json (the import holds the
// directory's lock); a database in the table cloud_relay_applied, made by
// the first import that needs it. Two imports of one bundle at once on
// two machines both apply it, as two HTTPS syncs of one bundle would: a
// bundle applies nothing the second time.
type relayMemory interface {
	// Applied reports whether the bundle with key was applied.
	Applied(ctx context.Context, key string) (bool, error)
	// Remember records that the bundle with key was applied; it is
	// remembered until expires.
	Remember(ctx context.Context, key string, expires time.Time) error
}

// fileRelayApplied is the data directory's relay memory: a JSON object of
// bundle keys and their expiry (Unix seconds).
const fileRelayApplied = "relay-applied.json"

// maxRelayMemoryBytes bounds the file read: a key is 65 bytes, so this
// holds a million bundles and more.
const maxRelayMemoryBytes = 128 << 20

// openRelayMemory opens the relay memory where st keeps the cloud,
// forgetting the bundles expired at now.
func openRelayMemory(ctx context.Context, st state, now time.Time) (relayMemory, error) {
	switch s := st.(type) {
	case fileState:
		return openFileRelayMemory(filepath.Join(s.dir, fileRelayApplied), now)
	case *pgState:
		return openPGRelayMemory(ctx, s, now)
	}
	return nil, fmt.Errorf("the cloud's state (%T) keeps no relay memory", st)
}

type fileRelayMemory struct {
	path    string
	applied map[string]int64
}

func openFileRelayMemory(path string, now time.Time) (*fileRelayMemory, error) {
	m := &fileRelayMemory{path: path, applied: map[string]int64{}}
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return nil, fmt.Errorf("relay memory: %w", err)
	}
	if fi.Size() > maxRelayMemoryBytes {
		return nil, fmt.Errorf("relay memory %s: %d bytes, over %d: not a file this program wrote", path, fi.Size(), maxRelayMemoryBytes)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("relay memory: %w", err)
	}
	if err := json.Unmarshal(data, &m.applied); err != nil {
		return nil, fmt.Errorf("relay memory %s is damaged (%v): move it aside to import again (a replayed relay bundle then applies nothing, and is reported as imported)", path, err)
	}
	if m.applied == nil {
		m.applied = map[string]int64{}
	}
	maps.DeleteFunc(m.applied, func(_ string, exp int64) bool { return exp <= now.Unix() })
	return m, nil
}

func (m *fileRelayMemory) Applied(_ context.Context, key string) (bool, error) {
	_, ok := m.applied[key]
	return ok, nil
}

func (m *fileRelayMemory) Remember(_ context.Context, key string, expires time.Time) error {
	m.applied[key] = expires.Unix()
	data, err := json.Marshal(m.applied)
	if err != nil {
		return err
	}
	if err := atomicfile.Write(m.path, data, atomicfile.Options{Perm: 0o600, TempPattern: ".relay-applied-*.tmp"}); err != nil {
		delete(m.applied, key)
		return fmt.Errorf("relay memory: %w", err)
	}
	return nil
}

type pgRelayMemory struct{ s *pgState }

func openPGRelayMemory(ctx context.Context, s *pgState, now time.Time) (*pgRelayMemory, error) {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(stateLockKey)); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS cloud_relay_applied (
				key     text PRIMARY KEY,
				expires timestamptz NOT NULL
			)`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, "DELETE FROM cloud_relay_applied WHERE expires <= $1", now)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("relay memory: %w", err)
	}
	return &pgRelayMemory{s: s}, nil
}

func (m *pgRelayMemory) Applied(ctx context.Context, key string) (bool, error) {
	var ok bool
	if err := m.s.pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM cloud_relay_applied WHERE key = $1)", key).Scan(&ok); err != nil {
		return false, fmt.Errorf("relay memory: %w", err)
	}
	return ok, nil
}

func (m *pgRelayMemory) Remember(ctx context.Context, key string, expires time.Time) error {
	if _, err := m.s.pool.Exec(ctx, "INSERT INTO cloud_relay_applied(key, expires) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING", key, expires); err != nil {
		return fmt.Errorf("relay memory: %w", err)
	}
	return nil
}
