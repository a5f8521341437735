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
// The device's data (replica.db: charts, index, pending changes,
// quarantine, roster) is encrypted with a random data key, kept only
// wrapped in the keyring file: once per user of the device, under their
// password, and once for a recovery key kept off the device (init
// -recovery age1…, the cloud's or an administrator's; clinic
// recovery-key makes one). Logging in unlocks it; logout, and the first
// command after the idle time, remove it from the device (keys.go says
// what a stolen device gives away in each state). "clinic unlock-recovery"
// opens a device whose every password is lost with the recovery key,
// keeping every unsynced change. Every file the app writes is 0600, every
// directory 0700.
//
//	go run ./examples/clinic recovery-key -out /media/usb/kamuga-recovery.txt
//	go run ./examples/clinic init -clinic kamuga-dispensary -device kamuga-tablet-1 -admin u-wairimu -recovery age1…
//	go run ./examples/clinic connect -credential kamuga-tablet-1.pem
//	go run ./examples/clinic login -user u-achieng   (asks for the password)
//	go run ./examples/clinic register -given Wanjiru -family Mwangi -sex female -born-year 1988 -village Kamuga
//	go run ./examples/clinic find Wanjiru
//	go run ./examples/clinic show <chart>
//
// The command line is parsed by github.com/spf13/cobra: flags may come
// anywhere (before or after the chart ID), with one dash or two
// (-dose 500 and --dose=500 are the same); a mistyped command or flag gets
// a "did you mean"; a flag given a value it cannot take is named with what
// it accepts; codes such as -freq, -unit, -route, -sex and -severity are
// taken in any case (tds is TDS). Progress is drawn only on a terminal: a
// command's -quiet flag is on when its output goes to a pipe or a file.
// Times are shown in the device's local time zone.
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

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"golang.org/x/term"
)

// command is one subcommand. Its flags are declared on a standard
// flag.FlagSet and parsed by the command line (cobra, pflag); run gets
// the positional arguments, wherever the flags were among them.
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

// run executes one command line and returns the exit code: 0 done, 1 the
// command failed, 2 a mistake in the command line. Passwords are read
// from stdin (without echo on a terminal).
func run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	privateFiles()
	a := &app{dir: envOr("CHARTSYNC_CLINIC_DIR", "clinic-data"), in: bufio.NewReader(stdin), raw: stdin, out: stdout, log: stderr,
		terminal: isTerminal(stdout)}
	defer a.close()
	var runErr error
	root, flagSets := newRoot(ctx, a, stdout, &runErr)
	name, rest, code, done := commandName(args, stdout, stderr)
	if done {
		return code
	}
	c := commands[name]
	if c == nil && name != "help" {
		fmt.Fprintf(stderr, "clinic: there is no command %q.", name)
		if s := root.SuggestionsFor(name); len(s) > 0 {
			fmt.Fprintf(stderr, " Did you mean %s?", quoteOr(s))
		}
		fmt.Fprintln(stderr, "\nRun \"clinic help\" for the list of commands.")
		return 2
	}
	fs := flagSets[name]
	if fs == nil {
		fs = flag.NewFlagSet("clinic", flag.ContinueOnError)
	}
	root.SetArgs(append([]string{name}, normalize(fs, rest)...))
	root.SetOut(stdout)
	root.SetErr(stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		fmt.Fprintln(stderr, "clinic:", err)
		fmt.Fprintf(stderr, "Run \"clinic %s -h\" for its flags.\n", name)
		return 2
	}
	if runErr != nil {
		fmt.Fprintln(stderr, "clinic:", explain(runErr))
		var u usageError
		if errors.As(runErr, &u) {
			commandUsage(stderr, c, fs)
			return 2
		}
		return 1
	}
	return 0
}

