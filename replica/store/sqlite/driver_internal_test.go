package sqlite

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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

// TestMemorySecurityIsOff: SQLCipher does not lock and zero each of
// SQLite's allocations (see driverName), in clear or encrypted.
func TestMemorySecurityIsOff(t *testing.T) {
	ctx := context.Background()
	for _, cfg := range []Config{{}, {Key: bytes.Repeat([]byte{1}, KeySize)}} {
		s, err := OpenConfig(ctx, filepath.Join(t.TempDir(), "charts.db"), cfg)
		require.NoError(t, err)
		var on string
		require.NoError(t, s.db.QueryRowContext(ctx, "PRAGMA cipher_memory_security").Scan(&on))
		assert.Equal(t, "0", on, "memory security (key: %t)", cfg.Key != nil)
		require.NoError(t, s.Close())
	}
}
