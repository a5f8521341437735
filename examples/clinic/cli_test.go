package main

import (
	"crypto/x509"
	"fmt"
	"maps"
	"net"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/transport/httpsync"
)

// entryID finds the short ID of the entry shown on the line of a chart
// that contains text.
func entryID(t *testing.T, chart, text string) string {
	t.Helper()
	m := regexp.MustCompile(`([0-9a-f]{8}) ` + regexp.QuoteMeta(text)).FindStringSubmatch(chart)
	require.Len(t, m, 2, "no entry %q in the chart:\n%s", text, chart)
	return m[1]
}

// TestFlagsAnywhere: flags are read wherever they are, after the chart ID
// and the entry ID too, with one dash or two, and -dir after the command.
func TestFlagsAnywhere(t *testing.T) {
	dir := t.TempDir()
	short := nurseWithPatient(t, dir)
	tests := []struct {
		name string
		args []string
		want string // in the chart afterwards
	}{
		{"after the chart ID", []string{"allergy", short, "-substance", "Penicillin", "-severity", "severe"}, "Penicillin (severe, active)"},
		{"either side of the chart ID", []string{"prescribe", "-drug", "Metformin", short, "-dose", "500", "-unit", "mg", "-freq", "BD"}, "Metformin"},
		{"with two dashes and =", []string{"encounter", short, "--complaint=cough", "--temp", "38.5"}, "cough"},
		{"a negative value after the chart ID", []string{"lab", short, "-test", "Base excess", "-value", "-3", "-unit", "mmol/L"}, "Base excess -3 mmol/L"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := clinic(t, dir, tt.args...)
			require.Zero(t, code, errOut)
			code, out, errOut := clinic(t, dir, "show", short)
			require.Zero(t, code, errOut)
			assert.Contains(t, out, tt.want)
		})
	}
	// -dir after the command, and after the chart ID.
	code, out, errOut := run2(t, "show", short, "-dir", dir)
	require.Zero(t, code, errOut)
	assert.Contains(t, out, "Penicillin")

	// After the entry ID as well.
	code, out, _ = clinic(t, dir, "show", short)
	require.Zero(t, code)
	rx := entryID(t, out, "Metformin")
	code, _, errOut = clinic(t, dir, "discontinue", short, rx, "-reason", "side effects")
	require.Zero(t, code, errOut)
	code, out, _ = clinic(t, dir, "show", short)
	require.Zero(t, code)
	assert.Contains(t, out, "oral BD [stopped]")
}

// run2 runs a command line as given, without the -dir the other helpers
// put first.
func run2(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	return clinicIn(t, "", "", args...)
}

// TestMistypedCommandSuggests: a mistyped command is answered with the
// commands it may have meant, not with the list of every command.
func TestMistypedCommandSuggests(t *testing.T) {
	tests := []struct{ typed, want string }{
		{"prescibe", `"prescribe"`},
		{"regster", `"register"`},
		{"histroy", `"history"`},
		{"synk", `"sync"`},
		{"finalize-lab", `"finalise-lab"`},
	}
	dir := t.TempDir()
	for _, tt := range tests {
		t.Run(tt.typed, func(t *testing.T) {
			code, _, errOut := clinic(t, dir, tt.typed)
			assert.Equal(t, 2, code)
			assert.Contains(t, errOut, "there is no command \""+tt.typed+"\"")
			assert.Contains(t, errOut, "Did you mean "+tt.want)
			assert.NotContains(t, errOut, "no-allergies", "the whole list of commands is printed")
		})
	}
	code, _, errOut := clinic(t, dir, "xyzzy")
	assert.Equal(t, 2, code)
	assert.NotContains(t, errOut, "Did you mean", "nothing is close to xyzzy")
	assert.Contains(t, errOut, "clinic help")
}

