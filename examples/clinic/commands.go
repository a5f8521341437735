package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/examples/internal/chartfmt"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
)

// optFloat is a float flag that knows whether it was given.
type optFloat struct{ v *float64 }

func (o *optFloat) String() string {
	if o == nil || o.v == nil {
		return ""
	}
	return strconv.FormatFloat(*o.v, 'g', -1, 64)
}

// Get returns the value, 0 when not given.
func (o *optFloat) Get() any {
	if o == nil || o.v == nil {
		return float64(0)
	}
	return *o.v
}

func (o *optFloat) Set(s string) error {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return fmt.Errorf("%q is not a number", s) // a checked flag says what it takes
	}
	o.v = &f
	return nil
}

func optFloatFlag(fs *flag.FlagSet, name, usage string) *optFloat {
	o := &optFloat{}
	fs.Var(o, name, usage)
	return o
}

// edit applies op to a chart as the logged-in user and says what was done.
func (a *app) edit(ctx context.Context, chartRef string, op func(v record.View) (record.Op, error)) error {
	by, err := a.author(ctx)
	if err != nil {
		return err
	}
	id, err := a.chart(ctx, chartRef)
	if err != nil {
		return err
	}
	r := a.r
	v, err := r.Chart(ctx, id)
	if err != nil {
		return err
	}
	o, err := op(v)
	if err != nil {
		return err
	}
	res, err := r.Edit(ctx, id, by, o)
	if err != nil {
		// A storage error may leave the edit saved or not: read the
		// chart back and say which, so that it is not entered twice.
		return checkEdit(ctx, r, id, v, err)
	}
	after, err := r.Chart(ctx, id)
	if err != nil {
		return err
	}
	for _, h := range after.History {
		if h.Change == res.Change.Hash {
			fmt.Fprintf(a.out, "Saved: %s [entry %s]\n", h.Summary, chartfmt.Short(res.EntryID))
		}
	}
	if res.Clock != nil {
		fmt.Fprintf(a.out, "Warning: %v.\n", res.Clock)
	}
	if _, ok := o.(record.Prescribe); ok {
		for _, p := range after.Prescriptions {
			if p.ID != res.EntryID {
				continue
			}
			switch {
			case p.Substance != "":
				fmt.Fprintf(a.out, "Drug coded as %s %s\n", p.ATC, p.Substance)
			case p.ATC != "":
				fmt.Fprintf(a.out, "Drug coded as %s, a code not in this device's dictionary: checked by its name\n", p.ATC)
			default:
				fmt.Fprintf(a.out, "Drug %q not in the dictionary: recorded as uncoded, checked by its name only\n", p.Drug)
			}
		}
	}
	for _, al := range after.Alerts {
		if !containsAlert(v.Alerts, al) {
			fmt.Fprintf(a.out, "!! NEW ALERT [%s] %s\n", strings.ToUpper(al.Severity), al.Message)
		}
	}
	return nil
}

func containsAlert(as []record.Alert, a record.Alert) bool {
	for _, x := range as {
		if x.Kind == a.Kind && strings.Join(x.Entries, ",") == strings.Join(a.Entries, ",") {
			return true
		}
	}
	return false
}

// oneArg and twoArgs check positional arguments.
func oneArg(args []string, what string) (string, error) {
	if len(args) != 1 {
		return "", usagef("give %s", what)
	}
	return args[0], nil
}

func twoArgs(args []string, what string) (string, string, error) {
	if len(args) != 2 {
		return "", "", usagef("give %s", what)
	}
	return args[0], args[1], nil
}

