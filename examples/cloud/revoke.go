package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"time"

	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/store"
	"github.com/chartsync/chartsync/replica/store/postgres"
	"github.com/chartsync/chartsync/replica/store/sqlite"
)

var revokeCommand = &command{
	name: "revoke",
	args: "[-dir DIR | -db URL] (-device NAME-OR-REPLICA | -authority FINGERPRINT-OR-KEYFILE)",
	help: "Revoke a device's enrolment: the cloud refuses its connections from then on (every node, within a second), and every replica the revocation reaches refuses its changes but those the cloud holds now. " +
		"With -authority, revoke a hub's enrolment authority (a stolen hub key): every replica the revocation reaches refuses every record the key signs but those the cloud holds now, and so the devices it enrols from then on.",
	flags: func(fs *flag.FlagSet) {
		fs.String("device", "", "the device's name, or its replica ID, as cloud devices lists them")
		fs.String("authority", "", "a hub's enrolment authority: its key file (the hub's authority key, or its public key in hex), its public key in hex, or its key's fingerprint (xxxx-xxxx-xxxx-xxxx) if a record the cloud holds names it")
	},
	run: revoke,
}

func revoke(ctx context.Context, fs *flag.FlagSet, at where, stdout, _ io.Writer) error {
	if fs.NArg() > 0 {
		return usagef("unexpected arguments %q", fs.Args())
	}
	name, authority := flagValue[string](fs, "device"), flagValue[string](fs, "authority")
	switch {
	case name != "" && authority != "":
		return usagef("-device and -authority revoke different things: give one")
	case authority != "":
		return revokeAuthority(ctx, at, authority, stdout)
	case name == "":
		return usagef("-device or -authority is required: the device's name or replica ID, or the hub authority's key file or fingerprint")
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
	// The revocation accepts the device's changes the cloud holds now,
	// and refuses anything else of it, wherever it turns up.
	accepted, err := heldChanges(ctx, at, found.Replica)
	if err != nil {
		return fmt.Errorf("read what the cloud holds of device %s: %w", found.Device, err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	signed, err := a.RevokeAccepting(found.Replica, found.Clinic, now, accepted)
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
	total := uint64(0)
	for _, n := range accepted {
		total += n
	}
	fmt.Fprintf(stdout, "Changes up to #N of this device are kept, N for each of its %d charts the cloud holds (%d changes in all); anything later it makes is refused by every replica the revocation reaches.\n",
		len(accepted), total)
	charts := slices.Sorted(maps.Keys(accepted))
	for i, c := range charts {
		if i == maxChartsListed {
			fmt.Fprintf(stdout, "  ... and %d more charts\n", len(charts)-i)
			break
		}
		fmt.Fprintf(stdout, "  chart %s: changes up to #%d of this device are kept\n", c, accepted[c])
	}
	return nil
}

// maxChartsListed bounds the charts revoke lists by name.
const maxChartsListed = 20

// heldChanges returns, per chart, the highest sequence number of the
// replica's changes the cloud's store holds (replica.ActorSeqs), read from
// the store beside a running server: SQLite in the data directory (none
// if the cloud never served), or the PostgreSQL database.
func heldChanges(ctx context.Context, at where, replicaID string) (map[string]uint64, error) {
	st, err := openCloudStore(ctx, at)
	if err != nil || st == nil {
		return map[string]uint64{}, err
	}
	defer st.Close()
	return replica.ActorSeqs(ctx, st, replicaID)
}

// openCloudStore opens the cloud's store beside a running server, to
// read: SQLite in the data directory (nil if the cloud never served), or
// the PostgreSQL database.
func openCloudStore(ctx context.Context, at where) (store.Store, error) {
	if at.DB != "" {
		return postgres.Open(ctx, at.DB, postgres.Config{Schema: at.Schema})
	}
	path := filepath.Join(at.Dir, fileReplica)
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	return sqlite.Open(ctx, path)
}
