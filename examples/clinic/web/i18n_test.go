package web

import (
	"context"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/record"
)

// verbs are a message's format verbs, in order.
var verbs = regexp.MustCompile(`%[-+# 0-9.]*[a-zA-Z%]`)

// TestEveryMessageIsTranslated: every English key has a message in every
// other language, with the same format verbs in the same order, and no
// language has a key English lacks; every key the templates use is in
// English.
func TestEveryMessageIsTranslated(t *testing.T) {
	en := catalogs[DefaultLanguage]
	require.NotEmpty(t, en)
	for _, l := range Languages {
		c := catalogs[l.Code]
		for k, msg := range en {
			got, ok := c[k]
			if !assert.True(t, ok, "%s has no message for %q", l.Name, k) {
				continue
			}
			assert.NotEmpty(t, strings.TrimSpace(got), "%s: %q is empty", l.Name, k)
			assert.Equal(t, verbs.FindAllString(msg, -1), verbs.FindAllString(got, -1), "%s: %q has other format verbs than English", l.Name, k)
		}
		for k := range c {
			assert.Contains(t, en, k, "%s has a key English lacks", l.Name)
		}
	}
	used := regexp.MustCompile(`\b[TN] "([a-z0-9.]+)"`)
	prefixed := regexp.MustCompile(`printf "([a-z.]+)%s"`)
	names, err := filepath.Glob("templates/*.html")
	require.NoError(t, err)
	for _, n := range names {
		data, err := os.ReadFile(n)
		require.NoError(t, err)
		for _, m := range used.FindAllStringSubmatch(string(data), -1) {
			key := m[1]
			if strings.HasPrefix(m[0], "N") {
				key += ".other"
			}
			assert.Contains(t, en, key, "%s uses a message English lacks", n)
		}
		for _, m := range prefixed.FindAllStringSubmatch(string(data), -1) {
			found := false
			for k := range en {
				found = found || strings.HasPrefix(k, m[1])
			}
			assert.True(t, found, "%s: no message starts %q", n, m[1])
		}
	}
}

// TestLanguageChosenPerUser: a user who chooses Swahili gets the pages in
// Swahili, kept in the settings file across a restart; another user on
// the same device still gets English; the login page follows the link
// or the browser; an unknown language is refused and changes nothing.
func TestLanguageChosenPerUser(t *testing.T) {
	settings := filepath.Join(t.TempDir(), "web-settings.json")
	f := newFixture(t, func(c *Config) { c.SettingsFile = settings })
	nurse := f.client()
	nurse.login(record.RoleNurse)
	_, body := nurse.get("/patients")
	assert.Contains(t, body, `<html lang="en">`)
	assert.Contains(t, body, "Find a patient")

	code, _, _ := nurse.post("/settings", url.Values{"language": {"xx"}})
	require.Equal(t, http.StatusSeeOther, code)
	_, body = nurse.get("/settings")
	assert.Contains(t, body, "Choose one of the languages listed.")
	_, err := os.Stat(settings)
	assert.ErrorIs(t, err, os.ErrNotExist, "nothing stored for an unknown language")

	code, _, _ = nurse.post("/settings", url.Values{"language": {"sw"}})
	require.Equal(t, http.StatusSeeOther, code)
	_, body = nurse.get("/patients")
	assert.Contains(t, body, `<html lang="sw">`)
	assert.Contains(t, body, "Tafuta mgonjwa")
	assert.Contains(t, body, "mabadiliko 2 yanasubiri kutumwa", "the status bar in Swahili, with its plural")
	_, body = nurse.get("/patients?q=nobody")
	assert.Contains(t, body, "Hakuna mgonjwa aliyepatikana", "the page's messages too")

	// The chart and its forms, with their validation messages.
	id := f.register(record.Register{GivenName: "Wanjiru", FamilyName: "Mwangi", EstimatedBirthYear: 1988})
	_, body = nurse.get("/chart/" + id)
	assert.Contains(t, body, "Mizio")
	assert.Contains(t, body, "Hakuna kilichorekodiwa.")
	_, body = nurse.get("/chart/" + id + "/allergy")
	assert.Contains(t, body, "Rekodi mzio")
	code, body, _ = nurse.post("/chart/"+id+"/allergy", url.Values{"severity": {"mild"}})
	assert.Equal(t, http.StatusUnprocessableEntity, code)
	assert.Contains(t, body, "Andika kitu.", "the validation message in Swahili, naming the field")

	clinician := f.client()
	clinician.login(record.RoleClinician)
	_, body = clinician.get("/patients")
	assert.Contains(t, body, "Find a patient", "another user keeps English")

	// The choice outlives the server.
	again, err := New(Config{Replica: f.r, Clinic: testClinic, Device: testDevice, Guard: f.srv.cfg.Guard, SettingsFile: settings})
	require.NoError(t, err)
	defer again.Close()
	assert.Equal(t, "sw", again.language(userID(record.RoleNurse)))
	assert.Equal(t, "en", again.language(userID(record.RoleClinician)))

	// The login page: the link's language, else the browser's.
	_, body = f.client().get("/login?lang=sw")
	assert.Contains(t, body, "Nenosiri")
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, f.ts.URL+"/login", nil)
	require.NoError(t, err)
	req.Header.Set("Accept-Language", "sw-KE,sw;q=0.9,en;q=0.8")
	_, body, _ = f.client().do(req)
	assert.Contains(t, body, "Nenosiri")
}

// TestDamagedSettingsRefused: a settings file that is not what the app
// wrote stops the app with ErrSettingsDamaged, and is left as it was.
func TestDamagedSettingsRefused(t *testing.T) {
	for name, content := range map[string]string{
		"not JSON":         "{",
		"unknown language": `{"u-nurse":{"language":"xx"}}`,
		"too large":        strings.Repeat(" ", maxSettingsBytes+1),
	} {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "web-settings.json")
			require.NoError(t, os.WriteFile(path, []byte(content), 0o600))
			f := newFixture(t)
			_, err := New(Config{Replica: f.r, Clinic: testClinic, Device: testDevice, Guard: f.srv.cfg.Guard, SettingsFile: path})
			assert.ErrorIs(t, err, ErrSettingsDamaged)
			got, err := os.ReadFile(path)
			require.NoError(t, err)
			assert.Equal(t, content, string(got))
		})
	}
}

// TestFieldLabelsAreTheCatalogs: the English labels written beside the
// forms' fields are the English catalog's, so what the code says is what
// English users see.
func TestFieldLabelsAreTheCatalogs(t *testing.T) {
	check := func(key string, fs []field) {
		for _, x := range fs {
			assert.Equal(t, x.Label, catalogs[DefaultLanguage]["field."+key+"."+x.Name], "form %s, field %s", key, x.Name)
			if x.Hint != "" {
				assert.Equal(t, x.Hint, catalogs[DefaultLanguage]["hint."+key+"."+x.Name], "form %s, field %s's hint", key, x.Name)
			}
		}
	}
	check("register", registerFields)
	for _, cf := range chartForms {
		key := cf.Name
		if key == "demographics" {
			key = "register"
		}
		check(key, cf.Fields)
		assert.Equal(t, cf.Title, catalogs[DefaultLanguage]["form."+cf.Name+".title"], "form %s's title", cf.Name)
	}
}