func init() {
	var (
		clinicID, deviceName, cloud string
		admin, adminName            string
		recovery, recoveryOut       string
	)
	register(&command{
		name: "init", args: "-clinic CLINIC-ID -device DEVICE-NAME [-cloud URL] [-admin USER-ID -admin-name NAME (-recovery age1… | -recovery-out FILE)]",
		help: "Set up this device for a clinic (once per device).\nThe device's data is encrypted; the first administrator's password unlocks it, and a recovery key kept off the device opens it if every password is lost:\ngive -recovery with the cloud's or an administrator's age recipient (clinic recovery-key makes one), or -recovery-out FILE to make one there (on a USB stick, kept apart).\nA device set up without -admin gets its users at its first sync, and its data is encrypted at the first login, with the recovery key of -recovery or else the cloud's.",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&clinicID, "clinic", "", "the clinic this device belongs to, e.g. kamuga-dispensary (required)")
			fs.StringVar(&deviceName, "device", "", "a name for this device, e.g. kamuga-tablet-1 (required)")
			fs.StringVar(&cloud, "cloud", "", "the cloud's URL, for syncing when there is signal")
			fs.StringVar(&admin, "admin", "", "on the clinic's first device only: the user ID of its first administrator (asks for the password)")
			fs.StringVar(&adminName, "admin-name", "", "the first administrator's name")
			fs.StringVar(&recovery, "recovery", "", "the age recipient (age1…) of the recovery key that opens this device's data if every password is lost: the cloud's, or an administrator's")
			fs.StringVar(&recoveryOut, "recovery-out", "", "with -admin and no -recovery: make a recovery key and write it to this file, off the device (the file is what opens the device when every password is lost)")
		},
		run: func(ctx context.Context, a *app, fs *flag.FlagSet, args []string) error {
			if clinicID == "" || deviceName == "" {
				return usagef("-clinic and -device are required")
			}
			if err := device.CheckClinic(clinicID); err != nil {
				return usagef("-clinic %q: use letters, digits, '.', '-' and '_' only (at most %d)", clinicID, device.MaxClinicLen)
			}
			if d, err := a.device(); err == nil {
				return fmt.Errorf("%s is already set up for clinic %s as %s: use another -dir for another device", a.dir, d.Clinic, d.Device)
			}
			if recovery != "" {
				if err := checkRecipient(recovery); err != nil {
					return err
				}
			}
			switch {
			case recovery != "" && recoveryOut != "":
				return usagef("give -recovery or -recovery-out, not both")
			case admin == "" && recoveryOut != "":
				return usagef("-recovery-out is for a device set up with -admin; a device without one uses -recovery or the cloud's key")
			case admin != "" && recovery == "" && recoveryOut == "":
				// Never a device whose lost passwords would lose its
				// unsynced changes: its keyring needs a recovery entry,
				// and no cloud credential names one before enrolment.
				return usagef("no recovery key: the first administrator's device needs a recovery key, which opens its encrypted data if every password is lost (otherwise changes not yet synced would be lost with the passwords). Give -recovery age1… (the cloud's recovery recipient, or an administrator's from clinic recovery-key -out FILE or age-keygen), or -recovery-out FILE to make one now in FILE, to keep off the device")
			}
			var adminPassword, adminHash string
			if admin != "" {
				var err error
				if adminPassword, adminHash, err = a.newPassword(admin); err != nil {
					return err
				}
			}
			if recoveryOut != "" {
				if inside(a.dir, recoveryOut) {
					return usagef("-recovery-out %s is in the device's data directory: the recovery key would be stolen with the device; write it off the device (a USB stick kept apart)", recoveryOut)
				}
				var err error
				if recovery, err = writeRecoveryIdentity(recoveryOut, fmt.Sprintf("recovery key of device %s of clinic %s: keep it off the device; clinic unlock-recovery -identity FILE opens the device with it", deviceName, clinicID)); err != nil {
					return err
				}
				fmt.Fprintf(a.out, "Recovery key written to %s (recipient %s): keep it apart from the device, safe; it opens the device's data if every password is lost.\n", recoveryOut, recovery)
			}
			if err := os.MkdirAll(a.dir, 0o700); err != nil {
				return fmt.Errorf("set up %s: %w", a.dir, err)
			}
			conf := deviceConfig{Clinic: clinicID, Device: deviceName, Cloud: cloud, Created: time.Now().UTC()}
			if admin == "" {
				conf.Recovery = recovery // for the first login's keyring
			}
			if err := writeJSON(a.path("device.json"), conf); err != nil {
				return fmt.Errorf("set up %s: %w", a.dir, err)
			}
			// The device's keys: made here, kept here (0600). Only the
			// enrolment request (public keys, signed) goes to the cloud.
			// They name the replica, which signs every change with them.
			id, err := newIdentity(a, replica.NewID(), clinicID)
			if err != nil {
				return err
			}
			if admin != "" {
				// The data key, wrapped for the administrator and for
				// recovery; the database is made encrypted with it.
				key, err := keyringConfig.Create(a.path(keyringFile), recovery, admin, adminPassword)
				if err != nil {
					return fmt.Errorf("make this device's keyring: %w", err)
				}
				a.key = key
			}
			r, err := a.replica(ctx)
			if err != nil {
				return err
			}
			if err := writeRequest(id, a.path(requestFile)); err != nil {
				return err
			}
			fmt.Fprintf(a.out, "Device %s of clinic %s is ready (replica %s, data in %s).\n", deviceName, clinicID, r.ID(), a.dir)
			fmt.Fprintf(a.out, "Device key fingerprint: %s\n", device.Fingerprint(id.Public().SignKey))
			fmt.Fprintf(a.out, "To sync with a cloud: give %s to the administrator (it holds no secret), then run clinic connect -credential FILE with the file you get back.\n", a.path(requestFile))
			if admin != "" {
				if err := startRoster(ctx, a, clinicID, admin, adminName, adminHash); err != nil {
					return err
				}
				fmt.Fprintf(a.out, "This device's data is encrypted: %s's password unlocks it (each colleague gets their own at their first login here), and the recovery key %s opens it if every password is lost.\n", admin, recovery)
				fmt.Fprintf(a.out, "Next: clinic login -user %s, then add the clinic's staff with clinic user add\n", admin)
			} else {
				fmt.Fprintf(a.out, "Next: sync with the cloud to receive the clinic's users, then clinic login -user USER-ID at once: this device's data is encrypted at that first login (until then it holds the clinic's charts in clear).\n")
			}
			return nil
		},
	})

	register(&command{
		name: "logout", help: "Log out of this device: the key of its encrypted data is removed from it until the next login.",
		run: func(ctx context.Context, a *app, fs *flag.FlagSet, args []string) error {
			s, err := a.session()
			if err != nil {
				// No session: a key left behind goes all the same.
				a.dropKey()
				return err
			}
			if err := a.endSession(); err != nil {
				return err
			}
			fmt.Fprintf(a.out, "%s logged out; this device's data is locked until the next login.\n", s.Author)
			return nil
		},
	})

	register(&command{
		name: "status", help: "Show this device, who is logged in, the charts held and changes waiting to sync.",
		run: func(ctx context.Context, a *app, fs *flag.FlagSet, args []string) error {
			d, err := a.device()
			if err != nil {
				return err
			}
			r, err := a.replica(ctx)
			locked := errors.Is(err, errLocked)
			if err != nil && !locked {
				return err
			}
			if locked {
				fmt.Fprintf(a.out, "Device %s of clinic %s\nLogged in: no one (run clinic login)\nData: encrypted; log in to see the charts held and the changes waiting to sync\n", d.Device, d.Clinic)
			} else {
				charts, err := r.Find(ctx, "", 0)
				if err != nil {
					return err
				}
				who := "no one (run clinic login)"
				if s, err := a.session(); err == nil {
					who = s.Author.String()
				}
				data := "encrypted"
				if a.key == nil {
					data = "NOT encrypted (it is at the next login once a recovery key is known: see clinic login -h)"
				}
				fmt.Fprintf(a.out, "Device %s of clinic %s, replica %s\nLogged in: %s\nData: %s\nCharts held: %d\n", d.Device, d.Clinic, r.ID(), who, data, len(charts))
			}
			id, err := a.identity()
			switch {
			case errors.Is(err, errNoIdentity):
				fmt.Fprintln(a.out, "Device key: none yet (run clinic request)")
			case err != nil:
				return err
			default:
				fmt.Fprintf(a.out, "Device key fingerprint: %s\n", device.Fingerprint(id.Public().SignKey))
			}
			c, err := a.credential()
			if errors.Is(err, errNotConnected) {
				fmt.Fprintln(a.out, "Cloud: not connected (ask the administrator for a credential, then run clinic connect)")
				return nil
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(a.out, "Cloud: %s (credential valid until %s)\n", c.CloudURL, c.Device.NotAfter.Local().Format(time.DateOnly))
			if locked {
				return nil
			}
			if c.CloudReplica != "" {
				pending, err := r.Pending(ctx, c.CloudReplica)
				if err != nil {
					return err
				}
				fmt.Fprintf(a.out, "Changes waiting to be sent: %d\n", pending)
			}
			peers, err := r.Peers(ctx)
			if err != nil {
				return err
			}
			last := "never"
			for _, p := range peers {
				if p.ID == c.CloudReplica {
					last = p.LastSync.Local().Format(time.DateTime)
				}
			}
			fmt.Fprintf(a.out, "Last sync: %s\n", last)
			return nil
		},
	})

	var reg record.Register
	var bornYear int
	register(&command{
		name: "register", args: "-given NAME -family NAME -sex SEX (-born YYYY-MM-DD | -born-year YYYY) [flags]",
		help: "Register a new patient and print the chart ID.",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&reg.GivenName, "given", "", "given name")
			fs.StringVar(&reg.FamilyName, "family", "", "family name")
			codeVar(fs, &reg.Sex, "sex", "", "female, male, other or unknown", sexCodes)
			fs.StringVar(&reg.BirthDate, "born", "", "birth date, YYYY-MM-DD, when known")
			fs.IntVar(&bornYear, "born-year", 0, "estimated birth year, when the date is not known")
			fs.StringVar(&reg.Village, "village", "", "village")
			fs.StringVar(&reg.Address, "address", "", "address or directions")
			fs.StringVar(&reg.Phone, "phone", "", "phone number")
			fs.StringVar(&reg.NationalID, "national-id", "", "national health ID")
			fs.StringVar(&reg.Guardian, "guardian", "", "guardian or next of kin")
			fs.StringVar(&reg.HomeClinic, "home-clinic", "", "home clinic (default: this device's clinic)")
		},
		run: func(ctx context.Context, a *app, fs *flag.FlagSet, args []string) error {
			by, err := a.author(ctx)
			if err != nil {
				return err
			}
			d, _ := a.device()
			if reg.HomeClinic == "" {
				reg.HomeClinic = d.Clinic
			}
			reg.EstimatedBirthYear = bornYear
			r, err := a.replica(ctx)
			if err != nil {
				return err
			}
			start := time.Now()
			id, err := r.Register(ctx, by, reg)
			if err != nil {
				// Look for the chart when the save's outcome is unknown,
				// so that the patient is not registered twice.
				return checkRegister(ctx, r, by, reg, start, err)
			}
			fmt.Fprintf(a.out, "Registered %s: chart %s\n", record.Patient(reg).FullName(), id)
			if now := deviceClock(); now.Before(record.ReleaseDate()) {
				fmt.Fprintf(a.out, "Warning: the device clock reads %s, before this software was released (%s): the registration is saved with that time; set the device's date and time.\n",
					now.Format(time.DateOnly), record.ReleaseDate().Format(time.DateOnly))
			}
			return nil
		},
	})

	var limit int
	register(&command{
		name: "find", args: "[TEXT]",
		help: "Find patients by names (any order, spelling variants, first letters), village, phone, identifier or chart ID (all when no text).",
		flags: func(fs *flag.FlagSet) {
			fs.IntVar(&limit, "limit", 50, "show at most this many")
		},
		run: func(ctx context.Context, a *app, fs *flag.FlagSet, args []string) error {
			r, err := a.replica(ctx)
			if err != nil {
				return err
			}
			text := strings.Join(args, " ")
			var cs []replica.Found
			if text != "" {
				if cs, err = r.Search(ctx, text, limit); errors.Is(err, replica.ErrTooManyMatches) {
					fmt.Fprintln(a.out, "Too many patients match. Type more of the name, or add the village or a phone number.")
					return nil
				}
				if err != nil {
					return err
				}
			}
			if len(cs) == 0 {
				// No words (list everyone), or a chart ID or part of a
				// national ID, which the search does not take.
				listed, err := r.Find(ctx, text, limit)
				if err != nil {
					return err
				}
				for _, c := range listed {
					cs = append(cs, replica.Found{Chart: c})
				}
			}
			if len(cs) == 0 {
				fmt.Fprintln(a.out, "No patient found. Try part of a name or a village, or register the patient.")
				return nil
			}
			tw := tabwriter.NewWriter(a.out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "CHART\tNAME\tVILLAGE\tNATIONAL ID\tHOME CLINIC")
			for _, c := range cs {
				fmt.Fprintf(tw, "%s\t%s %s\t%s\t%s\t%s\n", chartfmt.Short(c.ID), c.GivenName, c.FamilyName, c.Village, c.NationalID, c.HomeClinic)
			}
			return tw.Flush()
		},
	})

	var asJSON, withHistory bool
	register(&command{
		name: "show", args: "CHART",
		help: "Show a chart, with conflicts and alerts clearly marked.",
		flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&asJSON, "json", false, "print the chart as JSON")
			fs.BoolVar(&withHistory, "history", false, "also print the chart's history")
		},
		run: func(ctx context.Context, a *app, fs *flag.FlagSet, args []string) error {
			v, err := a.view(ctx, args)
			if err != nil {
				return err
			}
			if asJSON {
				enc := json.NewEncoder(a.out)
				enc.SetIndent("", "  ")
				return enc.Encode(v)
			}
			v = inLocalTime(v)
			chartfmt.Print(a.out, v, "")
			if asked, err := a.chart(ctx, args[0]); err == nil {
				printMerges(ctx, a, asked, v)
			}
			if withHistory {
				fmt.Fprintln(a.out, "History:")
				chartfmt.History(a.out, v, "  ")
			}
			return nil
		},
	})

	clinicalCommands()
	fhirCommands()
	backupCommands()
}