// TestFlagErrorsNameTheFlag: a flag given a value it cannot take, or a
// mistyped flag, is refused with the flag's name and what it accepts.
func TestFlagErrorsNameTheFlag(t *testing.T) {
	dir := t.TempDir()
	short := nurseWithPatient(t, dir)
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"a dose with its unit", []string{"prescribe", short, "-drug", "Amoxicillin", "-dose", "500mg", "-unit", "mg", "-freq", "TDS"},
			[]string{`-dose "500mg"`, "give the number only (500), and the unit with -unit mg"}},
		{"a word for a number", []string{"lab", short, "-test", "Hb", "-value", "low"}, []string{`-value "low"`, "give a number"}},
		{"a word for a whole number", []string{"prescribe", short, "-drug", "X", "-dose", "1", "-unit", "mg", "-freq", "OD", "-days", "five"},
			[]string{`-days "five"`, "whole number"}},
		{"a duration without a unit", []string{"login", "-user", "u1", "-idle", "15"}, []string{`-idle "15"`, "15m"}},
		{"a mistyped flag", []string{"prescribe", short, "-frq", "TDS"}, []string{"no flag -frq", "Did you mean -freq?"}},
		{"a flag with no value", []string{"allergy", short, "-substance"}, []string{"-substance needs a value"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := clinic(t, dir, tt.args...)
			assert.Equal(t, 2, code, out)
			for _, w := range tt.want {
				assert.Contains(t, errOut, w)
			}
			assert.NotContains(t, errOut, "parse error")
			assert.NotContains(t, errOut, "strconv")
		})
	}
}

// TestValidationMessagesNameTheFlag: what the chart refuses is explained
// in words, with the flag to correct.
func TestValidationMessagesNameTheFlag(t *testing.T) {
	dir := t.TempDir()
	short := nurseWithPatient(t, dir)
	code, out, _ := clinic(t, dir, "prescribe", "-drug", "Amoxicillin", "-dose", "500", "-unit", "mg", "-freq", "TDS", short)
	require.Zero(t, code, out)
	_, chart, _ := clinic(t, dir, "show", short)
	rx := entryID(t, chart, "Amoxicillin")
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"no birth date", []string{"register", "-given", "Asha", "-sex", "female"},
			"birth date: give a birth date or an estimated birth year (-born YYYY-MM-DD or -born-year YYYY)."},
		{"no lab value", []string{"lab", "-test", "Hb", short}, "value: give a numeric or text value (-value NUMBER or -text TEXT)."},
		{"no reason", []string{"discontinue", short, rx}, "reason: required; give it with -reason."},
		{"no frequency", []string{"prescribe", "-drug", "X", "-dose", "1", "-unit", "mg", short}, "frequency: required; give it with -freq."},
		{"a zero dose", []string{"prescribe", "-drug", "X", "-dose", "0", "-unit", "mg", "-freq", "OD", short}, "dose must be greater than zero (-dose)."},
		{"an unknown frequency", []string{"prescribe", "-drug", "X", "-dose", "1", "-unit", "mg", "-freq", "thrice", short}, `frequency: "thrice" is not one of OD, BD, TDS`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := clinic(t, dir, tt.args...)
			assert.Equal(t, 1, code)
			assert.Contains(t, errOut, tt.want)
			assert.NotContains(t, errOut, " is required.", "a bare \"is required\" names no flag")
		})
	}
}

// TestCodesInAnyCase: codes are taken in any case and saved as the chart
// spells them.
func TestCodesInAnyCase(t *testing.T) {
	dir := t.TempDir()
	clinicianDevice(t, dir, "kamuga", "tab-1")
	code, out, errOut := clinic(t, dir, "register", "-given", "Baraka", "-sex", "MALE", "-born-year", "1990")
	require.Zero(t, code, errOut)
	short := regexp.MustCompile(`chart ([0-9a-f]{8})`).FindStringSubmatch(out)[1]
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"prescribe", "-drug", "Amoxicillin", "-dose", "500", "-unit", "MG", "-route", "Oral", "-freq", "tds", short}, "500 mg oral TDS [active]"},
		{[]string{"prescribe", "-drug", "Paracetamol", "-dose", "1", "-unit", "g", "-route", "iv", "-freq", "q6h", short}, "1 g IV Q6H [active]"},
		{[]string{"allergy", "-substance", "Sulfa", "-severity", "Severe", short}, "Sulfa (severe, active)"},
		{[]string{"diagnose", "-text", "Malaria", "-clinical", "ACTIVE", "-verification", "Confirmed", short}, "Malaria  [active, confirmed]"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args[1:len(tt.args)-1], " "), func(t *testing.T) {
			code, _, errOut := clinic(t, dir, tt.args...)
			require.Zero(t, code, errOut)
			_, out, _ := clinic(t, dir, "show", short)
			assert.Contains(t, out, tt.want)
		})
	}
	_, out, _ = clinic(t, dir, "show", short)
	assert.Contains(t, out, "male, born about 1990")
	code, _, errOut = clinicIn(t, dir, "admin-pass-1\n", "login", "-user", "u-admin")
	require.Zero(t, code, errOut)
	code, _, errOut = clinicIn(t, dir, twice("nurse-pass-1"), "user", "add", "-id", "u2", "-name", "Nurse B", "-role", "Nurse")
	require.Zero(t, code, errOut)
	_, out, _ = clinic(t, dir, "user", "list")
	assert.Regexp(t, `u2\s+Nurse B\s+nurse\s`, out)
}

