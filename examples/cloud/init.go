package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"

	"github.com/chartsync/chartsync/audit/pgaudit"
	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/store/postgres"
)

var initCommand = &command{
	name: "init",
	args: "[-dir DIR | -db URL -key-file FILE]",
	help: "Make the cloud's device CA, enrolment authority and identity; with -db, also the database's tables, and the operator key file if it does not exist.",
	run:  initCloud,
}

func initCloud(ctx context.Context, fs *flag.FlagSet, at where, stdout, _ io.Writer) error {
	if fs.NArg() > 0 {
		return usagef("unexpected arguments %q", fs.Args())
	}
	if at.DB != "" {
		if at.KeyFile == "" && os.Getenv(envKey) == "" {
			return usagef("-key-file is required with -db (or set %s): the operator key that seals the secrets in the database", envKey)
		}
		if at.KeyFile != "" {
			made, err := makeKeyFile(at.KeyFile)
			if err != nil {
				return err
			}
			if made {
				fmt.Fprintf(stdout, "Made the operator key %s. Keep it apart from the database and back it up: without it the cloud's secrets cannot be opened.\n", at.KeyFile)
			}
		}
	}
	st, err := openState(ctx, at)
	if err != nil {
		return err
	}
	defer st.Close()
	ca, created, err := st.DeviceCA(ctx)
	if err != nil {
		return err
	}
	say := map[bool]string{true: "Made", false: "Found"}
	fmt.Fprintf(stdout, "%s the device CA in %s (it expires %s).\n", say[created], at.describe(dirCA), ca.Cert.NotAfter.UTC().Format("2006-01-02"))
	a, created, err := st.Authority(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s the enrolment authority (fingerprint %s).\n", say[created], device.Fingerprint(a.PublicKey()))
	if at.DB == "" {
		return nil
	}
	id, created, err := st.Identity(ctx, replica.NewID())
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s the cloud's identity: replica %s, key fingerprint %s.\n", say[created], id.ReplicaID(), device.Fingerprint(id.Public().SignKey))
	store, err := postgres.Open(ctx, at.DB, postgres.Config{Schema: at.Schema})
	if err != nil {
		return err
	}
	if err := store.Close(); err != nil {
		return err
	}
	log, err := pgaudit.Open(ctx, at.DB, pgaudit.Config{Schema: at.Schema})
	if err != nil {
		return err
	}
	log.Close()
	fmt.Fprintln(stdout, "The database is ready: start any number of nodes with cloud serve -db (the same URL and operator key).")
	return nil
}

// makeKeyFile writes a new operator key to path (0600) unless a file is
// there, and reports whether it did.
func makeKeyFile(path string) (bool, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		_, err := loadOperatorKey(path)
		return false, err
	}
	if err != nil {
		return false, fmt.Errorf("operator key: %w", err)
	}
	_, text := newOperatorKey()
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		os.Remove(path)
		return false, fmt.Errorf("operator key: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(path)
		return false, fmt.Errorf("operator key: %w", err)
	}
	return true, f.Close()
}
