package sqlite

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestScopeHas: a stored scope holds the clinics among its strings, as
// SQLite's json_each read them; a scope that is not a JSON array holds
// none.
func TestScopeHas(t *testing.T) {
	for _, tt := range []struct {
		scope, clinic string
		want          bool
	}{
		{`["north","south"]`, "south", true},
		{`["north","south"]`, "east", false},
		{`[]`, "north", false},
		{`["x\"north"]`, "north", false},
		{`["no\u0072th"]`, "north", true},
		{`[1, "north"]`, "north", true},
		{`[1]`, "1", false},
		{`{"north": 1}`, "north", false},
		{`"north"`, "north", false},
		{`["north"`, "north", false},
		{``, "", false},
	} {
		assert.Equal(t, tt.want, scopeHas(tt.scope, tt.clinic), "%s holds %q", tt.scope, tt.clinic)
	}
}