// TestPlurals: counts read "1 chart", "2 charts".
func TestPlurals(t *testing.T) {
	dir := t.TempDir()
	nurseWithPatient(t, dir)
	code, _, errOut := clinic(t, dir, "logout")
	require.Zero(t, code, errOut)
	for i := 1; i <= 4; i++ {
		code, _, errOut = clinicIn(t, dir, "wrong-password\n", "login", "-user", "u1")
		require.Equal(t, 1, code)
		switch i {
		case 3:
			assert.Contains(t, errOut, "2 more wrong tries lock u1 out")
		case 4:
			assert.Contains(t, errOut, "1 more wrong try locks u1 out")
		}
	}
	code, _, errOut = clinicIn(t, dir, "nurse-pass-1\n", "login", "-user", "u1")
	require.Zero(t, code, errOut)
	// Two charts whose IDs start alike: "2 charts start with".
	for range 40 {
		code, _, errOut = clinic(t, dir, "register", "-given", "Amina", "-sex", "female", "-born-year", "1990")
		require.Zero(t, code, errOut)
	}
	_, list, _ := clinic(t, dir, "find")
	first := map[byte]int{}
	for _, m := range regexp.MustCompile(`(?m)^([0-9a-f])[0-9a-f]{7} `).FindAllStringSubmatch(list, -1) {
		first[m[1][0]]++
	}
	for c, n := range first {
		if n >= 2 {
			code, _, errOut = clinic(t, dir, "show", string(c))
			assert.Equal(t, 1, code)
			assert.Contains(t, errOut, fmt.Sprintf("%d charts start with", n))
			assert.NotContains(t, errOut, "1 charts")
			break
		}
	}
}

// TestTimesShownInLocalTime: a chart's history shows times in the
// device's time zone, not in UTC.
func TestTimesShownInLocalTime(t *testing.T) {
	saved := time.Local
	time.Local = time.FixedZone("EAT", 3*60*60)
	t.Cleanup(func() { time.Local = saved })
	dir := t.TempDir()
	before := time.Now().In(time.Local)
	short := nurseWithPatient(t, dir)
	after := time.Now().In(time.Local)
	for _, cmd := range []string{"history", "show"} {
		args := []string{cmd, short}
		if cmd == "show" {
			args = append(args, "-history")
		}
		code, out, errOut := clinic(t, dir, args...)
		require.Zero(t, code, errOut)
		line := ""
		for _, l := range strings.Split(out, "\n") {
			if strings.Contains(l, "Registered Wanjiru") {
				line = l
			}
		}
		require.NotEmpty(t, line, out)
		assert.True(t, strings.Contains(line, before.Format("2006-01-02 15:04")) || strings.Contains(line, after.Format("2006-01-02 15:04")),
			"%s shows the registration at East Africa's time (%s): %s", cmd, before.Format("15:04"), line)
	}
}

// TestProgressOnlyOnTerminal: a sync whose output is not a terminal draws
// no progress bar (no carriage returns in a pipe or a file), even while
// it retries an unreachable cloud; -quiet=false still asks for it.
func TestProgressOnlyOnTerminal(t *testing.T) {
	dir := t.TempDir()
	code, _, errOut := clinic(t, dir, "init", "-clinic", "kamuga", "-device", "tab-1")
	require.Zero(t, code, errOut)
	now := time.Now()
	ca, err := httpsync.NewDeviceCA("test cloud", now, time.Hour)
	require.NoError(t, err)
	req, err := device.ParseRequest(mustRead(t, filepath.Join(dir, "enrol-request.pem")))
	require.NoError(t, err)
	// A cloud that is not there: a port just closed.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	url := "https://" + ln.Addr().String()
	require.NoError(t, ln.Close())
	cred, err := ca.Enrol(httpsync.Enrolment{Replica: req.ReplicaID, Clinic: req.Clinic, Device: "tab-1", PublicKey: req.SignKey, Now: now,
		CloudURL: url, CloudReplica: "0123456789abcdef0123456789abcdef", ServerTrust: []*x509.Certificate{ca.Cert}})
	require.NoError(t, err)
	credPath := filepath.Join(t.TempDir(), "tab.pem")
	require.NoError(t, cred.WriteFile(credPath))
	code, _, errOut = clinic(t, dir, "connect", "-credential", credPath)
	require.Zero(t, code, errOut)

	code, out, errOut := clinic(t, dir, "sync")
	assert.Equal(t, 1, code, "the cloud is unreachable")
	assert.Contains(t, errOut, "No signal?")
	assert.NotContains(t, out, "\r", "a progress bar was drawn into a pipe")
	assert.NotContains(t, out, "retrying")

	// Asked for explicitly, the bar is drawn: the retries show.
	code, out, _ = clinic(t, dir, "sync", "-quiet=false")
	assert.Equal(t, 1, code)
	assert.Contains(t, out, "\r", "-quiet=false asks for the progress bar")
}

