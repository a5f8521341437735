// Command cloud serves a cloud replica to enrolled clinic devices over
// HTTPS with mutual TLS, and enrols devices. Everything lives in one data
// directory (-dir): the replica (cloud.db, SQLite), the device CA and the
// enrolment authority key that signs relay enrolments (ca/), the
// development server certificate (tls/), the relay roster of enrolled
// devices (roster), a list of enrolments (devices.jsonl) and the access
// log (access.log: who read or wrote which chart; "cloud audit" exports it).
//
// A device is enrolled from the request it made (clinic init writes it):
// the request holds the device's public keys and proves it holds the
// private ones, which never leave it. The credential enrol writes is the
// device's certificate for its own key, its relay enrolment and the
// roster: nothing secret.
//
//	go run ./examples/cloud serve -dir cloud-data -addr 127.0.0.1:8443 -dev-cert
//	go run ./examples/cloud enrol -dir cloud-data -request tablet/enrol-request.pem -device kamuga-tablet-1 -out kamuga-tablet-1.pem
//	go run ./examples/cloud devices -dir cloud-data
//	go run ./examples/cloud audit -dir cloud-data -chart CHART-ID
//
// With -db postgres://... (or $CHARTSYNC_CLOUD_DB) the cloud lives in a
// PostgreSQL database instead, for any number of nodes: the replica on the
// PostgreSQL store, the access log as rows of one hash chain (package
// audit/pgaudit), and the CA, authority, the cloud's identity (which
// names the replica every node serves), roster and enrolments in tables
// of their own. The secrets among them are sealed (XChaCha20-Poly1305)
// with the operator key, given as -key-file or $CHARTSYNC_CLOUD_KEY and
// never stored in the database; cloud init makes the key file and the
// tables:
//
//	go run ./examples/cloud init -db postgres://... -key-file operator.key
//	go run ./examples/cloud serve -db postgres://... -key-file operator.key -addr 127.0.0.1:8443 -dev-cert
//	go run ./examples/cloud serve -db postgres://... -key-file operator.key -addr 127.0.0.1:8444 -dev-cert
//	go run ./examples/cloud revoke -db postgres://... -key-file operator.key -device kamuga-tablet-1
//
// The authority key and the cloud's key pair go to and from the
// database as bytes (device.Authority.MarshalBinary, ParseAuthority,
// Identity.MarshalBinary, ParseIdentity), sealed in memory: no file holds
// them in the clear.
//
// A database cloud is backed up with pg_dump, which copies it as one
// consistent snapshot while the nodes serve (--schema=SCHEMA with
// -db-schema), and restored with pg_restore into a fresh database, where
// nodes start with the same operator key. Keep the key file apart from
// the dumps: a dump without it cannot serve (the sealed secrets do not
// open), and a key kept beside its dumps opens every secret in them.
//
//	pg_dump --format=custom --file=cloud.dump "postgres://.../cloud"
//	createdb cloud_restored
//	pg_restore --exit-on-error --no-owner --dbname="postgres://.../cloud_restored" cloud.dump
//	go run ./examples/cloud serve -db "postgres://.../cloud_restored" -key-file operator.key -addr 127.0.0.1:8443 -dev-cert
//
// The restored cloud is the cloud as it was at the dump, under the same
// identity and CA, so the devices' credentials still work; whatever the
// state took in since is gone: revoke again the devices and systems
// revoked since, enrol again the devices enrolled since. The devices
// that synced after the dump hold changes the restored cloud lacks, and
// sync positions past its log. Each must forget its positions for the
// cloud (replica.ResetPeer, as for any peer restored from a backup)
// before it syncs with the restored cloud: it then sends everything the
// cloud lacks and receives everything it lacks. A device that does not
// syncs without an error but never sends again the changes the cloud
// lost, and misses what the restored cloud takes in at log positions it
// had passed (TestBackupAndRestore shows both). The clinic app has no
// command for this yet.
//
// cloud import takes the bundle files a clinic's USB stick carries
// (written by the clinic's export-bundle) as an HTTPS sync would: each
// file addressed to the cloud is authenticated by its device's signature
// over the bundle, then checked and recorded by the same gate as a sync
// (package replica/gate: the device's clinic's scope, its authors'
// roles and signatures, its revocation; the writes, and a refusal with
// the code HTTPS would answer, in the access log), and a reply file for
// each accepted device is written beside it, carrying its clinic's
// charts it lacks (recorded as reads) for the clinic's import-bundle.
// With -dir it needs the data directory to itself (stop serve first);
// with -db it runs beside the nodes:
//
//	go run ./examples/cloud import -dir cloud-data -from /media/usb/chartsync
//
// cloud revoke revokes a device: the node refuses its TLS handshake
// (full or resumed) and every request it makes, so it can neither send
// changes nor read its clinic's charts. Each node looks at the kept
// roster whenever a device connects or makes a request: with -dir (one
// node) the revocation takes effect at the device's next connection;
// with -db, within revocationRefresh (a second) on every node.
//
// Every node seals the TLS session tickets it gives devices with keys
// kept in the state (DIR/ca/ticket.keys, or sealed with the operator key
// in the database), a new one every day, each kept a week after it stops
// sealing: a device resumes its session with any node, and with a
// restarted one.
//
// The same HTTPS listener serves a read-only FHIR R4 API to authorised
// systems (a national health information exchange, a district DHIS2
// mediator): GET /fhir/metadata (the CapabilityStatement),
// /fhir/Patient?identifier=SYSTEM|VALUE&name=NAME (a searchset of at
// most 50 Patients a page, with the total), /fhir/Patient/ID and
// /fhir/Patient/ID/$everything (the chart's export, package
// record/fhir). A system needs no device certificate: it sends
// Authorization: Bearer TOKEN, a token the operator issues with
// "cloud systems add -name NAME" (printed once; the state keeps its
// SHA-256 only) and revokes with "cloud systems revoke -name NAME",
// refused from the next request on, on every node. Every request is in
// the access log, under the system's ID as the device and its name as
// the user; "cloud systems list" shows the IDs.
//
//	go run ./examples/cloud systems add -dir cloud-data -name national-hie
//	curl --cacert cloud-data/ca/ca.crt -H "Authorization: Bearer $TOKEN" \
//	    'https://127.0.0.1:8443/fhir/Patient?identifier=https://healthid.ndhm.gov.in|12345678901234'
//
// serve logs one structured line per sync (log/slog; -json for JSON
// lines), each with a request_id that an error answer also gives the
// device, and, on SIGINT or SIGTERM, stops taking new syncs and lets
// those in flight finish. With -ops 127.0.0.1:PORT it serves the
// operator's endpoints on a listener of their own, never on the devices'
// TLS port: GET /healthz (the process serves), GET /readyz (the database
// answers and its schema is migrated, or the SQLite replica is open; 503
// once shutting down) and GET /metrics (Prometheus: chartsync_syncs_total
// by result, chartsync_sync_bundle_bytes_total and
// chartsync_sync_changes_total by direction,
// chartsync_sync_duration_seconds, chartsync_quarantined_bundles,
// chartsync_revoked_refusals_total, syncs in progress and waiting, the
// database pool's chartsync_db_pool_* with -db, and the Go runtime's and
// process's own).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// command is one subcommand.
type command struct {
	name, args, help string
	run              func(ctx context.Context, fs *flag.FlagSet, at where, stdout, stderr io.Writer) error
	flags            func(fs *flag.FlagSet)
}

