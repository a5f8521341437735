package main

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/transport/httpsync"
)

var enrolCommand = &command{
	name: "enrol",
	args: "[-dir DIR] -request FILE -device NAME -out FILE [-clinic CLINIC] [-valid 8760h] [-url URL]",
	help: "Enrol a clinic device from its enrolment request: write a credential file that lets it sync its clinic's charts.",
	flags: func(fs *flag.FlagSet) {
		fs.String("request", "", "the device's enrolment request (\"clinic init\" writes it as enrol-request.pem in the device's data directory)")
		fs.String("clinic", "", "the clinic the device must belong to; the request names the clinic, and is refused if it names another")
		fs.String("device", "", "a name for the device, e.g. kamuga-tablet-1")
		fs.String("out", "", "the credential file to write")
		fs.Duration("valid", 365*24*time.Hour, "how long the credential is valid")
		fs.String("url", "", "the cloud URL the device uses (default: where serve last listened)")
		fs.String("trust", "", "a PEM file of the CA (or the certificate to pin) that devices check the server against, when serve uses -cert (default: the device CA, which signs -dev-cert)")
		fs.Bool("force", false, "replace -out if it exists")
	},
	run: enrol,
}

// maxRequestFile bounds an enrolment request file.
const maxRequestFile = 64 << 10

func enrol(ctx context.Context, fs *flag.FlagSet, at where, stdout, _ io.Writer) error {
	if fs.NArg() > 0 {
		return usagef("unexpected arguments %q", fs.Args())
	}
	clinic, name := flagValue[string](fs, "clinic"), flagValue[string](fs, "device")
	reqPath, out := flagValue[string](fs, "request"), flagValue[string](fs, "out")
	switch {
	case reqPath == "":
		return usagef("-request is required: the enrolment request file the device made (clinic init writes enrol-request.pem)")
	case name == "":
		return usagef("-device is required: a name for the device")
	case out == "":
		return usagef("-out is required: where to write the credential")
	}
	if _, err := os.Stat(out); err == nil && !flagValue[bool](fs, "force") {
		return fmt.Errorf("%s exists; choose another -out, or pass -force to replace it", out)
	}
	data, err := readBounded(reqPath, maxRequestFile)
	if err != nil {
		return fmt.Errorf("-request: %w", err)
	}
	// The request proves that the device holds the key it asks a
	// certificate for; only its public keys travel.
	pub, err := device.ParseRequest(data)
	if err != nil {
		return fmt.Errorf("%s is not a valid enrolment request (%w): ask for a new one (on the device: clinic request -out FILE)", reqPath, err)
	}
	if clinic != "" && clinic != pub.Clinic {
		return fmt.Errorf("the request is from a device of clinic %s, not %s: check that it is the right request, or enrol it for its own clinic", pub.Clinic, clinic)
	}
	st, err := openState(ctx, at)
	if err != nil {
		return err
	}
	defer st.Close()
	ca, created, err := st.DeviceCA(ctx)
	if err != nil {
		return err
	}
	if created {
		fmt.Fprintf(stdout, "Created the device CA in %s. Back it up: losing it locks out every enrolled device.\n", at.describe(dirCA))
	}
	authority, created, err := st.Authority(ctx)
	if err != nil {
		return fmt.Errorf("enrolment authority: %w", err)
	}
	if created {
		fmt.Fprintf(stdout, "Created the enrolment authority key in %s (it signs relay enrolments; fingerprint %s). Back it up too.\n",
			at.describe(filepath.Join(dirCA, fileAuth)), device.Fingerprint(authority.PublicKey()))
	}
	in, err := st.Served(ctx)
	if errors.Is(err, errLocked) {
		return fmt.Errorf("the cloud in %s is starting up; try again in a moment", at.Dir)
	}
	if err != nil {
		return err
	}
	url := flagValue[string](fs, "url")
	if url == "" {
		url = in.URL
	}
	if url == "" {
		url = "https://127.0.0.1:8443"
	}
	trust := []*x509.Certificate{ca.Cert}
	if path := flagValue[string](fs, "trust"); path != "" {
		if trust, err = readCerts(path); err != nil {
			return fmt.Errorf("-trust: %w", err)
		}
	}
	now := time.Now().Truncate(time.Second)
	valid := flagValue[time.Duration](fs, "valid")
	cred, err := ca.Enrol(httpsync.Enrolment{
		Replica: pub.ReplicaID, Clinic: pub.Clinic, Device: name, PublicKey: pub.SignKey, Valid: valid, Now: now,
		CloudURL: url, CloudReplica: in.Replica, ServerTrust: trust,
	})
	if err != nil {
		return err
	}
	// The cloud's own enrolment first, so that the roster the credential
	// carries lets the device seal relay bundles for the cloud and check
	// its replies (relayid.go).
	if added, err := enrolCloud(ctx, st, authority, in.Replica, now); err != nil {
		return err
	} else if added {
		fmt.Fprintf(stdout, "Enrolled the cloud (replica %s) in the relay roster: devices enrolled from now on can send it relay bundles.\n", in.Replica)
	}
	// The relay enrolment: the same device, the same keys, signed by the
	// cloud's authority, added to the cloud's roster.
	relay, err := authority.Enrol(pub, now, cred.Device.NotAfter.Sub(now))
	if err != nil {
		return err
	}
	if err := st.AddToRoster(ctx, relay); err != nil {
		return err
	}
	roster, err := device.NewRoster(rosterConfig(authority))
	if err != nil {
		return err
	}
	if _, err := st.MergeRoster(ctx, roster, 0); err != nil {
		return err
	}
	cred.Authority, cred.Enrolment, cred.Roster = authority.PublicKey(), relay, roster.Encode()
	if err := cred.WriteFile(out); err != nil {
		return err
	}
	abs, _ := filepath.Abs(out)
	fp := device.Fingerprint(pub.SignKey)
	if err := st.RecordEnrolment(ctx, enrolment{Device: name, Clinic: pub.Clinic, Replica: pub.ReplicaID, Key: fp, Serial: cred.Device.Serial,
		Issued: now.UTC(), NotAfter: cred.Device.NotAfter.UTC(), File: abs}); err != nil {
		return fmt.Errorf("the credential is written, but recording the enrolment failed: %w", err)
	}
	fmt.Fprintf(stdout, "Enrolled device %s of clinic %s (replica %s), valid until %s.\n", name, pub.Clinic, pub.ReplicaID, cred.Device.NotAfter.UTC().Format(time.DateOnly))
	fmt.Fprintf(stdout, "Device key fingerprint: %s. Check it with the device (clinic status shows it) before handing the credential over.\n", fp)
	fmt.Fprintf(stdout, "Credential written to %s. It holds no secret: it works only with the key that stays on the device.\n", out)
	fmt.Fprintf(stdout, "Next: copy it to the device and run there: clinic connect -credential %s (the device will reach the cloud at %s).\n", filepath.Base(out), url)
	return nil
}

