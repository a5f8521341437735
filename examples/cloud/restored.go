package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
)

var restoredCommand = &command{
	name: "restored",
	args: "[-dir DIR | -db URL]",
	help: "Tell a cloud restored in place from a backup that it was: it names its log anew, so that every device sends it again, at its next sync,\nwhat the backup lacks, and takes its log from the start. Run it once, with no node serving, on a data directory copied back from a backup.\nA database restored with pg_restore into a new database or schema needs it not (the cloud tells by itself); one restored over the same database does.",
	run:  restored,
}

// restored names the cloud's log anew (replica.Replica.NewLogEpoch).
func restored(ctx context.Context, fs *flag.FlagSet, at where, stdout, stderr io.Writer) error {
	if fs.NArg() > 0 {
		return usagef("unexpected arguments %q", fs.Args())
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	st, err := openState(ctx, at)
	if err != nil {
		return err
	}
	defer st.Close()
	_, rep, access, _, err := openCloud(ctx, at, st, log)
	if err != nil {
		return err
	}
	defer rep.Close()
	defer access.Close()
	old := rep.LogEpoch()
	if err := rep.NewLogEpoch(ctx); err != nil {
		return fmt.Errorf("%w (nothing was changed; run restored again)", err)
	}
	fmt.Fprintf(stdout, "The cloud's log is named anew (epoch %d, was %d). At their next sync, devices send it again what the backup lacks; start the cloud now.\n", rep.LogEpoch(), old)
	return nil
}
