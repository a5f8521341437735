package store

import (
	"sort"
	"strings"
)

// Matches reports whether c matches q's text; implementations that cannot
// express the match in their own query language can filter with it.
func Matches(c Chart, text string) bool {
	if text == "" || c.ID == text {
		return true
	}
	t := strings.ToLower(text)
	for _, f := range []string{c.GivenName, c.FamilyName, c.Village, c.NationalID} {
		if strings.Contains(strings.ToLower(f), t) {
			return true
		}
	}
	return false
}

// SortCharts orders charts as Query promises: family name, given name, ID.
func SortCharts(cs []Chart) {
	sort.Slice(cs, func(i, j int) bool {
		a, b := cs[i], cs[j]
		if a.FamilyName != b.FamilyName {
			return a.FamilyName < b.FamilyName
		}
		if a.GivenName != b.GivenName {
			return a.GivenName < b.GivenName
		}
		return a.ID < b.ID
	})
}
