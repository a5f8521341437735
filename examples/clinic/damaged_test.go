package main

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDamagedDatabaseSaysToRestore: once the device's database is damaged,
// a command refuses with words that name what to do (restore a backup as
// a new device), not only the library's message.
//
// The device is one whose data is in clear (made before the app
// encrypted data, and given no recovery key since). Pages of an
// encrypted database damaged alike are refused too, but as "quick_check:
// SQL logic error", not as damage: SQLCipher reports a page that fails
// its authentication as SQLITE_ERROR, which the store does not take for
// damage (sqlite.IsDamage).
func TestDamagedDatabaseSaysToRestore(t *testing.T) {
	dir := clearDevice(t)
	must(t, dir, "nurse-pass-1\n", "login", "-user", "u-nurse")
	for _, name := range []string{"Wanjiru", "Amina", "Baraka", "Otieno", "Fatuma"} {
		code, _, errOut := clinic(t, dir, "register", "-given", name, "-family", "Mwangi", "-sex", "female", "-born-year", "1988")
		require.Zero(t, code, errOut)
	}
	path := filepath.Join(dir, "replica.db")
	fi, err := os.Stat(path)
	require.NoError(t, err)
	const page = 4096
	require.Greater(t, fi.Size(), int64(4*page), "a database of several pages")
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteAt(bytes.Repeat([]byte{0xA5}, 2*page), page) // pages 2 and 3
	require.NoError(t, err)
	require.NoError(t, f.Close())

	code, _, errOut := clinic(t, dir, "find")
	assert.NotZero(t, code)
	assert.Contains(t, errOut, "damaged")
	assert.Contains(t, errOut, "clinic repair", "the error names the command that keeps unsynced changes")
	assert.Contains(t, errOut, "clinic restore -in BACKUP-FILE -dir NEW-DIR")
}
