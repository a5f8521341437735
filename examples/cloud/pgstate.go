package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/transport/httpsync"
)

// pgState keeps the cloud's state in PostgreSQL, for several nodes on one
// database. The secrets (the CA's key, the authority key, the cloud's key
// pair) are sealed with the operator key, which the database never holds.
//
// Tables (beside the replica store's and the access log's):
//
//	cloud_secrets   name, sealed secret, public part (the CA certificate)
//	cloud_roster    the relay roster's signed records, numbered in commit
//	                order under a lock on cloud_roster_head
//	cloud_devices   the list of enrolments and revocations (JSON)
//	cloud_ticket_keys the TLS session ticket keys, sealed (tickets.go)
//	cloud_info      where a node last served
//	cloud_systems   the systems authorised to read through the FHIR API
//	                (systems.go): name, ID, their token's SHA-256
//
// A secret is made by the first node to need it: each node offers its
// own (INSERT ... ON CONFLICT DO NOTHING) and all use the one kept.
type pgState struct {
	pool *pgxpool.Pool
	key  *operatorKey
}

var _ state = (*pgState)(nil)

// stateLockKey is the advisory lock under which the tables are made.
const stateLockKey = 0x6368617274636c64

func openPGState(ctx context.Context, connString, schema string, key *operatorKey) (*pgState, error) {
	pc, err := pgxpool.ParseConfig(connString)
	if err != nil {
		return nil, errors.New("open the cloud's state: the connection string does not parse")
	}
	pc.MaxConns = 4
	rp := pc.ConnConfig.RuntimeParams
	if schema != "" {
		rp["search_path"] = pgx.Identifier{schema}.Sanitize()
	}
	rp["synchronous_commit"] = "on"
	if rp["application_name"] == "" {
		rp["application_name"] = "chartsync cloud"
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("open the cloud's state on %s: %w", pc.ConnConfig.Host, err)
	}
	err = pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", int64(stateLockKey)); err != nil {
			return err
		}
		if schema != "" {
			if _, err := tx.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+pgx.Identifier{schema}.Sanitize()); err != nil {
				return err
			}
		}
		_, err := tx.Exec(ctx, `
			CREATE TABLE IF NOT EXISTS cloud_secrets (
				name   text PRIMARY KEY,
				sealed bytea NOT NULL,
				public bytea NOT NULL
			);
			CREATE TABLE IF NOT EXISTS cloud_roster_head (
				id  integer PRIMARY KEY CHECK (id = 0),
				seq bigint NOT NULL
			);
			INSERT INTO cloud_roster_head(id, seq) VALUES (0, 0) ON CONFLICT (id) DO NOTHING;
			CREATE TABLE IF NOT EXISTS cloud_roster (
				seq    bigint PRIMARY KEY,
				record bytea NOT NULL UNIQUE
			);
			CREATE TABLE IF NOT EXISTS cloud_devices (
				id    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
				entry jsonb NOT NULL
			);
			CREATE TABLE IF NOT EXISTS cloud_ticket_keys (
				created timestamptz PRIMARY KEY,
				sealed  bytea NOT NULL
			);
			CREATE TABLE IF NOT EXISTS cloud_info (
				key   text PRIMARY KEY,
				value text NOT NULL
			);`+pgSystemsTables)
		return err
	})
	if err != nil {
		pool.Close()
		return nil, fmt.Errorf("open the cloud's state on %s: %w", pc.ConnConfig.Host, err)
	}
	return &pgState{pool: pool, key: key}, nil
}

func (s *pgState) Close() error {
	s.pool.Close()
	return nil
}

// secret returns the secret called name, offering mk's if none is
// kept. created reports that mk's was kept.
func (s *pgState) secret(ctx context.Context, name string, mk func() (plain, public []byte, err error)) (plain, public []byte, created bool, err error) {
	var sealed []byte
	err = s.pool.QueryRow(ctx, "SELECT sealed, public FROM cloud_secrets WHERE name = $1", name).Scan(&sealed, &public)
	if errors.Is(err, pgx.ErrNoRows) {
		p, pub, merr := mk()
		if merr != nil {
			return nil, nil, false, merr
		}
		tag, ierr := s.pool.Exec(ctx, "INSERT INTO cloud_secrets(name, sealed, public) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
			name, s.key.seal(name, p), pub)
		if ierr != nil {
			return nil, nil, false, fmt.Errorf("keep the %s: %w", name, ierr)
		}
		if tag.RowsAffected() == 1 {
			return p, pub, true, nil
		}
		err = s.pool.QueryRow(ctx, "SELECT sealed, public FROM cloud_secrets WHERE name = $1", name).Scan(&sealed, &public)
	}
	if err != nil {
		return nil, nil, false, fmt.Errorf("read the %s: %w", name, err)
	}
	plain, err = s.key.open(name, sealed)
	return plain, public, false, err
}