// newRoot builds the command line: the root command "clinic" with its
// -dir flag, and a subcommand for each registered command, whose flags
// are declared afresh on a flag.FlagSet (returned by name) for this run.
// A command's error is left in runErr; errors returned by the root's
// Execute are mistakes in the command line.
func newRoot(ctx context.Context, a *app, stdout io.Writer, runErr *error) (*cobra.Command, map[string]*flag.FlagSet) {
	root := &cobra.Command{
		Use:               "clinic",
		SilenceErrors:     true,
		SilenceUsage:      true,
		CompletionOptions: cobra.CompletionOptions{DisableDefaultCmd: true},
		// "prescibe" suggests prescribe: within two edits, or a prefix.
		SuggestionsMinimumDistance: 2,
	}
	root.PersistentFlags().StringVar(&a.dir, "dir", a.dir, "the device's data directory (default $CHARTSYNC_CLINIC_DIR or ./clinic-data)")
	flagSets := map[string]*flag.FlagSet{}
	for _, name := range commandNames() {
		c := commands[name]
		fs := commandFlags(c)
		flagSets[name] = fs
		sub := &cobra.Command{
			Use:   c.name,
			Short: firstLine(c.help),
			RunE: func(cmd *cobra.Command, pos []string) error {
				quietOffTerminal(fs, a.terminal)
				*runErr = c.run(ctx, a, fs, pos)
				return nil
			},
		}
		sub.Flags().SortFlags = false
		sub.Flags().AddGoFlagSet(fs)
		root.AddCommand(sub)
	}
	root.SetHelpFunc(func(cmd *cobra.Command, _ []string) {
		if c := commands[cmd.Name()]; c != nil && cmd != root {
			commandUsage(stdout, c, flagSets[c.name])
			return
		}
		usage(stdout)
	})
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return flagError{explainFlagError(err, cmd.Name(), flagSets[cmd.Name()])}
	})
	return root, flagSets
}

// commandName finds the command in args, after the global flags (-dir):
// it returns the command's name and the arguments to parse for it (all
// but the name, -dir among them). done is set, with the exit code, when
// nothing is left to run (help, or no command).
func commandName(args []string, stdout, stderr io.Writer) (name string, rest []string, code int, done bool) {
	for i := 0; i < len(args); i++ {
		arg := args[i]
		switch {
		case arg == "-h" || arg == "-help" || arg == "--help" || arg == "help":
			if arg == "help" && i+1 < len(args) && commands[args[i+1]] != nil {
				c := commands[args[i+1]]
				commandUsage(stdout, c, commandFlags(c))
				return "", nil, 0, true
			}
			usage(stdout)
			return "", nil, 0, true
		case arg == "-dir" || arg == "--dir":
			i++ // its value
		case strings.HasPrefix(arg, "-dir=") || strings.HasPrefix(arg, "--dir="):
		case strings.HasPrefix(arg, "-"):
			fmt.Fprintf(stderr, "clinic: %s before the command: only -dir DIR may come before it; give the command first, then its flags.\n", arg)
			return "", nil, 2, true
		default:
			rest = append(append(rest, args[:i]...), args[i+1:]...)
			return arg, rest, 0, false
		}
	}
	usage(stderr)
	return "", nil, 2, true
}

// commandFlags declares a command's flags afresh; every value says
// which flag it is and what it accepts when it refuses one.
func commandFlags(c *command) *flag.FlagSet {
	fs := flag.NewFlagSet("clinic "+c.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	if c.flags != nil {
		c.flags(fs)
	}
	fs.VisitAll(func(f *flag.Flag) { f.Value = clearValue(f.Name, f.Value, fs) })
	return fs
}

// normalize rewrites the flags of args to the form pflag reads: a flag
// written with one dash (-dose 500, -json) gets two. The value of a flag
// of fs (or -dir) that takes one is copied as it is, even if it starts
// with a dash (-dose -5); nothing after "--" is a flag.
func normalize(fs *flag.FlagSet, args []string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		arg := args[i]
		if arg == "--" {
			return append(out, args[i:]...)
		}
		if len(arg) < 3 || arg[0] != '-' || arg[1] == '-' || !isLetter(arg[1]) {
			if strings.HasPrefix(arg, "--") && !strings.Contains(arg, "=") && i+1 < len(args) && takesValue(fs, arg[2:]) {
				out = append(out, arg, args[i+1])
				i++
				continue
			}
			out = append(out, arg)
			continue
		}
		name, _, hasValue := strings.Cut(arg[1:], "=")
		out = append(out, "-"+arg)
		if !hasValue && i+1 < len(args) && takesValue(fs, name) {
			i++
			out = append(out, args[i])
		}
	}
	return out
}

