package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/chartsync/chartsync/internal/atomicfile"
)

// An authorised system is an external system (a national health
// information exchange, a district DHIS2 mediator) that reads charts
// through the cloud's FHIR API (fhirapi.go) with a bearer token the
// operator issued with "cloud systems add". The token is 32 random bytes,
// base64url without padding; the cloud keeps only its SHA-256, so the
// token is shown once and cannot be read back from the state. A revoked
// system keeps its entry (the access log names its ID) and its token is
// refused from then on, on every node: each request looks its token up in
// the state.
type system struct {
	// Name is the operator's name for it: 1 to 64 letters, digits, ".",
	// "_" or "-", beginning with a letter or a digit.
	Name string `json:"name"`
	// ID is 32 random hex digits that name it in the access log (as its
	// "device").
	ID string `json:"id"`
	// TokenHash is the SHA-256 of its token.
	TokenHash [32]byte `json:"-"`
	// Added and Revoked are when it was added and revoked (zero: active).
	Added   time.Time `json:"added"`
	Revoked time.Time `json:"revoked,omitzero"`
}

// systemJSON is a system as the data directory keeps it.
type systemJSON struct {
	system
	TokenSHA256 string `json:"token_sha256"`
}

// systemStore keeps the authorised systems (state embeds it). The methods
// are safe for concurrent use, by goroutines and by processes.
type systemStore interface {
	// AddSystem keeps a new system, or returns an error matching
	// errSystemExists if an active system has its name.
	AddSystem(ctx context.Context, s system) error
	// RevokeSystem marks the active system called name revoked at at,
	// and returns it; errNoSystem if there is none.
	RevokeSystem(ctx context.Context, name string, at time.Time) (system, error)
	// Systems lists every system kept, revoked ones too, oldest first.
	Systems(ctx context.Context) ([]system, error)
	// SystemByToken returns the system (revoked or not) whose token has
	// the SHA-256 hash, comparing hashes in constant time; errNoSystem
	// if none has.
	SystemByToken(ctx context.Context, hash [32]byte) (system, error)
}

var (
	// errSystemExists: an active system already has the name.
	errSystemExists = errors.New("an active system already has this name (revoke it first, or choose another name)")
	// errNoSystem: no such system, or no system has the token.
	errNoSystem = errors.New("no such system")
	// errBadSystemName: the name is not one a system may have.
	errBadSystemName = errors.New("a system's name is 1 to 64 letters, digits, '.', '_' or '-', beginning with a letter or a digit")
)

var reSystemName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// tokenBytes is the length of a system's token before encoding.
const tokenBytes = 32

// tokenLen is the length of a token as text (base64url, no padding).
var tokenLen = base64.RawURLEncoding.EncodedLen(tokenBytes)

// newSystem makes a system called name, added at now, and its token.
func newSystem(name string, now time.Time) (system, string, error) {
	if !reSystemName.MatchString(name) {
		return system{}, "", fmt.Errorf("system name %q: %w", name, errBadSystemName)
	}
	var id [16]byte
	var tok [tokenBytes]byte
	rand.Read(id[:])
	rand.Read(tok[:])
	token := base64.RawURLEncoding.EncodeToString(tok[:])
	return system{Name: name, ID: hex.EncodeToString(id[:]), TokenHash: hashToken(token),
		Added: now.UTC().Truncate(time.Microsecond)}, token, nil
}

// hashToken is the hash a token is kept and looked up by.
func hashToken(token string) [32]byte { return sha256.Sum256([]byte(token)) }

// wellFormedToken reports whether token has the shape of a token
// newSystem makes, so that anything else is refused unlooked-up.
func wellFormedToken(token string) bool {
	if len(token) != tokenLen {
		return false
	}
	b, err := base64.RawURLEncoding.Strict().DecodeString(token)
	return err == nil && len(b) == tokenBytes
}

var systemsCommand = &command{
	name: "systems",
	args: "add -name NAME | list | revoke -name NAME  [-dir DIR | -db URL]",
	help: "Authorise external systems (a health information exchange, a DHIS2 mediator) to read charts through the FHIR API at /fhir:\nadd prints a new system's bearer token, once; list shows them; revoke refuses a token at once, on every node.",
	flags: func(fs *flag.FlagSet) {
		fs.String("name", "", "the system's name (add, revoke)")
	},
	run: systemsMain,
}

