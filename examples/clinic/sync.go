package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/internal/atomicfile"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/transport/httpsync"
)

// Files in the data directory for the cloud.
const (
	credentialFile = "credential.pem"    // the cloud's credential: certificate, relay enrolment, roster (no secret)
	identityFile   = "identity.key"      // the device's private keys (device.Identity), 0600; they never leave it
	requestFile    = "enrol-request.pem" // the device's enrolment request: public keys, signed
	sessionsFile   = "tls-sessions"      // TLS sessions to resume at the next sync, 0600: they are secrets
)

// credential reads the device's saved credential, if it has one, and adds
// the device's key to it.
func (a *app) credential() (*httpsync.Credential, error) {
	c, err := httpsync.ReadCredentialFile(a.path(credentialFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, errNotConnected
	}
	if err != nil {
		return nil, err
	}
	id, err := a.identity()
	if err != nil {
		return nil, err
	}
	return c.WithIdentity(id)
}

// identity loads the device's keys.
func (a *app) identity() (*device.Identity, error) {
	id, err := device.Load(a.path(identityFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, errNoIdentity
	}
	return id, err
}

// writeRequest writes the device's enrolment request to path.
func writeRequest(id *device.Identity, path string) error {
	return atomicfile.Write(path, id.RequestPEM(), atomicfile.Options{Perm: 0o600})
}

var (
	errNotConnected = errors.New("this device has no cloud credential")
	errNoIdentity   = errors.New("this device has no keys")
)

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
			if _, err := a.device(); err != nil {
				return err
			}
			id, err := a.identity()
			if err != nil {
				return err
			}
			c, err := httpsync.ReadCredentialFile(credPath)
			if err != nil {
				return err
			}
			// The credential must be for this device's own key: the
			// cloud issued it from this device's enrolment request.
			if _, err := c.WithIdentity(id); err != nil {
				return fmt.Errorf("%w. This credential is not for this device: give the administrator this device's request, %s, and connect with the credential made from it", err, a.path(requestFile))
			}
			if err := c.WriteFile(a.path(credentialFile)); err != nil {
				return err
			}
			// Sessions made with an earlier credential cannot be resumed
			// with this one.
			if err := os.Remove(a.path(sessionsFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return err
			}
			fmt.Fprintf(a.out, "Connected: this device syncs with %s as %s of clinic %s until %s.\n",
				c.CloudURL, c.Device.Name, c.Device.Clinic, c.Device.NotAfter.Local().Format(time.DateOnly))
			if len(c.Enrolment) > 0 {
				fmt.Fprintf(a.out, "The same keys are enrolled for relay bundles (enrolment authority %s).\n", device.Fingerprint(c.Authority))
			}
			fmt.Fprintln(a.out, "Next: clinic sync")
			return nil
		},
	})

	var reqOut string
	register(&command{
		name: "request", args: "[-out FILE]",
		help: "Write this device's enrolment request again (public keys only), for the cloud's administrator.",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&reqOut, "out", "", "where to write it (default enrol-request.pem in the data directory)")
		},
		run: func(ctx context.Context, a *app, fs *flag.FlagSet, args []string) error {
			d, err := a.device()
			if err != nil {
				return err
			}
			id, err := a.identity()
			if errors.Is(err, errNoIdentity) {
				// A device set up before it had keys: make them now.
				r, rerr := a.replica(ctx)
				if rerr != nil {
					return rerr
				}
				if id, err = newIdentity(a, r.ID(), d.Clinic); err != nil {
					return err
				}
				fmt.Fprintf(a.out, "Made this device's keys (%s).\n", a.path(identityFile))
			}
			if err != nil {
				return err
			}
			if reqOut == "" {
				reqOut = a.path(requestFile)
			}
			if err := writeRequest(id, reqOut); err != nil {
				return err
			}
			fmt.Fprintf(a.out, "Enrolment request written to %s (key fingerprint %s).\nGive it to the cloud's administrator; it holds no secret.\n", reqOut, device.Fingerprint(id.Public().SignKey))
			return nil
		},
	})

	var quiet, restored bool
	register(&command{
		name: "sync", help: "Send this device's changes to the cloud and fetch the clinic's charts (needs signal).\nNeeds someone logged in: the device's data is encrypted, and their session holds its key.",
		flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&quiet, "quiet", false, "no progress bar")
			fs.BoolVar(&restored, "cloud-restored", false, "the cloud was restored from a backup: forget what this device knew the cloud held, so this sync sends everything the cloud may have lost and fetches what this device lacks")
		},
		run: func(ctx context.Context, a *app, fs *flag.FlagSet, args []string) error {
			if _, err := a.credential(); err != nil {
				return err // not connected: said before asking for a login
			}
			r, err := a.replica(ctx)
			if err != nil {
				return err
			}
			if restored {
				c, err := a.credential()
				if err != nil {
					return err
				}
				if err := r.ResetPeer(ctx, c.CloudReplica); err != nil {
					return fmt.Errorf("forget the cloud's sync positions: %w", err)
				}
				fmt.Fprintln(a.out, "Forgot what the cloud held: this sync sends every change the cloud may lack (those it holds already are sent, then skipped).")
			}
			bar := &progressBar{w: a.out}
			var progress func(httpsync.Progress)
			if !quiet {
				progress = bar.show
			}
			rep, c, err := cloudSync(ctx, a, r, progress)
			bar.end()
			if errors.Is(err, httpsync.ErrCredentialRevoked) {
				return fmt.Errorf("this device has been revoked by the cloud's administrator and can no longer sync; nothing on it was deleted, and changes not yet synced stay on it. Contact the administrator: if the device is to sync again, they enrol it anew (clinic request writes the request to give them): %w", err)
			}
			var learnt *httpsync.LearntRevocationsError
			if errors.As(err, &learnt) {
				return fmt.Errorf("the cloud refused changes this device received from %d device(s) revoked by the cloud's administrator, made after their revocation; this device has now learnt of the revocation and will not send those changes again. Run clinic sync again to send this device's own work: %w", len(learnt.Devices), err)
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(a.out, "Synced with %s: %s sent, %d received (%s changed), %s in %s, %s.\n",
				c.CloudURL, plural(rep.ChangesSent, "change", "changes"), rep.ChangesApplied, plural(rep.Charts, "chart", "charts"),
				size(int64(rep.BytesSent+rep.BytesReceived)), plural(rep.RoundTrips, "round trip", "round trips"), rep.Duration.Round(time.Millisecond))
			if a.key == nil {
				fmt.Fprintln(a.out, "Warning: this device's data is NOT encrypted yet: log in now (clinic login -user USER-ID) to encrypt it.")
			}
			return nil
		},
	})
}

