package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	sqlite3 "github.com/mutecomm/go-sqlcipher/v4"
)

// KeySize is the size of a database key in bytes (an AES-256 key).
const KeySize = 32

// Config configures a store. Its zero value is a database in clear.
type Config struct {
	// Key, if set, is the KeySize-byte key the database is encrypted with
	// (SQLCipher 4: every page, of the database file, its write-ahead log
	// and its backups, encrypted with AES-256 in CBC mode and
	// authenticated with HMAC-SHA512 under keys derived from it). It is
	// used as it is, not passed through SQLCipher's password derivation:
	// it must be a random key (or the output of a key derivation the
	// caller runs once), and opening costs no derivation. The database
	// must have been made with this key (or encrypted with it by
	// Encrypt). The store keeps it in memory while it is open.
	Key []byte
}

// Validate reports whether the config can be used.
func (c Config) Validate() error {
	if c.Key != nil && len(c.Key) != KeySize {
		return fmt.Errorf("%w: %d bytes, want %d", ErrKeySize, len(c.Key), KeySize)
	}
	return nil
}

var (
	// ErrKeySize: Config.Key is not KeySize bytes long.
	ErrKeySize = errors.New("sqlite: wrong key size")
	// ErrWrongKey: the database is encrypted with another key than the
	// one given, or is encrypted and no key was given. SQLCipher cannot
	// tell a wrong key from a damaged first page (both fail its
	// authentication), so the error says both; it is never reported as
	// damage (IsDamage), so that a wrong key does not lead to a sound
	// database being repaired or replaced.
	ErrWrongKey = errors.New("sqlite: wrong or missing key for the database")
	// ErrNotEncrypted: a key was given for a database in clear. Encrypt
	// encrypts it in place.
	ErrNotEncrypted = errors.New("sqlite: the database is not encrypted")
)

// plainHeader is the first 16 bytes of a database in clear. An encrypted
// one starts with a random salt.
var plainHeader = []byte("SQLite format 3\x00")

// fileKind says what the file at path holds, from its first bytes:
// nothing (missing or empty), a database in clear, or something else (an
// encrypted database, or a damaged one).
type fileKind int

const (
	fileEmpty fileKind = iota
	filePlain
	fileOther
)

func kindOf(path string) (fileKind, error) {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return fileEmpty, nil
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	head := make([]byte, len(plainHeader))
	n, err := io.ReadFull(f, head)
	switch {
	case n == 0 && (err == io.EOF):
		return fileEmpty, nil
	case err != nil && !errors.Is(err, io.ErrUnexpectedEOF):
		return 0, err
	case bytes.Equal(head[:n], plainHeader):
		return filePlain, nil
	}
	return fileOther, nil
}

// looksEncrypted reports whether the file at path may be an encrypted
// database: it is at least a page long, a whole number of 512-byte
// blocks, and does not start as a database in clear.
func looksEncrypted(path string) bool {
	fi, err := os.Stat(path)
	if err != nil || fi.Size() < 512 || fi.Size()%512 != 0 {
		return false
	}
	k, err := kindOf(path)
	return err == nil && k == fileOther
}

// checkFile refuses, before anything opens it, a database in clear at
// path when c has a key.
func (c Config) checkFile(path string) error {
	if c.Key == nil {
		return nil
	}
	k, err := kindOf(path)
	if err != nil {
		return err
	}
	if k == filePlain {
		return fmt.Errorf("%w: it was made without a key (Encrypt encrypts it)", ErrNotEncrypted)
	}
	return nil
}

// keyError turns the error of a first read of the database at path into
// ErrWrongKey when a key was given, or none was and the file looks
// encrypted, and SQLite found the file not a database. Other errors are
// returned as they are.
func (c Config) keyError(path string, err error) error {
	var se sqlite3.Error
	if !errors.As(err, &se) || se.Code != sqlite3.ErrNotADB {
		return err
	}
	if c.Key != nil {
		return fmt.Errorf("%w (or its first page is damaged): %v", ErrWrongKey, err)
	}
	if looksEncrypted(path) {
		return fmt.Errorf("%w: it is encrypted and no key was given (or its header is damaged): %v", ErrWrongKey, err)
	}
	return err
}

// dsn returns the data source name of the database at path with the
// parameters q, and the key when c has one (SQLCipher's raw key form,
// x'hex', which the driver sets before anything reads the file).
func (c Config) dsn(path string, q url.Values) string {
	if c.Key != nil {
		q.Set("_pragma_key", "x'"+hex.EncodeToString(c.Key)+"'")
	}
	return dsn(path, q)
}

