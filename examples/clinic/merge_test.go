package main

import (
	"regexp"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMergeCommands: duplicates lists a chart's likely duplicates with
// their reasons; merge, refused to a nurse and without a reason, merges
// one chart into another for an administrator, after which show follows
// the merged chart to the survivor, which names it, and duplicates no
// longer lists it; unmerge makes it a chart of its own again, once.
func TestMergeCommands(t *testing.T) {
	dir := t.TempDir()
	a := nurseWithPatient(t, dir)
	code, out, errOut := clinic(t, dir, "register", "-given", "Wanjiro", "-family", "Mwangi", "-sex", "female", "-born-year", "1988")
	require.Zero(t, code, errOut)
	m := regexp.MustCompile(`chart ([0-9a-f-]{36})`).FindStringSubmatch(out)
	require.Len(t, m, 2, out)
	b := m[1][:8]
	code, _, errOut = clinic(t, dir, "allergy", b, "-substance", "Penicillin", "-severity", "severe")
	require.Zero(t, code, errOut)

	code, out, errOut = clinic(t, dir, "duplicates", a)
	require.Zero(t, code, errOut)
	assert.Contains(t, out, b, "the other registration is a likely duplicate")
	assert.Contains(t, out, "Wanjiro Mwangi")
	assert.Regexp(t, `(?i)name`, out, "with the reasons")

	tests := []struct {
		name    string
		args    []string
		code    int
		errText string
	}{
		{"a nurse may not merge", []string{"merge", b, "-into", a, "-reason", "same woman"}, 1, "may not change a patient's merges"},
		{"without -into", []string{"merge", b, "-reason", "same woman"}, 2, "-into"},
		{"without -reason", []string{"merge", b, "-into", a}, 2, "-reason"},
		{"into itself", []string{"merge", b, "-into", b, "-reason", "x"}, 2, "two different charts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, errOut := clinic(t, dir, tt.args...)
			assert.Equal(t, tt.code, code, errOut)
			assert.Contains(t, errOut, tt.errText)
			_, out, _ := clinic(t, dir, "show", b)
			assert.Contains(t, out, "Wanjiro", "nothing merged")
		})
	}

	code, _, errOut = clinicIn(t, dir, "admin-pass-1\n", "login", "-user", "u-admin")
	require.Zero(t, code, errOut)
	code, out, errOut = clinic(t, dir, "merge", b, "-into", a, "-reason", "same woman, registered twice")
	require.Zero(t, code, errOut)
	assert.Contains(t, out, "Merged chart "+b)
	code, out, errOut = clinic(t, dir, "show", b)
	require.Zero(t, code, errOut)
	assert.Contains(t, out, "Wanjiru Mwangi", "show follows the merged chart to the survivor")
	assert.Contains(t, out, "Penicillin", "which shows both charts' entries")
	assert.Contains(t, out, "Chart "+b+" was merged into this chart")
	code, out, errOut = clinic(t, dir, "show", a)
	require.Zero(t, code, errOut)
	assert.Regexp(t, `Merged into this chart: `+b+`\S* Wanjiro Mwangi \(same woman, registered twice\)`, out)
	code, out, errOut = clinic(t, dir, "duplicates", a)
	require.Zero(t, code, errOut)
	assert.NotContains(t, out, b, "a merged chart is no duplicate")
	code, _, errOut = clinic(t, dir, "merge", b, "-into", a, "-reason", "again")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "already")

	code, out, errOut = clinic(t, dir, "unmerge", b, "-reason", "two sisters")
	require.Zero(t, code, errOut)
	assert.Contains(t, out, "Unmerged chart "+b)
	_, out, _ = clinic(t, dir, "show", b)
	assert.Contains(t, out, "Wanjiro Mwangi", "a chart of its own again")
	code, _, errOut = clinic(t, dir, "unmerge", b, "-reason", "again")
	assert.Equal(t, 1, code)
	assert.Contains(t, errOut, "not merged")
}