func systemsMain(ctx context.Context, fs *flag.FlagSet, at where, stdout, _ io.Writer) error {
	if fs.NArg() == 0 {
		return usagef("say what to do: add, list or revoke")
	}
	sub := fs.Arg(0)
	// The flags may follow the subcommand: read them again, and where
	// the state is with them.
	if err := fs.Parse(fs.Args()[1:]); err != nil {
		return usagef("%v", err)
	}
	if fs.NArg() > 0 {
		return usagef("unexpected arguments %q", fs.Args())
	}
	at = whereFrom(fs, at)
	name := flagValue[string](fs, "name")
	switch sub {
	case "add", "revoke":
		if name == "" {
			return usagef("-name is required")
		}
	case "list":
		if name != "" {
			return usagef("list takes no -name")
		}
	default:
		return usagef("there is no systems command %q: use add, list or revoke", sub)
	}
	st, err := openState(ctx, at)
	if err != nil {
		return err
	}
	defer st.Close()
	switch sub {
	case "add":
		s, token, err := newSystem(name, time.Now())
		if err != nil {
			return err
		}
		if err := st.AddSystem(ctx, s); err != nil {
			return err
		}
		url := "https://CLOUD"
		if in, err := st.Served(ctx); err == nil && in.URL != "" {
			url = in.URL
		}
		fmt.Fprintf(stdout, "Added system %s (ID %s). Its bearer token, shown this once and kept nowhere in the clear:\n\n%s\n\n", s.Name, s.ID, token)
		fmt.Fprintf(stdout, "Give it to the system's operator over a secure channel. It reads charts over HTTPS only:\n  curl -H \"Authorization: Bearer TOKEN\" '%s/fhir/Patient?identifier=SYSTEM|VALUE'\n", url)
		loc := "-dir " + at.Dir
		if at.DB != "" {
			loc = "-db DATABASE"
		}
		fmt.Fprintf(stdout, "Revoke it with: cloud systems revoke %s -name %s\n", loc, s.Name)
	case "revoke":
		s, err := st.RevokeSystem(ctx, name, time.Now())
		if errors.Is(err, errNoSystem) {
			return fmt.Errorf("no active system is called %q (cloud systems list shows them)", name)
		}
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "Revoked system %s (ID %s): its token is refused from now on.\n", s.Name, s.ID)
	case "list":
		list, err := st.Systems(ctx)
		if err != nil {
			return err
		}
		if len(list) == 0 {
			fmt.Fprintln(stdout, "No systems yet: cloud systems add -name NAME authorises one.")
			return nil
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tID\tADDED\tSTATUS")
		for _, s := range list {
			status := "active"
			if !s.Revoked.IsZero() {
				status = "revoked " + s.Revoked.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", s.Name, s.ID, s.Added.UTC().Format(time.RFC3339), status)
		}
		return tw.Flush()
	}
	return nil
}

// whereFrom reads where the state is from the common flags of fs, as run
// does, for a command that parsed them again.
func whereFrom(fs *flag.FlagSet, at where) where {
	at.Dir = fs.Lookup("dir").Value.String()
	at.DB = fs.Lookup("db").Value.String()
	at.Schema = fs.Lookup("db-schema").Value.String()
	at.KeyFile = fs.Lookup("key-file").Value.String()
	return at
}

// fileSystems is the systems file in the data directory: a JSON list,
// replaced atomically under the enrolment lock.
const fileSystems = "systems.json"

// maxSystemsFile bounds the systems file read.
const maxSystemsFile = 16 << 20

func (s fileState) readSystems() ([]systemJSON, error) {
	path := filepath.Join(s.dir, fileSystems)
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the systems: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxSystemsFile+1))
	if err != nil {
		return nil, fmt.Errorf("read the systems: %w", err)
	}
	if len(data) > maxSystemsFile {
		return nil, fmt.Errorf("read the systems: %s is over %d bytes", path, maxSystemsFile)
	}
	var list []systemJSON
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, fmt.Errorf("read the systems from %s: %w", path, err)
	}
	for i := range list {
		h, err := hex.DecodeString(list[i].TokenSHA256)
		if err != nil || len(h) != len(list[i].TokenHash) {
			return nil, fmt.Errorf("read the systems from %s: system %q has no token hash", path, list[i].Name)
		}
		copy(list[i].TokenHash[:], h)
	}
	return list, nil
}

func (s fileState) writeSystems(list []systemJSON) error {
	for i := range list {
		list[i].TokenSHA256 = hex.EncodeToString(list[i].TokenHash[:])
	}
	data, err := json.MarshalIndent(list, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(s.dir, fileSystems), append(data, '\n'), atomicfile.Options{Perm: 0o600}); err != nil {
		return fmt.Errorf("keep the systems: %w", err)
	}
	return nil
}

func (s fileState) AddSystem(_ context.Context, sys system) error {
	unlock, err := s.lock()
	if err != nil {
		return err
	}
	defer unlock()
	list, err := s.readSystems()
	if err != nil {
		return err
	}
	for _, o := range list {
		if o.Name == sys.Name && o.Revoked.IsZero() {
			return fmt.Errorf("add system %s: %w", sys.Name, errSystemExists)
		}
	}
	return s.writeSystems(append(list, systemJSON{system: sys}))
}

