package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	"github.com/chartsync/chartsync/device/login"
	"github.com/chartsync/chartsync/examples/clinic/web"
	"github.com/chartsync/chartsync/internal/dirlock"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
)

// demoPassword is every demo user's password.
const demoPassword = "demo-pass-1"

// demoRecoveryFile is the demo device's recovery key, kept in its data
// directory: a demo holds no real patient, and a real device's recovery
// key is kept off the device.
const demoRecoveryFile = "demo-recovery-key.txt"

// setUpDemo makes a demo device in an empty data directory: clinic
// "demo", a user of each role and a few patients, its data encrypted
// with a keyring that holds every demo user and a recovery key written
// beside it. A directory already set up is left as it is. The data is
// left locked: the web app's login opens it.
func setUpDemo(ctx context.Context, a *app) (err error) {
	if _, err := a.device(); err == nil {
		return nil
	}
	if err := os.MkdirAll(a.dir, 0o700); err != nil {
		return err
	}
	rcp, err := writeRecoveryIdentity(a.path(demoRecoveryFile), "recovery key of the demo device (a real device's is kept off the device)")
	if err != nil {
		return err
	}
	key, err := keyringConfig.Create(a.path(keyringFile), rcp, "u-admin", demoPassword)
	if err != nil {
		return err
	}
	a.key = key
	defer func() {
		if a.r != nil {
			if cerr := a.r.Close(); err == nil {
				err = cerr
			}
			a.r = nil
		}
		a.dropMemoryKey()
	}()
	if err := writeJSON(a.path("device.json"), deviceConfig{Clinic: "demo", Device: "demo-tablet", Created: time.Now().UTC()}); err != nil {
		return err
	}
	if _, err := newIdentity(a, replica.NewID(), "demo"); err != nil {
		return err
	}
	r, err := a.replica(ctx)
	if err != nil {
		return err
	}
	h, err := login.Hash(demoPassword, passwordParams)
	if err != nil {
		return err
	}
	admin := record.Author{UserID: "u-admin", Name: "Wairimu (admin)", Role: record.RoleAdministrator, Device: "demo-tablet"}
	users := []record.UserUpdate{
		{UserID: "u-admin", Name: "Wairimu (admin)", Role: record.RoleAdministrator},
		{UserID: "u-achieng", Name: "Nurse Achieng", Role: record.RoleNurse},
		{UserID: "u-mutua", Name: "Dr Mutua", Role: record.RoleClinician},
		{UserID: "u-kiprop", Name: "Kiprop (lab)", Role: record.RoleLabTechnician},
		{UserID: "u-njeri", Name: "Njeri (registration)", Role: record.RoleRegistrationClerk},
	}
	for _, u := range users {
		u.PasswordHash = h
		if _, err := r.UpdateUser(ctx, "demo", admin, u); err != nil {
			return err
		}
		if err := a.setKeyEntry(u.UserID, demoPassword); err != nil {
			return err
		}
	}
	dr := record.Author{UserID: "u-mutua", Name: "Dr Mutua", Role: record.RoleClinician, Device: "demo-tablet"}
	id, err := r.Register(ctx, dr, record.Register{GivenName: "Wanjiru", FamilyName: "Mwangi", Sex: "female", EstimatedBirthYear: 1988, Village: "Kamuga", Phone: "+254712345678", HomeClinic: "demo"})
	if err != nil {
		return err
	}
	for _, op := range []record.Op{
		record.AddAllergy{Substance: "penicillin", Severity: "severe", Reaction: "rash"},
		record.Diagnose{Text: "Malaria", Code: "B54", VerificationStatus: "confirmed"},
		record.Prescribe{Drug: "Artemether + lumefantrine", Dose: 4, DoseUnit: "tablet", Route: "oral", Frequency: "BD", DurationDays: 3},
		record.RecordLabResult{Test: "Haemoglobin", LOINC: "718-7", Value: record.Ptr(9.1), Unit: "g/dL", RefLow: record.Ptr(12.0), RefHigh: record.Ptr(16.0), CriticalLow: record.Ptr(7.0), SpecimenAt: time.Now()},
		record.AddEncounter{Complaint: "Fever for three days", Date: time.Now().Format(time.DateOnly), Vitals: record.Vitals{Temperature: 38.6, Pulse: 96}, Note: "Malaria RDT positive."},
	} {
		if _, err := r.Edit(ctx, id, dr, op); err != nil {
			return err
		}
	}
	for _, p := range []record.Register{
		{GivenName: "Otieno", FamilyName: "Odhiambo", Sex: "male", BirthDate: "2019-06-14", Village: "Gatundu", Guardian: "Akinyi Odhiambo", HomeClinic: "demo"},
		{GivenName: "Achieng", FamilyName: "Otieno", Sex: "female", EstimatedBirthYear: 1975, Village: "Kamuga", HomeClinic: "demo"},
	} {
		if _, err := r.Register(ctx, dr, p); err != nil {
			return err
		}
	}
	fmt.Fprintf(a.out, "Demo device set up in %s: log in as u-achieng (nurse), u-mutua (clinician), u-kiprop (lab), u-njeri (registration) or u-admin, password %s\n", a.dir, demoPassword)
	fmt.Fprintf(a.out, "Its data is encrypted; its recovery key is in %s (for the demo only: a real device's recovery key is kept off the device).\n", a.path(demoRecoveryFile))
	return nil
}

