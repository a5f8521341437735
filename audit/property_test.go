package audit_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/chartsync/chartsync/audit"
)

// The property: whatever appends (valid or not), reopenings, torn tails
// and exports happen, in whatever order, the log holds exactly the
// accepted entries, numbered 1..N, and every export is the model's list
// filtered.

var (
	propCharts  = []string{"c-1", "c-2", "c-3"}
	propUsers   = []string{"", "u-achieng", "u-mutua"}
	propDetails = []string{"", "may not prescribe", `say "no" \ twice`, "ñ — 患者"}
)

func drawEntry(t *rapid.T, label string) audit.Entry {
	e := audit.Entry{
		Action:  rapid.SampledFrom([]audit.Action{audit.Read, audit.Write, audit.Refused}).Draw(t, label+".action"),
		Device:  device(rapid.IntRange(0, 2).Draw(t, label+".device")),
		Clinic:  rapid.SampledFrom([]string{"", "kamuga", "ol-kalou"}).Draw(t, label+".clinic"),
		Chart:   rapid.SampledFrom(propCharts).Draw(t, label+".chart"),
		Changes: rapid.IntRange(0, 50).Draw(t, label+".changes"),
		Detail:  rapid.SampledFrom(propDetails).Draw(t, label+".detail"),
	}
	if e.Action != audit.Read {
		e.User = rapid.SampledFrom(propUsers[1:]).Draw(t, label+".user")
		e.Role = "nurse"
	}
	if rapid.Bool().Draw(t, label+".timed") {
		e.Time = t0.Add(time.Duration(rapid.IntRange(-3600, 3600).Draw(t, label+".offset")) * time.Second)
	}
	return e
}

func drawFilter(t *rapid.T) audit.Filter {
	var f audit.Filter
	f.Chart = rapid.SampledFrom(append([]string{""}, propCharts...)).Draw(t, "filter.chart")
	f.User = rapid.SampledFrom(propUsers).Draw(t, "filter.user")
	if rapid.Bool().Draw(t, "filter.device?") {
		f.Device = device(rapid.IntRange(0, 2).Draw(t, "filter.device"))
	}
	if rapid.Bool().Draw(t, "filter.since?") {
		f.Since = t0.Add(time.Duration(rapid.IntRange(-3600, 3600).Draw(t, "filter.since")) * time.Second)
	}
	if rapid.Bool().Draw(t, "filter.until?") {
		f.Until = t0.Add(time.Duration(rapid.IntRange(-3600, 3600).Draw(t, "filter.until")) * time.Second)
	}
	return f
}

func TestPropertyLogMatchesModel(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	rapid.Check(t, func(rt *rapid.T) {
		dir, err := os.MkdirTemp(root, "prop")
		require.NoError(rt, err)
		path := filepath.Join(dir, "access.log")
		clk, model := newClock(), newClock()
		open := func() *audit.Log {
			l, err := audit.Open(path, audit.Config{Now: clk.Now})
			require.NoError(rt, err, "open the access log")
			return l
		}
		l := open()
		defer func() { l.Close() }()
		var want []audit.Entry

		rt.Repeat(map[string]func(*rapid.T){
			"append": func(rt *rapid.T) {
				es := make([]audit.Entry, rapid.IntRange(0, 4).Draw(rt, "n"))
				for i := range es {
					es[i] = drawEntry(rt, "entry")
				}
				bad := len(es) > 0 && rapid.IntRange(0, 9).Draw(rt, "bad") == 0
				if bad {
					es[rapid.IntRange(0, len(es)-1).Draw(rt, "which")].Chart = "c\n1"
				}
				err := l.Append(ctx, es...)
				if bad {
					require.ErrorIs(rt, err, audit.ErrInvalidEntry, "a call holding a bad entry is refused")
					return
				}
				require.NoError(rt, err, "append")
				want = append(want, stamped(model, uint64(len(want)+1), es...)...)
			},
			"reopen": func(rt *rapid.T) {
				require.NoError(rt, l.Close())
				l = open()
			},
			"crash mid-append": func(rt *rapid.T) {
				require.NoError(rt, l.Close())
				tail := []byte(`{"seq":` + rapid.StringMatching(`[0-9a-z",:{ ]{0,40}`).Draw(rt, "tail"))
				f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
				require.NoError(rt, err)
				_, err = f.Write(tail)
				require.NoError(rt, err)
				require.NoError(rt, f.Close())
				l = open()
			},
			"export": func(rt *rapid.T) {
				f := drawFilter(rt)
				format := rapid.SampledFrom([]audit.Format{audit.JSONLines, audit.CSV}).Draw(rt, "format")
				var buf bytes.Buffer
				n, err := l.Export(ctx, &buf, f, format)
				require.NoError(rt, err, "export")
				var got []audit.Entry
				if format == audit.CSV {
					got = parseCSV(rt, buf.Bytes())
				} else {
					got = parseJSONLines(rt, buf.Bytes())
				}
				var exp []audit.Entry
				for _, e := range want {
					if f.Match(e) {
						exp = append(exp, e)
					}
				}
				assert.Equal(rt, exp, got, "the export is the model filtered")
				assert.Equal(rt, len(exp), n)
			},
			"": func(rt *rapid.T) {
				seq, _ := l.Head()
				require.Equal(rt, uint64(len(want)), seq, "the log holds every accepted entry")
			},
		})
		require.Equal(rt, len(want), verifyFile(rt, path), "the chain verifies")
	})
}
