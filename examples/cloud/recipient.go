package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/replica"
)

var recipientCommand = &command{
	name: "recipient",
	args: "[-dir DIR | -db URL]",
	help: "Print the cloud's age recipient (age1…): give it to clinic init -recovery, so that the cloud's identity file opens a device whose every password is lost\n(clinic unlock-recovery -identity). It is a public key: it may be sent by any means.",
	run:  recipient,
}

// recipient prints the age recipient of the cloud's key pair.
func recipient(ctx context.Context, fs *flag.FlagSet, at where, stdout, _ io.Writer) error {
	if fs.NArg() > 0 {
		return usagef("unexpected arguments %q", fs.Args())
	}
	var id *device.Identity
	if at.DB == "" {
		// Never made here: the key pair is made for the cloud's replica
		// at its first enrolment.
		var err error
		id, err = device.Load(filepath.Join(at.Dir, dirCA, fileIdentity))
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("the cloud in %s has no key pair yet: it is made when the first device is enrolled (cloud enrol); enrol one, then ask again", at.Dir)
		}
		if err != nil {
			return err
		}
	} else {
		st, err := openState(ctx, at)
		if err != nil {
			return err
		}
		defer st.Close()
		if id, _, err = st.Identity(ctx, replica.NewID()); err != nil {
			return err
		}
	}
	r, err := id.Public().Recipient()
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, r.String())
	return nil
}