var commands = []*command{initCommand, serveCommand, importCommand, enrolCommand, revokeCommand, devicesCommand, systemsCommand, referCommand, restoredCommand, recipientCommand, auditCommand}

// where is where the cloud keeps its data: a data directory, or a
// PostgreSQL database (DB set) whose secrets the operator key seals.
type where struct {
	Dir     string
	DB      string // a PostgreSQL connection string; "" for the data directory
	Schema  string // the database schema, "" for the connection's search_path
	KeyFile string // the operator key's file; "" for $CHARTSYNC_CLOUD_KEY
}

// openState opens the cloud's state where it is kept.
func openState(ctx context.Context, at where) (state, error) {
	if at.DB == "" {
		return openFileState(at.Dir)
	}
	key, err := loadOperatorKey(at.KeyFile)
	if err != nil {
		return nil, err
	}
	return openPGState(ctx, at.DB, at.Schema, key)
}

// usageError is a mistake on the command line: the usage is printed.
type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// run executes one command line and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		w := stderr
		if len(args) > 0 {
			w = stdout
		}
		usage(w)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	var c *command
	for _, cc := range commands {
		if cc.name == args[0] || (args[0] == "enroll" && cc.name == "enrol") {
			c = cc
		}
	}
	if c == nil {
		fmt.Fprintf(stderr, "cloud: there is no command %q.\n\n", args[0])
		usage(stderr)
		return 2
	}
	fs := flag.NewFlagSet("cloud "+c.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", envOr("CHARTSYNC_CLOUD_DIR", "cloud-data"), "the cloud's data directory (or $CHARTSYNC_CLOUD_DIR)")
	var at where
	fs.StringVar(&at.DB, "db", os.Getenv("CHARTSYNC_CLOUD_DB"), "a PostgreSQL database (postgres://...) that keeps the cloud, for several nodes, instead of -dir (or $CHARTSYNC_CLOUD_DB)")
	fs.StringVar(&at.Schema, "db-schema", "", "the schema of -db that holds the cloud's tables (default: the connection's search_path)")
	fs.StringVar(&at.KeyFile, "key-file", "", "with -db: the operator key that seals the secrets in the database (default: $"+envKey+")")
	if c.flags != nil {
		c.flags(fs)
	}
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: cloud %s %s\n\n%s\n\n", c.name, c.args, c.help)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args[1:]); err != nil {
		return 2
	}
	at.Dir = *dir
	err := c.run(ctx, fs, at, stdout, stderr)
	var ue usageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "cloud %s: %s\n\n", c.name, ue.msg)
		fs.Usage()
		return 2
	default:
		fmt.Fprintf(stderr, "cloud %s: %v\n", c.name, err)
		return 1
	}
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "cloud serves a chartsync cloud replica to enrolled clinic devices over HTTPS.\n\nCommands:\n")
	for _, c := range commands {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.help)
	}
	fmt.Fprintf(w, "\nStart with: cloud serve -dir cloud-data -dev-cert\nRun \"cloud COMMAND -h\" for a command's flags.\n")
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

// describe names where the thing at path in the data directory is kept.
func (at where) describe(path string) string {
	if at.DB != "" {
		return "the database (sealed with the operator key)"
	}
	return filepath.Join(at.Dir, path)
}
