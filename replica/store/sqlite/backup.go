package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"

	sqlite3 "github.com/mutecomm/go-sqlcipher/v4"
)

// Check runs SQLite's own check of the database and returns the problems
// it found, at most max of them (none: the database is sound).
//
// With full false it runs PRAGMA quick_check: every page of every table
// and index is read and its structure checked (page headers, cell
// bounds, free lists, record formats), which finds a damaged page, but
// an index whose entries disagree with their table goes unnoticed. With
// full true it runs PRAGMA integrity_check, which checks that too, at a
// cost of about one lookup per row and index. Both read the whole file,
// holding the store's connection meanwhile; cancelling ctx interrupts
// the check (the error then matches ctx.Err()).
func (s *Store) Check(ctx context.Context, full bool, max int) ([]string, error) {
	if max < 1 {
		max = 1
	}
	db, done, err := s.reader(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	pragma := "quick_check"
	if full {
		pragma = "integrity_check"
	}
	problems, err := checkRows(ctx, db, fmt.Sprintf("PRAGMA %s(%d)", pragma, max))
	if err != nil {
		if cipher := s.cipherDamage(ctx, db, max, err); len(cipher) > 0 {
			return cipher, nil
		}
		return damage(ctx, pragma, err)
	}
	return problems, nil
}

// checkRows runs a check pragma and returns the lines it gave other than
// "ok".
func checkRows(ctx context.Context, db *sql.DB, query string) ([]string, error) {
	rows, err := db.QueryContext(ctx, query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return nil, err
		}
		if line != "ok" {
			problems = append(problems, line)
		}
	}
	return problems, rows.Err()
}

// cipherDamage tells, for an encrypted store whose check stopped with a
// plain SQLite error (SQLCipher gives one for a page whose authentication
// code does not match, which is what a damaged page of an encrypted
// database looks like), the pages SQLCipher's own check finds damaged:
// at most max lines, none if it finds none or the store is in clear.
func (s *Store) cipherDamage(ctx context.Context, db *sql.DB, max int, err error) []string {
	var se sqlite3.Error
	if s.cfg.Key == nil || ctx.Err() != nil || !errors.As(err, &se) || se.Code != sqlite3.ErrError {
		return nil
	}
	problems, cerr := checkRows(ctx, db, "PRAGMA cipher_integrity_check")
	if cerr != nil {
		return nil
	}
	return problems[:min(len(problems), max)]
}

// damage turns an error a check ended with into what it says of the
// database: SQLite stops a check on a page too damaged to read, and on a
// file that is not a database at all, with an error instead of a line.
func damage(ctx context.Context, pragma string, err error) ([]string, error) {
	if ctx.Err() != nil {
		return nil, fmt.Errorf("%s: %w", pragma, ctx.Err())
	}
	if IsDamage(err) {
		return []string{err.Error()}, nil
	}
	return nil, fmt.Errorf("%s: %w", pragma, err)
}

// IsDamage reports whether err is SQLite saying the database file is
// damaged (SQLITE_CORRUPT) or is not a database (SQLITE_NOTADB).
func IsDamage(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && (se.Code == sqlite3.ErrCorrupt || se.Code == sqlite3.ErrNotADB)
}

// Backup writes a consistent copy of the database at src to dst, which
// must not exist, while other connections, in this process or another,
// may be writing src: the copy is made in one read transaction (VACUUM
// INTO), so it holds every transaction committed before it began and
// none after, and writers go on meanwhile (WAL mode). The copy is
// compacted, keeps every row's number (the log's positions), is fsynced
// before Backup returns, and is mode 0600. On error dst is removed.
func Backup(ctx context.Context, src, dst string) (err error) {
	return BackupConfig(ctx, src, dst, Config{})
}

// BackupConfig is Backup of a database opened with cfg: the copy of an
// encrypted database is encrypted with the same key (and a salt of its
// own), and is read with it (OpenConfig, CheckFileConfig).
func BackupConfig(ctx context.Context, src, dst string, cfg Config) (err error) {
	if src == "" || strings.ContainsAny(src, "?#") {
		return fmt.Errorf("back up %q: path must be a plain file path", src)
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("back up %s: %w", src, err)
	}
	if err := cfg.checkFile(src); err != nil {
		return fmt.Errorf("back up %s: %w", src, err)
	}
	if _, err := os.Stat(src); err != nil {
		return fmt.Errorf("back up %s: %w", src, err)
	}
	// VACUUM INTO fills an empty file: made here, so that it is the
	// owner's alone from the start and an existing file is never
	// overwritten.
	out, err := os.OpenFile(dst, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("back up %s: %w", src, err)
	}
	out.Close()
	defer func() {
		if err != nil {
			_ = os.Remove(dst)
		}
	}()
	q := url.Values{}
	q.Set("mode", "rw") // never create src
	db, err := sql.Open(driverName, cfg.dsn(src, q))
	if err != nil {
		return fmt.Errorf("back up %s: %w", src, err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, "VACUUM INTO ?", dst); err != nil {
		return fmt.Errorf("back up %s to %s: %w", src, dst, cfg.keyError(src, err))
	}
	f, err := os.OpenFile(dst, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("back up %s: %w", src, err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("back up %s: sync %s: %w", src, dst, err)
	}
	return f.Close()
}

// CheckFile runs Check (quick or full) on the database file at path
// without writing to it or beside it, as on a backup before it is used:
// it is opened read-only and immutable, so it must not be in use.
func CheckFile(ctx context.Context, path string, full bool, max int) ([]string, error) {
	return CheckFileConfig(ctx, path, full, max, Config{})
}

// CheckFileConfig is CheckFile of a database read with cfg. A key that
// does not open the file gives an error matching ErrWrongKey, not a
// problem found.
func CheckFileConfig(ctx context.Context, path string, full bool, max int, cfg Config) ([]string, error) {
	if path == "" || strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("check %q: path must be a plain file path", path)
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("check %s: %w", path, err)
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("check %s: %w", path, err)
	}
	if err := cfg.checkFile(path); err != nil {
		return nil, fmt.Errorf("check %s: %w", path, err)
	}
	q := url.Values{}
	q.Set("mode", "ro")
	q.Set("immutable", "1")
	db, err := sql.Open(driverName, cfg.dsn(path, q))
	if err != nil {
		return nil, fmt.Errorf("check %s: %w", path, err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	// A wrong key and a damaged first page look alike (and so do an
	// encrypted file read without a key and a damaged header): the key
	// is the likelier, and a sound file must not be called damaged.
	var n int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema").Scan(&n); err != nil {
		if err = cfg.keyError(path, err); errors.Is(err, ErrWrongKey) {
			return nil, fmt.Errorf("check %s: %w", path, err)
		}
	}
	s := &Store{path: path, db: db}
	return s.Check(ctx, full, max)
}