// takesValue reports whether the flag name of fs (or -dir) takes a value.
func takesValue(fs *flag.FlagSet, name string) bool {
	if f := fs.Lookup(name); f != nil {
		return !isBool(f.Value)
	}
	return name == "dir"
}

func isLetter(b byte) bool { return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' }

func isBool(v flag.Value) bool {
	b, ok := v.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// quietOffTerminal turns on a command's -quiet flag (no progress bar)
// when its output is not a terminal, unless the command line gave it: a
// progress bar redrawn with carriage returns is noise in a pipe or a file.
func quietOffTerminal(fs *flag.FlagSet, terminal bool) {
	f := fs.Lookup("quiet")
	if f == nil || terminal || !isBool(f.Value) {
		return
	}
	if !given(fs, "quiet") && f.Value.String() != "true" {
		_ = f.Value.Set("true")
	}
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// flagError is a flag the command line could not take.
type flagError struct{ msg string }

func (e flagError) Error() string { return e.msg }

// explainFlagError says which flag was wrong and what it takes.
func explainFlagError(err error, cmdName string, fs *flag.FlagSet) string {
	if fs == nil {
		fs = flag.NewFlagSet(cmdName, flag.ContinueOnError)
	}
	var (
		notExist *pflag.NotExistError
		needs    *pflag.ValueRequiredError
		invalid  *pflag.InvalidValueError
		syntax   *pflag.InvalidSyntaxError
	)
	switch {
	case errors.As(err, &invalid):
		// Its Unwrap is the value's own error, which names the flag.
		return errors.Unwrap(invalid).Error()
	case errors.As(err, &needs):
		f := fs.Lookup(needs.GetFlag().Name)
		if f == nil {
			return fmt.Sprintf("-%s needs a value", needs.GetFlag().Name)
		}
		return fmt.Sprintf("-%s needs a value: %s", f.Name, f.Usage)
	case errors.As(err, &notExist):
		name := strings.TrimLeft(notExist.GetSpecifiedName(), "-")
		if name == "" {
			name = notExist.GetSpecifiedShortnames()
		}
		msg := fmt.Sprintf("clinic %s has no flag -%s.", cmdName, name)
		var names []string
		fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
		if s := suggest(name, names); len(s) > 0 {
			for i := range s {
				s[i] = "-" + s[i]
			}
			msg += fmt.Sprintf(" Did you mean %s?", strings.Join(s, " or "))
		}
		return msg
	case errors.As(err, &syntax):
		return fmt.Sprintf("%q is not a flag: write flags as -name VALUE", syntax.GetSpecifiedFlag())
	}
	return err.Error()
}

// suggest returns the names closest to a mistyped one: those within two
// edits, or that start with it, closest first; none if nothing is close.
func suggest(typed string, names []string) []string {
	typed = strings.ToLower(typed)
	best, out := 3, []string(nil)
	for _, n := range names {
		d := editDistance(typed, strings.ToLower(n))
		if strings.HasPrefix(n, typed) && len(typed) >= 3 && d > 2 {
			d = 2
		}
		switch {
		case d < best:
			best, out = d, []string{n}
		case d == best:
			out = append(out, n)
		}
	}
	sort.Strings(out)
	if len(out) > 3 {
		out = out[:3]
	}
	return out
}

// editDistance is the Levenshtein distance between a and b, by bytes.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

func quoteOr(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = "\"" + n + "\""
	}
	return strings.Join(q, " or ")
}

func commandNames() []string {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
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
The device's data is encrypted: logging in unlocks it, logging out locks it.
Flags may come before or after a command's arguments.
Commands:`)
	for _, n := range commandNames() {
		fmt.Fprintf(w, "  %-17s %s\n", n, firstLine(commands[n].help))
	}
	fmt.Fprintln(w, "\nRun \"clinic COMMAND -h\" for a command's flags.")
}

// commandUsage prints a command's usage and flags.
func commandUsage(w io.Writer, c *command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: clinic %s %s\n\n%s\n", c.name, c.args, c.help)
	fs.SetOutput(w)
	fs.PrintDefaults()
	fs.SetOutput(io.Discard)
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

// plural writes n and a noun, in the plural unless n is 1:
// plural(1, "chart", "charts") is "1 chart".
func plural(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return fmt.Sprintf("%d %s", n, many)
}
