package main

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/chartsync/chartsync/transport/file"
)

// The commands for syncing with no signal: a bundle file on a USB stick
// (transport/file), and relay bundles handed to a phone that carries them
// to the cloud (transport/relay). They share the web app's functions
// (exportFile, importFile, relayHandOff).
func init() {
	var exportTo string
	register(&command{
		name: "export-bundle", args: "-to FOLDER",
		help: "Write the changes the cloud lacks to a bundle file in a folder (a USB stick's), for another device to carry to the cloud.",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&exportTo, "to", "", "the folder to write the bundle file in, e.g. /media/usb/chartsync (required)")
		},
		run: func(ctx context.Context, a *app, fs *flag.FlagSet, args []string) error {
			if exportTo == "" {
				return usagef("-to is required: the folder to write the bundle in")
			}
			if len(args) > 0 {
				return usagef("unexpected %q", args[0])
			}
			r, err := a.replica(ctx)
			if err != nil {
				return err
			}
			ex, err := exportFile(ctx, a, r, exportTo)
			if err != nil {
				return fmt.Errorf("export a bundle to %s: %w", exportTo, err)
			}
			if !ex.Written {
				fmt.Fprintf(a.out, "Nothing new since the last export: %s already holds it.\n", ex.Path)
				return nil
			}
			fmt.Fprintf(a.out, "Wrote %s: %s, %s.\n", ex.Path, plural(ex.Changes, "change", "changes"), size(int64(ex.Bytes)))
			if !ex.Complete {
				fmt.Fprintln(a.out, "More changes wait: export again once the cloud's reply bundle has been imported here.")
			}
			return nil
		},
	})

	var importFrom string
	register(&command{
		name: "import-bundle", args: "-from FOLDER",
		help: "Apply the bundle files in a folder (a USB stick's) addressed to this device; refused files are named and nothing of them is applied.",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&importFrom, "from", "", "the folder holding the bundle files (required)")
		},
		run: func(ctx context.Context, a *app, fs *flag.FlagSet, args []string) error {
			if importFrom == "" {
				return usagef("-from is required: the folder holding the bundle files")
			}
			if len(args) > 0 {
				return usagef("unexpected %q", args[0])
			}
			r, err := a.replica(ctx)
			if err != nil {
				return err
			}
			im, err := importFile(ctx, r, importFrom)
			for _, f := range im.Files {
				switch {
				case errors.Is(f.Err, file.ErrReplayed):
					fmt.Fprintf(a.out, "Already imported %s: nothing in it is new, nothing changed.\n", f.Path)
				case f.Err != nil:
					fmt.Fprintf(a.out, "Refused %s: %v\n", f.Path, f.Err)
				}
			}
			if len(im.Files) == 0 && err == nil {
				fmt.Fprintf(a.out, "No bundle file for this device in %s.\n", importFrom)
				return nil
			}
			fmt.Fprintf(a.out, "Imported %s of %d: %s new, %s already here.\n", plural(im.Accepted, "bundle file", "bundle files"), len(im.Files),
				plural(im.Applied, "change", "changes"), plural(im.Duplicates, "change", "changes"))
			if err != nil {
				return fmt.Errorf("import bundles from %s: %w", importFrom, err)
			}
			return nil
		},
	})

	var phone string
	register(&command{
		name: "relay", args: "-phone FOLDER",
		help: "Hand relay bundles to a phone's folder, and take those it carries: sealed for the cloud, signed by this device, so the phone can read nothing.",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&phone, "phone", "", "the phone's relay folder, as mounted on this device (required)")
		},
		run: func(ctx context.Context, a *app, fs *flag.FlagSet, args []string) error {
			if phone == "" {
				return usagef("-phone is required: the phone's relay folder")
			}
			if len(args) > 0 {
				return usagef("unexpected %q", args[0])
			}
			r, err := a.replica(ctx)
			if err != nil {
				return err
			}
			h, err := relayHandOff(ctx, a, r, phone)
			for _, rj := range h.Refused {
				fmt.Fprintf(a.out, "Refused %s from the phone: %v\n", rj.Path, rj.Err)
			}
			fmt.Fprintf(a.out, "Handed %s to the phone (%s); took %s from it: %s new here.\n",
				plural(len(h.ToPhone.Carried), "bundle", "bundles"), size(h.ToPhone.Bytes()),
				plural(len(h.FromPhone.Carried), "bundle", "bundles"), plural(h.Stats.ChangesApplied, "change", "changes"))
			if n := len(h.ToPhone.Full); n > 0 {
				fmt.Fprintf(a.out, "The phone's folder is full: %s left for its next visit.\n", plural(n, "bundle", "bundles"))
			}
			if err != nil {
				return fmt.Errorf("relay hand-off with %s: %w", phone, err)
			}
			return nil
		},
	})
}
