package web

import (
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/chartsync/chartsync/internal/atomicfile"
)

// Languages the app's pages and messages are in: one file of messages
// per language in i18n/, embedded in the binary. English is the
// reference: every key of en.json must be in every other file (a test
// checks it), and a key missing from a file at run time is shown in
// English.
var Languages = []Language{{Code: "en", Name: "English"}, {Code: "sw", Name: "Kiswahili"}}

// Language is one language of the app: an IETF tag and its own name.
type Language struct{ Code, Name string }

// DefaultLanguage is the language of a user who has not chosen one.
const DefaultLanguage = "en"

//go:embed i18n/*.json
var messageFiles embed.FS

// catalog is one language's messages by key. A message is a Go format
// string when the key is used with arguments. A key ending ".one" or
// ".other" is a plural form (see catalog.plural).
type catalog map[string]string

// catalogs are the embedded messages by language code.
var catalogs = func() map[string]catalog {
	out := map[string]catalog{}
	for _, l := range Languages {
		data, err := fs.ReadFile(messageFiles, "i18n/"+l.Code+".json")
		if err != nil {
			panic("web: messages for " + l.Code + " are not embedded: " + err.Error())
		}
		c := catalog{}
		if err := json.Unmarshal(data, &c); err != nil {
			panic("web: messages for " + l.Code + ": " + err.Error())
		}
		out[l.Code] = c
	}
	return out
}()

// knownLanguage reports whether code is one of Languages.
func knownLanguage(code string) bool {
	return slices.ContainsFunc(Languages, func(l Language) bool { return l.Code == code })
}

// tr says the message key in language lang, with args formatted into it;
// a key missing from lang falls back to English, and one missing from
// English is shown as it is.
func tr(lang, key string, args ...any) string {
	msg, ok := catalogs[lang][key]
	if !ok {
		if msg, ok = catalogs[DefaultLanguage][key]; !ok {
			msg = key
		}
	}
	if len(args) == 0 {
		return msg
	}
	return fmt.Sprintf(msg, args...)
}

// plural says n of a thing in lang: key+".one" for 1, key+".other"
// otherwise, each a format string taking n.
func plural(lang string, n int, key string) string {
	form := ".other"
	if n == 1 {
		form = ".one"
	}
	return tr(lang, key+form, n)
}

// maxSettingsBytes bounds the settings file: a few hundred users' choices
// take a few kilobytes.
const maxSettingsBytes = 1 << 20

// ErrSettingsDamaged: the users' settings file is not what the app wrote.
var ErrSettingsDamaged = errors.New("web: the users' settings file is damaged")

// userSettings is what a user chose on this device.
type userSettings struct {
	Language string `json:"language,omitempty"`
}

// settingsStore keeps the users' settings of this device in a JSON file
// (Config.SettingsFile), written atomically; with no file, in memory. It
// is safe for concurrent use.
type settingsStore struct {
	path string
	mu   sync.Mutex
	m    map[string]userSettings
}

func openSettings(path string) (*settingsStore, error) {
	s := &settingsStore{path: path, m: map[string]userSettings{}}
	if path == "" {
		return s, nil
	}
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, fmt.Errorf("web: read settings: %w", err)
	}
	if fi.Size() > maxSettingsBytes {
		return nil, fmt.Errorf("%w: %s is %d bytes, over %d", ErrSettingsDamaged, path, fi.Size(), maxSettingsBytes)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("web: read settings: %w", err)
	}
	if err := json.Unmarshal(data, &s.m); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrSettingsDamaged, path, err)
	}
	for u, st := range s.m {
		if st.Language != "" && !knownLanguage(st.Language) {
			return nil, fmt.Errorf("%w: %s: user %s: unknown language %s", ErrSettingsDamaged, path, strconv.Quote(u), strconv.Quote(st.Language))
		}
	}
	return s, nil
}

func (s *settingsStore) get(user string) userSettings {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m[user]
}

// set stores a user's settings; on a failure to write, nothing changes.
func (s *settingsStore) set(user string, st userSettings) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old, had := s.m[user]
	s.m[user] = st
	if s.path == "" {
		return nil
	}
	data, err := json.MarshalIndent(s.m, "", "  ")
	if err == nil {
		err = atomicfile.Write(s.path, data, atomicfile.Options{Perm: 0o600})
	}
	if err != nil {
		if had {
			s.m[user] = old
		} else {
			delete(s.m, user)
		}
		return fmt.Errorf("web: save settings: %w", err)
	}
	return nil
}

// acceptLanguage picks the first of Languages a browser's Accept-Language
// header names, or "".
func acceptLanguage(h string) string {
	for _, part := range strings.Split(h, ",") {
		tag, _, _ := strings.Cut(strings.TrimSpace(part), ";")
		base, _, _ := strings.Cut(strings.ToLower(tag), "-")
		if knownLanguage(base) {
			return base
		}
	}
	return ""
}