// TestCorrectionCommands: a patient's details are corrected (only the
// flags given), an allergy is updated, a preliminary lab result is made
// final; each refuses what makes no sense, saying why.
func TestCorrectionCommands(t *testing.T) {
	dir := t.TempDir()
	short := nurseWithPatient(t, dir)
	code, _, errOut := clinic(t, dir, "allergy", "-substance", "Penicillin", "-severity", "moderate", "-reaction", "rash", short)
	require.Zero(t, code, errOut)
	code, _, errOut = clinic(t, dir, "lab", "-test", "Haemoglobin", "-value", "9.5", "-unit", "g/dL", "-preliminary", short)
	require.Zero(t, code, errOut)
	_, chart, _ := clinic(t, dir, "show", short)
	allergy, lab := entryID(t, chart, "Penicillin"), entryID(t, chart, "Haemoglobin")

	tests := []struct {
		name string
		args []string
		code int
		want string // in the output (code 0) or the error
		show string // in the chart afterwards
	}{
		{"edit the phone and village", []string{"edit-patient", short, "-phone", "0712 345678", "-village", "Lwanda"}, 0, "Saved: Updated village, phone",
			"Lwanda, 0712 345678"},
		{"edit the birth date", []string{"edit-patient", short, "-born", "1988-04-02"}, 0, "birth date", "born 1988-04-02"},
		{"edit nothing", []string{"edit-patient", short}, 2, "say what to change", "Wanjiru Mwangi"},
		{"a birth date in the future", []string{"edit-patient", short, "-born", "2999-01-01"}, 1, "birth date", "born 1988-04-02"},
		{"a sex not known", []string{"edit-patient", short, "-sex", "f"}, 1, `sex: "f" is not one of female`, "female"},
		{"allergy severity", []string{"update-allergy", short, allergy, "-severity", "SEVERE"}, 0, "severity severe", "Penicillin (severe, active) rash"},
		{"allergy resolved", []string{"update-allergy", short, allergy, "-status", "resolved", "-reason", "tolerated amoxicillin"}, 0, "status resolved",
			"Penicillin (severe, resolved)"},
		{"allergy unchanged", []string{"update-allergy", short, allergy}, 2, "-severity, -reaction or -status", "Penicillin"},
		{"finalise", []string{"finalise-lab", short, lab}, 0, "Finalised Haemoglobin result", "[final"},
		{"finalise twice", []string{"finalise-lab", short, lab}, 1, "final", "[final"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := clinic(t, dir, tt.args...)
			require.Equal(t, tt.code, code, "%s%s", out, errOut)
			if tt.code == 0 {
				assert.Contains(t, out, tt.want)
			} else {
				assert.Contains(t, errOut, tt.want)
			}
			_, chart, _ := clinic(t, dir, "show", short)
			assert.Contains(t, chart, tt.show)
		})
	}
	_, hist, _ := clinic(t, dir, "history", short)
	assert.Contains(t, hist, "Updated village, phone", "the correction is in the history")
}

// TestHelpOfEveryCommand: clinic help COMMAND prints each command's usage
// and flags, and nothing about a panic, for every command.
func TestHelpOfEveryCommand(t *testing.T) {
	names := slices.Sorted(maps.Keys(commands))
	require.NotEmpty(t, names)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			code, out, errOut := run2(t, "help", name)
			assert.Zero(t, code, errOut)
			assert.Contains(t, out, "usage: clinic "+name)
			assert.NotContains(t, out+errOut, "panic")
		})
	}
}
