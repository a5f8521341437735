package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strings"

	"github.com/chartsync/chartsync/record"
)

var referCommand = &command{
	name: "refer",
	args: "-db URL -chart ID -to CLINIC -user ID -name NAME [-reason TEXT]",
	help: "Refer a patient's chart to another clinic from the district office: the referral is the cloud's own edit, signed by the cloud's identity,\nand the clinic's devices receive the chart at their next sync. Needs -db (the cloud's identity lives in the database); nodes may go on serving.",
	flags: func(fs *flag.FlagSet) {
		fs.String("chart", "", "the chart's ID (required)")
		fs.String("to", "", "the clinic to share the chart with (required)")
		fs.String("reason", "", "why the patient is referred")
		fs.String("user", "", "the district clinician's user ID, recorded as the referral's author (required)")
		fs.String("name", "", "the district clinician's name (required)")
	},
	run: refer,
}

// refer makes a referral as the cloud: an edit by a clinician at the
// district office, signed by the cloud's identity, that every device
// accepts as it accepts a clinic's own.
func refer(ctx context.Context, fs *flag.FlagSet, at where, stdout, stderr io.Writer) error {
	if fs.NArg() > 0 {
		return usagef("unexpected arguments %q", fs.Args())
	}
	chart, to := flagValue[string](fs, "chart"), flagValue[string](fs, "to")
	user, name := flagValue[string](fs, "user"), flagValue[string](fs, "name")
	for _, f := range []struct{ flag, v string }{{"chart", chart}, {"to", to}, {"user", user}, {"name", name}} {
		if strings.TrimSpace(f.v) == "" {
			return usagef("-%s is required", f.flag)
		}
	}
	if at.DB == "" {
		return errors.New("refer needs -db: the cloud signs its own edits with the identity kept in its database, which a data directory cloud has not (run it with -db postgres://…)")
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
	author := record.Author{UserID: user, Name: name, Role: record.RoleClinician, Device: "cloud"}
	res, err := rep.Edit(ctx, chart, author, record.Refer{ToClinic: to, Reason: flagValue[string](fs, "reason")})
	if err != nil {
		return fmt.Errorf("refer chart %s to %s: %w", chart, to, err)
	}
	fmt.Fprintf(stdout, "Referred chart %s to %s (entry %s), signed by the cloud's identity %s; %s's devices receive it at their next sync.\n", chart, to, res.EntryID, rep.ID(), to)
	return nil
}
