package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/chartsync/chartsync/audit"
	"github.com/chartsync/chartsync/audit/pgaudit"
)

// fileAccess is the access log: every chart a device read or wrote, and
// every bundle refused, in a SHA-256 chain (package audit).
const fileAccess = "access.log"

var auditCommand = &command{
	name: "audit",
	args: "[-dir DIR] [-chart ID] [-device REPLICA] [-user USER-ID] [-since 2026-01-02] [-csv]",
	help: "Export the access log (who read or wrote which chart, and refused bundles) after checking its chain.\nWorks while serve runs: it reads a copy.",
	flags: func(fs *flag.FlagSet) {
		fs.String("chart", "", "only this chart")
		fs.String("device", "", "only this device (replica ID)")
		fs.String("user", "", "only changes by this user")
		fs.String("since", "", "only from this date (YYYY-MM-DD, UTC)")
		fs.Bool("csv", false, "CSV with a header row instead of JSON lines")
	},
	run: func(ctx context.Context, fs *flag.FlagSet, at where, stdout, stderr io.Writer) error {
		dir := at.Dir
		f := audit.Filter{Chart: flagValue[string](fs, "chart"), Device: flagValue[string](fs, "device"), User: flagValue[string](fs, "user")}
		if s := flagValue[string](fs, "since"); s != "" {
			t, err := time.Parse(time.DateOnly, s)
			if err != nil {
				return usagef("-since %q: use YYYY-MM-DD", s)
			}
			f.Since = t
		}
		format := audit.JSONLines
		if flagValue[bool](fs, "csv") {
			format = audit.CSV
		}
		if at.DB != "" {
			log, err := pgaudit.Open(ctx, at.DB, pgaudit.Config{Schema: at.Schema})
			if err != nil {
				return err
			}
			defer log.Close()
			n, err := log.Export(ctx, stdout, f, format)
			if errors.Is(err, audit.ErrCorrupt) {
				return fmt.Errorf("%w: the access log in the database was altered or damaged; keep a dump of it as evidence", err)
			}
			if err != nil {
				return err
			}
			seq, head, err := log.Head(ctx)
			if err != nil {
				return err
			}
			fmt.Fprintf(stderr, "%d of %d entries; chain verified, head %s (keep this to compare with later copies).\n", n, seq, head)
			return nil
		}
		path := filepath.Join(dir, fileAccess)
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("%s has no access log yet: serve writes it once devices sync", dir)
		}
		// serve holds the log open: read a copy. A line being written
		// as it is copied is cut off by Open, as after a crash.
		tmp, err := os.MkdirTemp("", "cloud-audit-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(tmp)
		cp := filepath.Join(tmp, fileAccess)
		if err := copyFile(path, cp); err != nil {
			return err
		}
		log, err := audit.Open(cp, audit.Config{})
		if errors.Is(err, audit.ErrCorrupt) {
			return fmt.Errorf("%w: the access log was altered or damaged; keep the file as evidence and restore the log from a backup", err)
		}
		if err != nil {
			return err
		}
		defer log.Close()
		n, err := log.Export(ctx, stdout, f, format)
		if err != nil {
			return err
		}
		seq, head := log.Head()
		fmt.Fprintf(stderr, "%d of %d entries; chain verified, head %s (keep this to compare with later copies).\n", n, seq, head)
		return nil
	},
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
