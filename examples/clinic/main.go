// Command clinic is a command-line clinic app on a local replica: register
// and find patients, show charts (conflicts and alerts clearly marked),
// record allergies, diagnoses, prescriptions, lab results and encounters,
// all with no network. Data lives in one directory (-dir, or
// $CHARTSYNC_CLINIC_DIR, default ./clinic-data).
//
// init also makes the device's keys (identity.key, 0600: an ed25519
// signing key and an age X25519 key, which never leave the device) and an
// enrolment request (enrol-request.pem: the public keys, signed). The
// cloud's administrator enrols the request ("cloud enrol -request") and
// hands back a credential that holds no secret; "clinic connect" stores
// it, and "clinic sync" uses it with the device's own key, the same key
// that signs its relay bundles.
//
//	go run ./examples/clinic init -clinic kamuga-dispensary -device kamuga-tablet-1
//	go run ./examples/clinic connect -credential kamuga-tablet-1.pem
//	go run ./examples/clinic login -user u-achieng   (asks for the password)
//	go run ./examples/clinic register -given Wanjiru -family Mwangi -sex female -born-year 1988 -village Kamuga
//	go run ./examples/clinic find Wanjiru
//	go run ./examples/clinic show <chart>
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
)

// command is one subcommand.
type command struct {
	name, args, help string
	run              func(ctx context.Context, app *app, fs *flag.FlagSet, args []string) error
	flags            func(fs *flag.FlagSet)
}

var commands = map[string]*command{}

func register(c *command) { commands[c.name] = c }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}

// run executes one command line and returns the exit code. Passwords are
// read from stdin (without echo on a terminal).
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	global := flag.NewFlagSet("clinic", flag.ContinueOnError)
	global.SetOutput(stderr)
	dir := global.String("dir", envOr("CHARTSYNC_CLINIC_DIR", "clinic-data"), "the device's data directory")
	global.Usage = func() { usage(stderr) }
	if err := global.Parse(args); err != nil {
		return 2
	}
	if global.NArg() == 0 {
		usage(stderr)
		return 2
	}
	name := global.Arg(0)
	c := commands[name]
	if name == "help" || name == "-h" {
		usage(stdout)
		return 0
	}
	if c == nil {
		fmt.Fprintf(stderr, "clinic: there is no command %q.\n\n", name)
		usage(stderr)
		return 2
	}
	fs := flag.NewFlagSet("clinic "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: clinic %s %s\n\n%s\n", name, c.args, c.help)
		fs.PrintDefaults()
	}
	if c.flags != nil {
		c.flags(fs)
	}
	if err := fs.Parse(global.Args()[1:]); err != nil {
		return 2
	}
	a := &app{dir: *dir, in: bufio.NewReader(stdin), raw: stdin, out: stdout, log: stderr}
	defer a.close()
	if err := c.run(ctx, a, fs, fs.Args()); err != nil {
		fmt.Fprintln(stderr, "clinic:", explain(err))
		var u usageError
		if errors.As(err, &u) {
			fs.Usage()
			return 2
		}
		return 1
	}
	return 0
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

func usage(w io.Writer) {
	fmt.Fprintln(w, `usage: clinic [-dir DIR] COMMAND [flags] [args]

Works with no network. Start with "clinic init", then "clinic login".
Commands:`)
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		c := commands[n]
		fmt.Fprintf(w, "  %-17s %s\n", n, firstLine(c.help))
	}
	fmt.Fprintln(w, "\nRun \"clinic COMMAND -h\" for a command's flags.")
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// usageError is a mistake in the command line; the command's usage follows.
type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }
