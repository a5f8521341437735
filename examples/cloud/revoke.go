package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"
)

var revokeCommand = &command{
	name: "revoke",
	args: "[-dir DIR | -db URL] -device NAME-OR-REPLICA",
	help: "Revoke a device's enrolment: the cloud refuses its connections and its changes from then on (every node, within a second).",
	flags: func(fs *flag.FlagSet) {
		fs.String("device", "", "the device's name, or its replica ID, as cloud devices lists them")
	},
	run: revoke,
}

func revoke(ctx context.Context, fs *flag.FlagSet, at where, stdout, _ io.Writer) error {
	if fs.NArg() > 0 {
		return usagef("unexpected arguments %q", fs.Args())
	}
	name := flagValue[string](fs, "device")
	if name == "" {
		return usagef("-device is required: the device's name or replica ID")
	}
	st, err := openState(ctx, at)
	if err != nil {
		return err
	}
	defer st.Close()
	list, err := st.Enrolments(ctx)
	if err != nil {
		return err
	}
	// The device's last enrolment, unless a revocation followed it.
	var found *enrolment
	for i := range list {
		e := &list[i]
		switch {
		case e.Revoked.IsZero() && (e.Device == name || e.Replica == name):
			found = e
		case !e.Revoked.IsZero() && found != nil && e.Replica == found.Replica:
			found = nil
		}
	}
	if found == nil {
		return fmt.Errorf("no device %q is enrolled here (cloud devices lists them)", name)
	}
	a, _, err := st.Authority(ctx)
	if err != nil {
		return err
	}
	now := time.Now().UTC().Truncate(time.Second)
	signed, err := a.Revoke(found.Replica, found.Clinic, now)
	if err != nil {
		return err
	}
	if err := st.AddToRoster(ctx, signed); err != nil {
		return err
	}
	if err := st.RecordEnrolment(ctx, enrolment{Device: found.Device, Clinic: found.Clinic, Replica: found.Replica, Key: found.Key,
		Issued: now, NotAfter: found.NotAfter, Revoked: now}); err != nil {
		return fmt.Errorf("the revocation is in the roster, but recording it in the list failed: %w", err)
	}
	fmt.Fprintf(stdout, "Revoked device %s of clinic %s (replica %s). The cloud refuses its connections and its changes from now on; devices learn of it with their next roster.\n",
		found.Device, found.Clinic, found.Replica)
	return nil
}
