package main

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/chartsync/chartsync/transport/httpsync"
)

var enrolCommand = &command{
	name: "enrol",
	args: "[-dir DIR] -clinic CLINIC -device NAME -replica DEVICE-REPLICA-ID -out FILE [-valid 8760h] [-url URL]",
	help: "Enrol a clinic device: write a credential file that lets it sync this clinic's charts.",
	flags: func(fs *flag.FlagSet) {
		fs.String("clinic", "", "the clinic the device belongs to (it reads and writes only that clinic's charts)")
		fs.String("device", "", "a name for the device, e.g. kamuga-tablet-1")
		fs.String("replica", "", "the device's replica ID (32 hex digits), as the clinic app prints it at init and in status")
		fs.String("out", "", "the credential file to write (mode 0600)")
		fs.Duration("valid", 365*24*time.Hour, "how long the credential is valid")
		fs.String("url", "", "the cloud URL the device uses (default: where serve last listened)")
		fs.String("trust", "", "a PEM file of the CA (or the certificate to pin) that devices check the server against, when serve uses -cert (default: the device CA, which signs -dev-cert)")
		fs.Bool("force", false, "replace -out if it exists")
	},
	run: enrol,
}

func enrol(ctx context.Context, fs *flag.FlagSet, dir string, stdout, _ io.Writer) error {
	if fs.NArg() > 0 {
		return usagef("unexpected arguments %q", fs.Args())
	}
	clinic, name := flagValue[string](fs, "clinic"), flagValue[string](fs, "device")
	replicaID, out := flagValue[string](fs, "replica"), flagValue[string](fs, "out")
	switch {
	case clinic == "":
		return usagef("-clinic is required: the clinic whose charts the device may hold")
	case name == "":
		return usagef("-device is required: a name for the device")
	case replicaID == "":
		return usagef("-replica is required: the device's replica ID (the clinic app prints it at init and in status)")
	case out == "":
		return usagef("-out is required: where to write the credential")
	}
	if b, err := hex.DecodeString(replicaID); err != nil || len(b) != 16 {
		return usagef("-replica %q is not a replica ID (32 hex digits, as the clinic app prints it)", replicaID)
	}
	if _, err := os.Stat(out); err == nil && !flagValue[bool](fs, "force") {
		return fmt.Errorf("%s exists; choose another -out, or pass -force to replace it", out)
	}
	ca, created, err := openDir(dir)
	if err != nil {
		return err
	}
	if created {
		fmt.Fprintf(stdout, "Created the device CA in %s. Back it up: losing it locks out every enrolled device.\n", filepath.Join(dir, dirCA))
	}
	in, err := cloudReplicaID(ctx, dir)
	if errors.Is(err, errLocked) {
		return fmt.Errorf("the cloud in %s is starting up; try again in a moment", dir)
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
	cred, err := ca.Enrol(httpsync.Enrolment{
		Replica: replicaID, Clinic: clinic, Device: name, Valid: flagValue[time.Duration](fs, "valid"),
		CloudURL: url, CloudReplica: in.Replica, ServerTrust: trust,
	})
	if err != nil {
		return err
	}
	if err := cred.WriteFile(out); err != nil {
		return err
	}
	abs, _ := filepath.Abs(out)
	if err := appendEnrolment(dir, enrolment{Device: name, Clinic: clinic, Replica: replicaID, Serial: cred.Device.Serial,
		Issued: time.Now().UTC(), NotAfter: cred.Device.NotAfter.UTC(), File: abs}); err != nil {
		return fmt.Errorf("the credential is written, but recording the enrolment failed: %w", err)
	}
	fmt.Fprintf(stdout, "Enrolled device %s of clinic %s (replica %s), valid until %s.\n", name, clinic, replicaID, cred.Device.NotAfter.UTC().Format(time.DateOnly))
	fmt.Fprintf(stdout, "Credential written to %s (mode 0600). It is a secret: anyone holding it can sync as this device.\n", out)
	fmt.Fprintf(stdout, "Next: copy it to the device and give it to the clinic app there; the device will reach the cloud at %s.\n", url)
	return nil
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
	run: func(_ context.Context, fs *flag.FlagSet, dir string, stdout, _ io.Writer) error {
		f, err := os.Open(filepath.Join(dir, fileDevices))
		if errors.Is(err, os.ErrNotExist) {
			fmt.Fprintln(stdout, "No device is enrolled yet. Enrol one with: cloud enrol -clinic CLINIC -device NAME -replica ID -out FILE")
			return nil
		}
		if err != nil {
			return err
		}
		defer f.Close()
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "DEVICE\tCLINIC\tREPLICA\tISSUED\tEXPIRES")
		lines := bufio.NewScanner(f)
		for lines.Scan() {
			var e enrolment
			if err := json.Unmarshal(lines.Bytes(), &e); err != nil {
				return fmt.Errorf("%s: %w", f.Name(), err)
			}
			expires := e.NotAfter.Format(time.DateOnly)
			if time.Now().After(e.NotAfter) {
				expires += " (expired)"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", e.Device, e.Clinic, e.Replica, e.Issued.Format(time.DateOnly), expires)
		}
		if err := lines.Err(); err != nil {
			return err
		}
		return tw.Flush()
	},
}