func (s fileState) RevokeSystem(_ context.Context, name string, at time.Time) (system, error) {
	unlock, err := s.lock()
	if err != nil {
		return system{}, err
	}
	defer unlock()
	list, err := s.readSystems()
	if err != nil {
		return system{}, err
	}
	for i := range list {
		if list[i].Name == name && list[i].Revoked.IsZero() {
			list[i].Revoked = at.UTC().Truncate(time.Microsecond)
			if err := s.writeSystems(list); err != nil {
				return system{}, err
			}
			return list[i].system, nil
		}
	}
	return system{}, fmt.Errorf("revoke system %s: %w", name, errNoSystem)
}

func (s fileState) Systems(context.Context) ([]system, error) {
	list, err := s.readSystems()
	if err != nil {
		return nil, err
	}
	out := make([]system, len(list))
	for i := range list {
		out[i] = list[i].system
	}
	return out, nil
}

// SystemByToken reads the systems file (a revocation made by another
// process counts at once) and compares the hash with every system's.
func (s fileState) SystemByToken(_ context.Context, hash [32]byte) (system, error) {
	list, err := s.readSystems()
	if err != nil {
		return system{}, err
	}
	found := -1
	for i := range list {
		if subtle.ConstantTimeCompare(hash[:], list[i].TokenHash[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		return system{}, errNoSystem
	}
	return list[found].system, nil
}

// pgSystemsTables are the systems' table in the database, made with the
// state's others (openPGState). At most one active system has a name.
const pgSystemsTables = `
	CREATE TABLE IF NOT EXISTS cloud_systems (
		seq          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
		name         text NOT NULL,
		id           text NOT NULL UNIQUE,
		token_sha256 bytea NOT NULL UNIQUE,
		added        timestamptz NOT NULL,
		revoked      timestamptz
	);
	CREATE UNIQUE INDEX IF NOT EXISTS cloud_systems_active ON cloud_systems(name) WHERE revoked IS NULL;`

func (s *pgState) AddSystem(ctx context.Context, sys system) error {
	_, err := s.pool.Exec(ctx, "INSERT INTO cloud_systems(name, id, token_sha256, added) VALUES ($1, $2, $3, $4)",
		sys.Name, sys.ID, sys.TokenHash[:], sys.Added)
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == "23505" && pe.ConstraintName == "cloud_systems_active" {
		return fmt.Errorf("add system %s: %w", sys.Name, errSystemExists)
	}
	if err != nil {
		return fmt.Errorf("add system %s: %w", sys.Name, err)
	}
	return nil
}

const pgSystemColumns = "name, id, token_sha256, added, revoked"

func scanSystem(row pgx.Row) (system, error) {
	var s system
	var hash []byte
	var revoked *time.Time
	if err := row.Scan(&s.Name, &s.ID, &hash, &s.Added, &revoked); err != nil {
		return system{}, err
	}
	if len(hash) != len(s.TokenHash) {
		return system{}, fmt.Errorf("system %q has no token hash", s.Name)
	}
	copy(s.TokenHash[:], hash)
	s.Added = s.Added.UTC()
	if revoked != nil {
		s.Revoked = revoked.UTC()
	}
	return s, nil
}

func (s *pgState) RevokeSystem(ctx context.Context, name string, at time.Time) (system, error) {
	row := s.pool.QueryRow(ctx, "UPDATE cloud_systems SET revoked = $2 WHERE name = $1 AND revoked IS NULL RETURNING "+pgSystemColumns,
		name, at.UTC().Truncate(time.Microsecond))
	sys, err := scanSystem(row)
	if errors.Is(err, pgx.ErrNoRows) {
		return system{}, fmt.Errorf("revoke system %s: %w", name, errNoSystem)
	}
	if err != nil {
		return system{}, fmt.Errorf("revoke system %s: %w", name, err)
	}
	return sys, nil
}

func (s *pgState) Systems(ctx context.Context) ([]system, error) {
	rows, err := s.pool.Query(ctx, "SELECT "+pgSystemColumns+" FROM cloud_systems ORDER BY seq")
	if err != nil {
		return nil, fmt.Errorf("read the systems: %w", err)
	}
	defer rows.Close()
	var out []system
	for rows.Next() {
		sys, err := scanSystem(rows)
		if err != nil {
			return nil, fmt.Errorf("read the systems: %w", err)
		}
		out = append(out, sys)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read the systems: %w", err)
	}
	return out, nil
}

// SystemByToken looks the hash up in the database (its index finds the
// row; timing reveals nothing of a token, as the lookup is by its hash)
// and compares it again in constant time.
func (s *pgState) SystemByToken(ctx context.Context, hash [32]byte) (system, error) {
	sys, err := scanSystem(s.pool.QueryRow(ctx, "SELECT "+pgSystemColumns+" FROM cloud_systems WHERE token_sha256 = $1", hash[:]))
	if errors.Is(err, pgx.ErrNoRows) {
		return system{}, errNoSystem
	}
	if err != nil {
		return system{}, fmt.Errorf("look up a system's token: %w", err)
	}
	if subtle.ConstantTimeCompare(hash[:], sys.TokenHash[:]) != 1 {
		return system{}, errNoSystem
	}
	return sys, nil
}
