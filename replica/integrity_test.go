package replica_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
)

// damagedFixture writes a closed replica database of a few dozen charts
// (hundreds of pages) and returns its path, its page size and one of its
// charts with the hash of that chart's registration.
func damagedFixture(t *testing.T) (path string, pageSize int, chart string, reg []byte) {
	t.Helper()
	return damagedFixtureWith(t, nil)
}

// damagedFixtureWith is damagedFixture of a database encrypted with key
// (in clear if nil).
func damagedFixtureWith(t *testing.T, key []byte) (path string, pageSize int, chart string, reg []byte) {
	t.Helper()
	ctx := context.Background()
	path = tempDB(t, "clinic")
	r, err := replica.Open(ctx, path, replica.Config{Now: frozen, DatabaseKey: key})
	require.NoError(t, err)
	for i := range 40 {
		id, err := r.Register(ctx, nurse, record.Register{GivenName: "Wanjiru", FamilyName: "Mwangi", Sex: "female",
			EstimatedBirthYear: 1988, Village: "Kamuga", HomeClinic: "kamuga-dispensary"})
		require.NoError(t, err)
		for j := range 5 {
			edit(t, r, id, allergy(i*10+j))
		}
		if i == 0 {
			v := view(t, r, id)
			require.NotEmpty(t, v.History)
			chart, reg = id, v.History[0].Change[:]
		}
	}
	require.NoError(t, r.Close(), "closing checkpoints the log into the database file")
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	pageSize = int(binary.BigEndian.Uint16(data[16:18]))
	if key != nil {
		pageSize = 4096 // SQLCipher's, in a header it encrypts
	}
	require.Greater(t, len(data)/pageSize, 50, "the fixture spans many pages")
	return path, pageSize, chart, reg
}

// TestOpenRefusesDamagedDatabase overwrites whole pages in the middle of a
// replica's database, as a failing disk would: Open refuses it with a
// *DamagedError naming the file and what SQLite found, and an intact
// database opens.
func TestOpenRefusesDamagedDatabase(t *testing.T) {
	for _, tc := range []struct {
		name   string
		at     float64 // where the damage starts, as a fraction of the file
		pages  int
		filler byte
	}{
		{"middle pages zeroed", 0.5, 4, 0x00},
		{"middle pages of garbage", 0.5, 4, 0xA5},
		{"pages near the end", 0.8, 2, 0xFF},
		{"the second page", 0, 1, 0xA5},
	} {
		for _, encrypted := range []bool{false, true} {
			name := tc.name
			var key []byte
			if encrypted {
				name += ", encrypted"
				key = bytes.Repeat([]byte{7}, 32)
			}
			t.Run(name, func(t *testing.T) { testOpenRefusesDamage(t, key, tc.at, tc.pages, tc.filler) })
		}
	}
}

func testOpenRefusesDamage(t *testing.T, key []byte, at float64, npages int, filler byte) {
	ctx := context.Background()
	path, pageSize, _, _ := damagedFixtureWith(t, key)
	r, err := replica.Open(ctx, path, replica.Config{DatabaseKey: key})
	require.NoError(t, err, "the intact database opens")
	require.NoError(t, r.CheckIntegrity(ctx, true), "the intact database passes the full check")
	require.NoError(t, r.Close())

	data, err := os.ReadFile(path)
	require.NoError(t, err)
	pages := len(data) / pageSize
	first := max(1, int(at*float64(pages)))
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteAt(bytes.Repeat([]byte{filler}, npages*pageSize), int64(first*pageSize))
	require.NoError(t, err)
	require.NoError(t, f.Close())

	_, err = replica.Open(ctx, path, replica.Config{DatabaseKey: key})
	require.ErrorIs(t, err, replica.ErrDamaged, "a database with damaged pages is refused on open")
	var de *replica.DamagedError
	require.ErrorAs(t, err, &de)
	assert.Equal(t, path, de.Path)
	assert.NotEmpty(t, de.Problems, "the error says what was found")
	assert.Contains(t, err.Error(), "restore it from a backup", "the error says what to do")

	_, err = replica.Open(ctx, path, replica.Config{DatabaseKey: key})
	require.ErrorIs(t, err, replica.ErrDamaged, "a refused open releases the database's lock")
}