// readBounded reads a file of at most limit bytes.
func readBounded(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is over %d bytes: not an enrolment request", path, limit)
	}
	return data, nil
}

func readCerts(path string) ([]*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := []*x509.Certificate{}
	for {
		cert, rest, err := nextCert(data)
		if err != nil {
			return nil, err
		}
		if cert == nil {
			break
		}
		pool = append(pool, cert)
		data = rest
	}
	if len(pool) == 0 {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

var devicesCommand = &command{
	name: "devices",
	args: "[-dir DIR]",
	help: "List the devices enrolled at this cloud.",
	run: func(ctx context.Context, fs *flag.FlagSet, at where, stdout, _ io.Writer) error {
		st, err := openState(ctx, at)
		if err != nil {
			return err
		}
		defer st.Close()
		list, err := st.Enrolments(ctx)
		if err != nil {
			return err
		}
		if len(list) == 0 {
			fmt.Fprintln(stdout, "No device is enrolled yet. Enrol one with: cloud enrol -request REQUEST-FILE -device NAME -out FILE")
			return nil
		}
		revoked := map[string]time.Time{}
		for _, e := range list {
			if !e.Revoked.IsZero() {
				revoked[e.Replica] = e.Revoked
			}
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "DEVICE\tCLINIC\tREPLICA\tKEY\tISSUED\tEXPIRES")
		for _, e := range list {
			if !e.Revoked.IsZero() {
				continue
			}
			expires := e.NotAfter.Format(time.DateOnly)
			if t, ok := revoked[e.Replica]; ok && !t.Before(e.Issued) {
				expires += " (revoked " + t.Format(time.DateOnly) + ")"
			} else if time.Now().After(e.NotAfter) {
				expires += " (expired)"
			}
			key := e.Key
			if key == "" {
				key = "-"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", e.Device, e.Clinic, e.Replica, key, e.Issued.Format(time.DateOnly), expires)
		}
		return tw.Flush()
	},
}