// cloudSync runs one sync of r with the cloud over HTTPS: the sync
// command's and the web app's. It returns the credential it synced with
// (nil if the device has none: errNotConnected or errNoIdentity). With
// the TLS sessions file, the next sync resumes this one's TLS session
// instead of making a full handshake (1.4 KB instead of 4.7 KB when there
// is nothing to sync). progress, if not nil, is called as the sync moves.
func cloudSync(ctx context.Context, a *app, r *replica.Replica, progress func(httpsync.Progress)) (httpsync.Report, *httpsync.Credential, error) {
	c, err := a.credential()
	if err != nil {
		return httpsync.Report{}, nil, err
	}
	cfg := httpsync.ClientConfig{Credential: c, MaxAttempts: 4, SessionFile: a.path(sessionsFile), Progress: progress,
		Logger: slog.New(slog.NewTextHandler(a.log, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	cl, err := httpsync.NewClient(r, cfg)
	if err != nil {
		return httpsync.Report{}, c, err
	}
	defer cl.Close()
	rep, err := cl.SyncReport(ctx)
	return rep, c, err
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

// newIdentity makes the device's keys for its replica and clinic and
// saves them (0600) in the data directory.
func newIdentity(a *app, replicaID, clinic string) (*device.Identity, error) {
	id, err := device.Generate(replicaID, clinic)
	if err != nil {
		return nil, err
	}
	if err := id.Save(a.path(identityFile)); err != nil {
		return nil, err
	}
	return id, nil
}