// TestCheckIntegrityFindsIndexDamage changes one byte of a change's hash
// in its table row, so that the index of change hashes (which sync uses
// to tell which changes it holds) no longer agrees with the log: every
// page is still well formed, so the quick check on open passes, and the
// full check finds it.
func TestCheckIntegrityFindsIndexDamage(t *testing.T) {
	ctx := context.Background()
	path, _, chart, hash := damagedFixture(t)
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	// The change's row holds its chart's ID just before its hash; the
	// index entry holds the hash alone. (A free page may hold an old copy
	// of the row too: every copy is changed.)
	key := append([]byte(chart), hash...)
	found := 0
	for at := 0; ; found++ {
		i := bytes.Index(data[at:], key)
		if i < 0 {
			break
		}
		data[at+i+len(chart)] ^= 0x01
		at += i + len(key)
	}
	require.Positive(t, found, "the change's row is in the database file")
	require.NoError(t, os.WriteFile(path, data, 0o600))

	r, err := replica.Open(ctx, path, replica.Config{})
	require.NoError(t, err, "the quick check does not compare indexes with their tables")
	defer r.Close()
	require.NoError(t, r.CheckIntegrity(ctx, false))
	err = r.CheckIntegrity(ctx, true)
	require.ErrorIs(t, err, replica.ErrDamaged, "the full check finds the index that disagrees with the log")
	var de *replica.DamagedError
	require.ErrorAs(t, err, &de)
	assert.True(t, de.Full)
	assert.Contains(t, err.Error(), "changes", "the problem names the damaged table's index")
}

// TestCheckIntegrityUnsupported: a store that cannot check itself says so.
func TestCheckIntegrityUnsupported(t *testing.T) {
	r, _ := newMem(t, replica.Config{})
	err := r.CheckIntegrity(context.Background(), true)
	assert.True(t, errors.Is(err, errors.ErrUnsupported), "got %v", err)
}

// BenchmarkOpenCheck measures the integrity checks on a database of
// 20,000 charts of 10 changes each: the quick check Open runs, and the
// full one (CheckIntegrity(ctx, true)), with the file's size, and a
// backup of it (replica.Backup: the copy and its quick check).
func BenchmarkOpenCheck(b *testing.B) {
	ctx := context.Background()
	const n = 20_000
	path := tempDB(b, "clinic")
	r, err := replica.Open(ctx, path, replica.Config{})
	require.NoError(b, err)
	at := frozen()
	for done := 0; done < n; {
		var batch []*record.Chart
		for range min(200, n-done) {
			c, _, err := record.New(uuid.NewString(), r.ID(), nurse, at, record.Register{
				GivenName: fmt.Sprintf("Given%d", done), FamilyName: "Okafor", Sex: "female",
				EstimatedBirthYear: 1988, Village: "Kamuga", HomeClinic: "kamuga-dispensary",
			})
			require.NoError(b, err)
			for i := 1; i < 10; i++ {
				_, err := c.Do(doctor, at.Add(time.Duration(i)*time.Hour), allergy(i))
				require.NoError(b, err)
			}
			batch = append(batch, c)
			done++
		}
		require.NoError(b, r.Import(ctx, batch))
	}
	require.NoError(b, r.Close())
	fi, err := os.Stat(path)
	require.NoError(b, err)
	for _, full := range []bool{false, true} {
		name := "quick"
		if full {
			name = "full"
		}
		b.Run(name, func(b *testing.B) {
			r, err := replica.Open(ctx, path, replica.Config{})
			require.NoError(b, err)
			defer r.Close()
			for b.Loop() {
				require.NoError(b, r.CheckIntegrity(ctx, full))
			}
			b.ReportMetric(float64(fi.Size())/(1<<20), "db-MiB")
		})
	}
	b.Run("backup", func(b *testing.B) {
		var copied int64
		for i := 0; b.Loop(); i++ {
			out := filepath.Join(b.TempDir(), fmt.Sprint("backup-", i))
			require.NoError(b, replica.Backup(ctx, path, out))
			fi, err := os.Stat(out)
			require.NoError(b, err)
			copied = fi.Size()
		}
		b.ReportMetric(float64(copied)/(1<<20), "backup-MiB")
	})
	b.Run("open", func(b *testing.B) {
		for b.Loop() {
			r, err := replica.Open(ctx, path, replica.Config{})
			require.NoError(b, err)
			require.NoError(b, r.Close())
		}
	})
}

// TestOpenRefusesAnyDamagedPageEncrypted overwrites each of the first
// pages of an encrypted database in turn: whichever it is, Open reports
// the damage (SQLCipher refuses a page whose authentication code does not
// match with a plain SQLite error, which the check looks into), never a
// bare "SQL logic error".
func TestOpenRefusesAnyDamagedPageEncrypted(t *testing.T) {
	ctx := context.Background()
	key := bytes.Repeat([]byte{7}, 32)
	path, pageSize, _, _ := damagedFixtureWith(t, key)
	intact, err := os.ReadFile(path)
	require.NoError(t, err)
	for page := 1; page < 20; page++ {
		data := bytes.Clone(intact)
		copy(data[page*pageSize:(page+1)*pageSize], bytes.Repeat([]byte{0xA5}, pageSize))
		require.NoError(t, os.WriteFile(path, data, 0o600))
		_, err := replica.Open(ctx, path, replica.Config{DatabaseKey: key})
		require.ErrorIs(t, err, replica.ErrDamaged, "page %d damaged", page)
	}
}