func (s *pgState) DeviceCA(ctx context.Context) (*httpsync.DeviceCA, bool, error) {
	keyPEM, certPEM, created, err := s.secret(ctx, "device CA", func() ([]byte, []byte, error) {
		ca, err := httpsync.NewDeviceCA("chartsync device CA", time.Now(), 10*365*24*time.Hour)
		if err != nil {
			return nil, nil, err
		}
		certPEM, keyPEM, err := ca.MarshalPEM()
		return keyPEM, certPEM, err
	})
	if err != nil {
		return nil, false, err
	}
	ca, err := httpsync.ParseDeviceCA(certPEM, keyPEM)
	if err != nil {
		return nil, false, fmt.Errorf("device CA in the database: %w", err)
	}
	return ca, created, nil
}

func (s *pgState) Authority(ctx context.Context) (*device.Authority, bool, error) {
	data, _, created, err := s.secret(ctx, "enrolment authority", func() ([]byte, []byte, error) {
		a, err := device.NewAuthority()
		if err != nil {
			return nil, nil, err
		}
		data, err := a.MarshalBinary()
		return data, []byte{}, err
	})
	if err != nil {
		return nil, false, err
	}
	a, err := device.ParseAuthority(data)
	if err != nil {
		return nil, false, fmt.Errorf("enrolment authority in the database: %w", err)
	}
	return a, created, nil
}

func (s *pgState) Identity(ctx context.Context, newID string) (*device.Identity, bool, error) {
	data, _, created, err := s.secret(ctx, "cloud identity", func() ([]byte, []byte, error) {
		id, err := newIdentity(newID)
		if err != nil {
			return nil, nil, err
		}
		data, err := id.MarshalBinary()
		return data, []byte{}, err
	})
	if err != nil {
		return nil, false, err
	}
	id, err := device.ParseIdentity(data)
	if err != nil {
		return nil, false, fmt.Errorf("cloud identity in the database: %w", err)
	}
	return id, created, nil
}

// AddToRoster numbers the record under the roster head's lock, so that
// numbers become visible in order and MergeRoster never passes one that
// is filled in later. A record kept already is kept once.
func (s *pgState) AddToRoster(ctx context.Context, signed []byte) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var seq int64
		if err := tx.QueryRow(ctx, "SELECT seq FROM cloud_roster_head WHERE id = 0 FOR UPDATE").Scan(&seq); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, "INSERT INTO cloud_roster(seq, record) VALUES ($1, $2) ON CONFLICT (record) DO NOTHING", seq+1, signed)
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		_, err = tx.Exec(ctx, "UPDATE cloud_roster_head SET seq = $1 WHERE id = 0", seq+1)
		return err
	})
	if err != nil {
		return fmt.Errorf("add to the roster: %w", err)
	}
	return nil
}

func (s *pgState) MergeRoster(ctx context.Context, r *device.Roster, since int64) (int64, error) {
	rows, err := s.pool.Query(ctx, "SELECT seq, record FROM cloud_roster WHERE seq > $1 ORDER BY seq", since)
	if err != nil {
		return since, fmt.Errorf("read the roster: %w", err)
	}
	defer rows.Close()
	version := since
	for rows.Next() {
		var seq int64
		var rec []byte
		if err := rows.Scan(&seq, &rec); err != nil {
			return since, fmt.Errorf("read the roster: %w", err)
		}
		if _, err := r.Merge(rec); err != nil {
			return since, fmt.Errorf("roster record %d: %w", seq, err)
		}
		version = seq
	}
	if err := rows.Err(); err != nil {
		return since, fmt.Errorf("read the roster: %w", err)
	}
	return version, nil
}

func (s *pgState) RecordEnrolment(ctx context.Context, e enrolment) error {
	data, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if _, err := s.pool.Exec(ctx, "INSERT INTO cloud_devices(entry) VALUES ($1)", data); err != nil {
		return fmt.Errorf("record the enrolment: %w", err)
	}
	return nil
}

func (s *pgState) Enrolments(ctx context.Context) ([]enrolment, error) {
	rows, err := s.pool.Query(ctx, "SELECT entry::text FROM cloud_devices ORDER BY id")
	if err != nil {
		return nil, fmt.Errorf("read the enrolments: %w", err)
	}
	defer rows.Close()
	var out []enrolment
	for rows.Next() {
		var data string
		if err := rows.Scan(&data); err != nil {
			return nil, fmt.Errorf("read the enrolments: %w", err)
		}
		var e enrolment
		if err := json.Unmarshal([]byte(data), &e); err != nil {
			return nil, fmt.Errorf("read the enrolments: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

func (s *pgState) Served(ctx context.Context) (info, error) {
	id, _, err := s.Identity(ctx, replica.NewID())
	if err != nil {
		return info{}, err
	}
	in := info{Replica: id.ReplicaID()}
	err = s.pool.QueryRow(ctx, "SELECT value FROM cloud_info WHERE key = 'url'").Scan(&in.URL)
	if err != nil && !errors.Is(err, pgx.ErrNoRows) {
		return in, fmt.Errorf("read where the cloud serves: %w", err)
	}
	return in, nil
}

func (s *pgState) SetServed(ctx context.Context, in info) error {
	if _, err := s.pool.Exec(ctx, "INSERT INTO cloud_info(key, value) VALUES ('url', $1) ON CONFLICT (key) DO UPDATE SET value = $1", in.URL); err != nil {
		return fmt.Errorf("record where the cloud serves: %w", err)
	}
	return nil
}
