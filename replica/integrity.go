package replica

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/chartsync/chartsync/replica/store/sqlite"
)

// ErrDamaged matches the error of Open, and of CheckIntegrity, for a
// replica whose database is damaged (a *DamagedError says what was
// found). Nothing is written to a damaged database: repair the replica
// from a peer, or restore it from a backup (RestoreAs).
var ErrDamaged = errors.New("replica database damaged")

// DamagedError is what an integrity check found wrong with a replica's
// database. It matches ErrDamaged.
type DamagedError struct {
	// Path is the database file (empty when the check was asked of an
	// open replica, which does not know it).
	Path string
	// Problems are SQLite's own words for what it found, at most
	// MaxProblems of them.
	Problems []string
	// Full says the full check found them (an index that disagrees with
	// its table is found by the full check only).
	Full bool
}

// MaxProblems bounds the problems a check reports.
const MaxProblems = 20

// OpenCheckTime bounds the integrity check Open runs. A check still
// running then is stopped, and the replica opens with a warning in its
// log: the time a device takes to open stays bounded whatever the size of
// its database, and CheckIntegrity runs a check to the end on request.
// The quick check reads every page of the file: 0.23 s for a database of
// 20,000 charts of 10 changes (130 MiB) on a shared two-core machine with
// the file in the page cache, against 1.0-1.4 s for the full check
// (BenchmarkOpenCheck); reading the file from a cold disk adds its read
// time.
const OpenCheckTime = 5 * time.Second

func (e *DamagedError) Error() string {
	what := "replica database"
	if e.Path != "" {
		what += " " + e.Path
	}
	return fmt.Sprintf("%s is damaged (%s): repair it from a peer, or restore it from a backup, before using it",
		what, strings.Join(e.Problems, "; "))
}

// Is makes a DamagedError match ErrDamaged.
func (e *DamagedError) Is(target error) bool { return target == ErrDamaged }

// checker is a store that can check its own integrity (package sqlite's).
type checker interface {
	Check(ctx context.Context, full bool, max int) ([]string, error)
}

// openChecked opens the SQLite store at path and runs its quick check,
// bounded by OpenCheckTime. A database found damaged, by the check or by
// the open itself, is closed and reported as a *DamagedError.
func openChecked(ctx context.Context, path string, cfg Config) (*sqlite.Store, error) {
	st, err := sqlite.OpenConfig(ctx, path, cfg.storeConfig())
	if err != nil {
		if sqlite.IsDamage(err) {
			return nil, &DamagedError{Path: path, Problems: []string{err.Error()}}
		}
		return nil, err
	}
	start := time.Now()
	cctx, cancel := context.WithTimeout(ctx, OpenCheckTime)
	defer cancel()
	problems, err := st.Check(cctx, false, MaxProblems)
	switch {
	case err != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded):
		log := cfg.Logger
		if log == nil {
			log = slog.New(slog.DiscardHandler)
		}
		log.Warn("integrity check not finished when the replica opened: run a full check (CheckIntegrity)",
			"path", path, "budget", OpenCheckTime, "took", time.Since(start))
	case err != nil:
		st.Close()
		return nil, fmt.Errorf("check %s: %w", path, err)
	case len(problems) > 0:
		st.Close()
		return nil, &DamagedError{Path: path, Problems: problems}
	}
	return st, nil
}

// CheckIntegrity checks the replica's database: with full false, SQLite's
// quick check, as Open runs (every page's structure); with full true, its
// integrity check, which also checks that every index agrees with its
// table (the index of change hashes, by which sync tells which changes
// it holds, among them). Damage is reported as a *DamagedError matching
// ErrDamaged. It reads the whole database, and writes wait for it; it
// runs until done or until ctx is cancelled. A store that cannot check
// itself (the in-memory one, PostgreSQL, which checks its own pages)
// gives an error matching errors.ErrUnsupported.
func (r *Replica) CheckIntegrity(ctx context.Context, full bool) error {
	if err := r.checkOpen(); err != nil {
		return err
	}
	c, ok := r.st.(checker)
	if !ok {
		return fmt.Errorf("check integrity: the store cannot check itself: %w", errors.ErrUnsupported)
	}
	problems, err := c.Check(ctx, full, MaxProblems)
	if err != nil {
		return fmt.Errorf("check integrity: %w", err)
	}
	if len(problems) > 0 {
		return &DamagedError{Problems: problems, Full: full}
	}
	return nil
}