// newWebApp makes the web app of the device in a.dir, with cfg's
// timings. A device whose data is encrypted is opened by the web app's
// login (webUnlocker), and closed when no session remains; one whose
// data is in clear (made before the app encrypted data) is encrypted at
// its first login when a recovery key is known (device.json's, or the
// cloud's from the credential), and otherwise opened now, in clear, with
// a warning.
func newWebApp(ctx context.Context, a *app, cfg web.Config) (*web.Server, deviceConfig, error) {
	d, err := a.device()
	if err != nil {
		return nil, d, err
	}
	enc, err := a.encrypted()
	if err != nil {
		return nil, d, err
	}
	g, err := a.guard()
	if err != nil {
		return nil, d, err
	}
	var recovery string
	if !enc {
		// A device whose data is in clear: encrypted at the first
		// login, when a recovery key is known.
		if recovery, err = a.recoveryRecipient("", d); err != nil {
			return nil, d, err
		}
	}
	if enc || recovery != "" {
		// The data directory is this process's while it runs, open or
		// locked.
		if a.lock == nil {
			a.lock, err = dirlock.Acquire(a.dir)
		}
		if err != nil {
			if errors.Is(err, dirlock.ErrLocked) {
				return nil, d, fmt.Errorf("%w (another clinic command on this device's data, such as a sync, is still running)", err)
			}
			return nil, d, err
		}
		cfg.Unlocker = &webUnlocker{a: a, g: g, recovery: recovery}
	} else {
		if cfg.Replica, err = a.replica(ctx); err != nil {
			return nil, d, err
		}
		fmt.Fprintln(a.log, "Warning: this device's data is NOT encrypted, and no recovery key is known to encrypt it with. Connect the device to the cloud (clinic connect), or log in once with the command line (clinic login -user USER-ID -recovery age1…), to encrypt it.")
	}
	cfg.Clinic, cfg.Device, cfg.Guard, cfg.Sync = d.Clinic, d.Device, g, webSyncer{a}
	cfg.Logger = slog.New(slog.NewTextHandler(a.log, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg.SettingsFile, cfg.Folder = a.path(webSettingsFile), mediaFolder()
	srv, err := web.New(cfg)
	return srv, d, err
}

// loopback checks that addr listens on the loopback interface only.
func loopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return usagef("-addr %q: give a host and port, e.g. 127.0.0.1:8080", addr)
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return usagef("-addr %q: the app serves this device only: use 127.0.0.1 and a port, e.g. 127.0.0.1:8080", addr)
	}
	return nil
}

func init() {
	var addr string
	var idle time.Duration
	var demo bool
	var autoSync time.Duration
	register(&command{
		name: "serve", args: "[-addr 127.0.0.1:8080] [-idle 15m] [-autosync 5m] [-demo]",
		help: "Run the clinic app as a web app for this device's browser (on 127.0.0.1; no network needed).\nThe login page unlocks the device's encrypted data; the key stays in memory only, and is dropped when the last user logs out or is logged out after -idle. The background sync runs only while someone is logged in.",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&addr, "addr", "127.0.0.1:8080", "where to listen: 127.0.0.1 and a port (port 0: any free one)")
			fs.DurationVar(&idle, "idle", web.DefaultIdleTimeout, "log a user out after this long without use")
			fs.DurationVar(&autoSync, "autosync", web.DefaultAutoSync, "sync with the cloud in the background this often while it can be reached (0: only when asked)")
			fs.BoolVar(&demo, "demo", false, "in a data directory not yet set up: set up a demo clinic with users and patients first")
		},
		run: func(ctx context.Context, a *app, fs *flag.FlagSet, args []string) error {
			if len(args) > 0 {
				return usagef("unexpected %q", args[0])
			}
			if err := loopback(addr); err != nil {
				return err
			}
			if idle <= 0 {
				return usagef("-idle %s: give a duration such as 15m", idle)
			}
			if autoSync < 0 {
				return usagef("-autosync %s: give a duration such as 5m, or 0 to sync only when asked", autoSync)
			}
			if autoSync == 0 {
				autoSync = -1 // web.Config: negative is off
			}
			if demo {
				if err := setUpDemo(ctx, a); err != nil {
					return fmt.Errorf("set up the demo: %w", err)
				}
			}
			srv, d, err := newWebApp(ctx, a, web.Config{IdleTimeout: idle, AutoSync: autoSync})
			if err != nil {
				return err
			}
			defer srv.Close()
			if err := srv.Start(ctx); err != nil {
				return err
			}
			ln, err := net.Listen("tcp", addr)
			if err != nil {
				return fmt.Errorf("listen on %s: %w (is the app already running? try another -addr port)", addr, err)
			}
			hs := &http.Server{Handler: srv, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: time.Minute, IdleTimeout: 2 * time.Minute}
			fmt.Fprintf(a.out, "The clinic app of %s is at http://%s/ (open it in this device's browser; Ctrl-C stops it)\n", d.Device, ln.Addr())
			done := make(chan error, 1)
			go func() { done <- hs.Serve(ln) }()
			select {
			case err := <-done:
				return err
			case <-ctx.Done():
			}
			shut, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := hs.Shutdown(shut); err != nil {
				return err
			}
			<-done
			fmt.Fprintln(a.out, "Stopped.")
			return nil
		},
	})
}
