package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/chartsync/chartsync/transport/httpsync"
)

const credentialFile = "credential.pem"

// credential reads the device's saved credential, if it has one.
func (a *app) credential() (*httpsync.Credential, error) {
	c, err := httpsync.ReadCredentialFile(a.path(credentialFile))
	if err != nil && strings.Contains(err.Error(), "no such file") {
		return nil, errNotConnected
	}
	return c, err
}

var errNotConnected = errors.New("this device has no cloud credential")

func init() {
	var credPath string
	register(&command{
		name: "connect", args: "-credential FILE",
		help: "Store the credential the cloud's administrator made for this device, so it can sync.",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&credPath, "credential", "", "the credential file from \"cloud enrol\" (required)")
		},
		run: func(ctx context.Context, a *app, fs *flag.FlagSet, args []string) error {
			if credPath == "" {
				return usagef("-credential is required")
			}
			d, err := a.device()
			if err != nil {
				return err
			}
			r, err := a.replica(ctx)
			if err != nil {
				return err
			}
			c, err := httpsync.ReadCredentialFile(credPath)
			if err != nil {
				return err
			}
			if c.Device.Replica != r.ID() {
				return fmt.Errorf("the credential is for replica %s, but this device is %s: ask the administrator to run \"cloud enrol ... -replica %s\"", c.Device.Replica, r.ID(), r.ID())
			}
			if c.Device.Clinic != d.Clinic {
				return fmt.Errorf("the credential is for clinic %s, but this device belongs to %s: ask the administrator for a credential of clinic %s", c.Device.Clinic, d.Clinic, d.Clinic)
			}
			if err := c.WriteFile(a.path(credentialFile)); err != nil {
				return err
			}
			fmt.Fprintf(a.out, "Connected: this device syncs with %s as %s of clinic %s until %s.\nNext: clinic sync\n",
				c.CloudURL, c.Device.Name, c.Device.Clinic, c.Device.NotAfter.Local().Format(time.DateOnly))
			return nil
		},
	})

	var quiet bool
	register(&command{
		name: "sync", help: "Send this device's changes to the cloud and fetch the clinic's charts (needs signal).",
		flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&quiet, "quiet", false, "no progress bar")
		},
		run: func(ctx context.Context, a *app, fs *flag.FlagSet, args []string) error {
			r, err := a.replica(ctx)
			if err != nil {
				return err
			}
			c, err := a.credential()
			if err != nil {
				return err
			}
			bar := &progressBar{w: a.out}
			cfg := httpsync.ClientConfig{Credential: c, MaxAttempts: 4}
			if !quiet {
				cfg.Progress = bar.show
			}
			cl, err := httpsync.NewClient(r, cfg)
			if err != nil {
				return err
			}
			defer cl.Close()
			rep, err := cl.SyncReport(ctx)
			bar.end()
			if err != nil {
				return err
			}
			fmt.Fprintf(a.out, "Synced with %s: %d changes sent, %d received (%d charts changed), %s in %d round trip(s), %s.\n",
				c.CloudURL, rep.ChangesSent, rep.ChangesApplied, rep.Charts, size(int64(rep.BytesSent+rep.BytesReceived)), rep.RoundTrips, rep.Duration.Round(time.Millisecond))
			return nil
		},
	})
}

// progressBar draws a sync's progress on one terminal line.
type progressBar struct {
	w     io.Writer
	drawn bool
}

func (b *progressBar) show(p httpsync.Progress) {
	const width = 30
	// Small syncs finish at once: draw only for large transfers, retries,
	// or once a bar is up.
	if !b.drawn && p.Total < 256<<10 && p.Phase != httpsync.PhaseRetrying {
		return
	}
	line := fmt.Sprintf("%-9s round %d", p.Phase, p.Round)
	if p.Total > 0 {
		n := int(int64(width) * p.Done / p.Total)
		line += fmt.Sprintf(" [%s%s] %s/%s", strings.Repeat("#", n), strings.Repeat(".", width-n), size(p.Done), size(p.Total))
	} else if p.Done > 0 {
		line += " " + size(p.Done)
	}
	if p.Phase == httpsync.PhaseRetrying {
		line += fmt.Sprintf(" (link dropped; retry %d in %s)", p.Retries, p.RetryIn.Round(time.Second))
	}
	fmt.Fprintf(b.w, "\r%-80s", line)
	b.drawn = true
}

func (b *progressBar) end() {
	if b.drawn {
		fmt.Fprintln(b.w)
	}
}

func size(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}