// Encrypt encrypts the database at path, made without a key, in place
// with key (Config.Key): it is copied page by page into a new encrypted
// file beside it (SQLCipher's sqlcipher_export), the copy is checked
// (SQLite's quick check, and every table holds as many rows as in the
// original) and fsynced, and renamed over the original, and the directory
// fsynced. A failure or a crash before the rename leaves the database as
// it was (the next Encrypt removes what is left of the copy); after it,
// the database is encrypted. The database must not be open, here or in
// another process. Encrypting a database already encrypted with key
// does nothing; one encrypted with another key gives ErrWrongKey.
//
// The original's blocks are freed, not wiped: on the disk they may be
// readable until they are written over. Encrypt a device's database
// before it holds patients' charts where possible.
func Encrypt(ctx context.Context, path string, key []byte) (err error) {
	if key == nil {
		return fmt.Errorf("encrypt %s: %w: no key", path, ErrKeySize)
	}
	cfg := Config{Key: key}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("encrypt %s: %w", path, err)
	}
	if path == "" || strings.ContainsAny(path, "?#") {
		return fmt.Errorf("encrypt %q: path must be a plain file path", path)
	}
	k, err := kindOf(path)
	if err != nil {
		return fmt.Errorf("encrypt %s: %w", path, err)
	}
	switch k {
	case fileEmpty:
		return fmt.Errorf("encrypt %s: %w", path, os.ErrNotExist)
	case fileOther:
		// Encrypted already, or not a database: done if the key
		// reads it.
		if err := readsWith(ctx, path, cfg); err != nil {
			return fmt.Errorf("encrypt %s: %w", path, err)
		}
		return nil
	}
	tmp := path + ".encrypting"
	for _, p := range []string{tmp, tmp + "-journal"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("encrypt %s: remove an earlier copy: %w", path, err)
		}
	}
	out, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("encrypt %s: %w", path, err)
	}
	out.Close()
	defer func() {
		if err != nil {
			_ = os.Remove(tmp)
			_ = os.Remove(tmp + "-journal")
		}
	}()
	if err := export(ctx, path, tmp, cfg); err != nil {
		return fmt.Errorf("encrypt %s: %w", path, err)
	}
	// Closing the last connection moved the write-ahead log into the
	// file and removed it: the file alone is the database. A log left
	// (another connection has the database open) would be applied to the
	// encrypted file.
	if fi, err := os.Stat(path + "-wal"); err == nil && fi.Size() > 0 {
		return fmt.Errorf("encrypt %s: its write-ahead log is still in use: close every connection to it first", path)
	}
	if err := syncFile(tmp); err != nil {
		return fmt.Errorf("encrypt %s: %w", path, err)
	}
	for _, p := range []string{path + "-wal", path + "-shm"} {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("encrypt %s: %w", path, err)
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("encrypt %s: %w", path, err)
	}
	if err := syncFile(filepath.Dir(path)); err != nil {
		return fmt.Errorf("encrypt %s: sync directory: %w", path, err)
	}
	return nil
}

// export copies the database in clear at path into the empty file tmp,
// encrypted as cfg says, and checks the copy.
func export(ctx context.Context, path, tmp string, cfg Config) error {
	q := url.Values{}
	q.Set("mode", "rw") // never create path
	db, err := sql.Open(driverName, dsn(path, q))
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	var version int64
	if err := conn.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("read user version: %w", err)
	}
	if _, err := conn.ExecContext(ctx, `ATTACH DATABASE ? AS encrypted KEY "x'`+hex.EncodeToString(cfg.Key)+`'"`, tmp); err != nil {
		return fmt.Errorf("attach the copy: %w", err)
	}
	if _, err := conn.ExecContext(ctx, "SELECT sqlcipher_export('encrypted')"); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("PRAGMA encrypted.user_version = %d", version)); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	if _, err := conn.ExecContext(ctx, "DETACH DATABASE encrypted"); err != nil {
		return fmt.Errorf("detach the copy: %w", err)
	}
	counts, err := rowCounts(ctx, conn)
	if err != nil {
		return err
	}
	if err := conn.Close(); err != nil {
		return err
	}
	if err := db.Close(); err != nil {
		return err
	}
	return checkCopy(ctx, tmp, cfg, counts)
}

// checkCopy checks the database at path, opened with cfg: SQLite's quick
// check finds nothing, and its tables hold the rows counts says.
func checkCopy(ctx context.Context, path string, cfg Config, counts map[string]int64) error {
	q := url.Values{}
	q.Set("mode", "ro")
	db, err := sql.Open(driverName, cfg.dsn(path, q))
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("check the copy: %w", err)
	}
	defer conn.Close()
	var res string
	if err := conn.QueryRowContext(ctx, "PRAGMA quick_check(1)").Scan(&res); err != nil {
		return fmt.Errorf("check the copy: %w", err)
	}
	if res != "ok" {
		return fmt.Errorf("check the copy: %s", res)
	}
	got, err := rowCounts(ctx, conn)
	if err != nil {
		return fmt.Errorf("check the copy: %w", err)
	}
	for table, n := range counts {
		if got[table] != n {
			return fmt.Errorf("check the copy: table %s holds %d rows, the original %d", table, got[table], n)
		}
	}
	if len(got) != len(counts) {
		return fmt.Errorf("check the copy: %d tables, the original %d", len(got), len(counts))
	}
	return nil
}

// rowCounts returns the number of rows of each table of the main
// database of conn.
func rowCounts(ctx context.Context, conn *sql.Conn) (map[string]int64, error) {
	rows, err := conn.QueryContext(ctx, "SELECT name FROM main.sqlite_schema WHERE type = 'table'")
	if err != nil {
		return nil, fmt.Errorf("count rows: %w", err)
	}
	var tables []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			rows.Close()
			return nil, fmt.Errorf("count rows: %w", err)
		}
		tables = append(tables, name)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("count rows: %w", err)
	}
	counts := map[string]int64{}
	for _, t := range tables {
		var n int64
		if err := conn.QueryRowContext(ctx, `SELECT count(*) FROM main."`+strings.ReplaceAll(t, `"`, `""`)+`"`).Scan(&n); err != nil {
			return nil, fmt.Errorf("count rows of %s: %w", t, err)
		}
		counts[t] = n
	}
	return counts, nil
}

// readsWith reports, as an error, whether the database at path reads
// with cfg: ErrWrongKey when its key does not open it.
func readsWith(ctx context.Context, path string, cfg Config) error {
	q := url.Values{}
	q.Set("mode", "ro")
	db, err := sql.Open(driverName, cfg.dsn(path, q))
	if err != nil {
		return err
	}
	defer db.Close()
	var n int
	if err := db.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema").Scan(&n); err != nil {
		return cfg.keyError(path, err)
	}
	return nil
}

// syncFile fsyncs the file or directory at path.
func syncFile(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}
