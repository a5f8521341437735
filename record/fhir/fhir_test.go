package fhir_test

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/record/fhir"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func exportJSON(t *testing.T, c *record.Chart) []byte {
	t.Helper()
	v, err := c.View()
	require.NoError(t, err)
	out, err := fhir.ExportJSON(v)
	require.NoError(t, err, "exporting the chart")
	return out
}

// TestGolden exports each sample chart and compares it with its golden
// file (go test -update rewrites them).
func TestGolden(t *testing.T) {
	for _, s := range samples {
		t.Run(s.name, func(t *testing.T) {
			got := exportJSON(t, s.chart(t))
			path := filepath.Join("testdata", s.name+".json")
			if *update {
				require.NoError(t, os.WriteFile(path, got, 0o644))
			}
			want, err := os.ReadFile(path)
			require.NoError(t, err, "reading the golden file (run go test -update to write it)")
			assert.Equal(t, string(want), string(got), "the export of %s differs from %s", s.name, path)
		})
	}
}

// newMemory is an in-memory target whose clock moves a second per write,
// so that imported entries keep the order they have in the bundle.
func newMemory() *fhir.Memory {
	clock := t0.Add(24 * time.Hour)
	return &fhir.Memory{Now: func() time.Time {
		clock = clock.Add(time.Second)
		return clock
	}}
}

func importNew(t *testing.T, m *fhir.Memory, data []byte) fhir.Result {
	t.Helper()
	b, err := fhir.Decode(data)
	require.NoError(t, err, "decoding the exported bundle")
	res, err := fhir.Import(context.Background(), m, "", importer, "", b)
	require.NoError(t, err, "importing the bundle")
	return res
}

// TestImportTwiceChangesNothing imports each sample into a new chart,
// then the same bundle again into that chart: the second import makes no
// change at all.
func TestImportTwiceChangesNothing(t *testing.T) {
	for _, s := range samples {
		t.Run(s.name, func(t *testing.T) {
			data := exportJSON(t, s.chart(t))
			m := newMemory()
			first := importNew(t, m, data)
			require.True(t, first.Created)
			require.Positive(t, first.Changes)
			heads := m.Get(first.ChartID).Doc().Heads()

			b, err := fhir.Decode(data)
			require.NoError(t, err)
			again, err := fhir.Import(context.Background(), m, first.ChartID, importer, "", b)
			require.NoError(t, err)
			assert.Zero(t, again.Changes, "the second import of the same bundle made changes: %+v", again)
			assert.Equal(t, heads, m.Get(first.ChartID).Doc().Heads(), "the chart changed on the second import")

			// And the bundle the chart was exported from, into it.
			orig := s.chart(t)
			mm := newMemory()
			mm.Add(orig)
			before := orig.Doc().Heads()
			self, err := fhir.Import(context.Background(), mm, orig.ID(), importer, "", b)
			require.NoError(t, err)
			assert.Zero(t, self.Changes, "importing a chart's own export into it made changes: %+v", self)
			assert.Equal(t, before, orig.Doc().Heads())
		})
	}
}

// comparable leaves out of a view what FHIR does not carry into a new
// chart (see the package doc).
func comparable(v record.View) record.View {
	v.ChartID, v.Heads, v.History, v.Conflicts, v.EnteredInError = "", nil, nil, nil, nil
	v.Unreadable, v.Hidden, v.Referrals = 0, nil, nil
	var ids []record.Identifier
	for _, id := range v.Patient.Identifiers {
		if id.System != fhir.SystemResource { // the Patient an import came from
			id.ID = ""
			ids = append(ids, id)
		}
	}
	// Identifiers registered together are listed by their random IDs.
	slices.SortFunc(ids, func(a, b record.Identifier) int { return strings.Compare(a.String(), b.String()) })
	v.Patient.Identifiers = ids
	for i := range v.Allergies {
		a := &v.Allergies[i]
		a.ID, a.Recorded, a.ExternalID = "", record.Recorded{}, nil
	}
	for i := range v.Diagnoses {
		d := &v.Diagnoses[i]
		d.ID, d.Recorded, d.ExternalID = "", record.Recorded{}, nil
	}
	for i := range v.Prescriptions {
		p := &v.Prescriptions[i]
		p.ID, p.Recorded, p.ExternalID = "", record.Recorded{}, nil
		if p.Status == record.StatusActive {
			p.StatusReason = ""
		}
	}
	for i := range v.LabResults {
		l := &v.LabResults[i]
		l.ID, l.Recorded, l.ExternalID, l.Previous = "", record.Recorded{}, nil, nil
		if l.Status == record.StatusCorrected {
			l.Status, l.StatusReason = record.StatusFinal, ""
		}
	}
	for i := range v.Encounters {
		e := &v.Encounters[i]
		e.ID, e.Recorded, e.ExternalID = "", record.Recorded{}, nil
	}
	var alerts []record.Alert
	for _, a := range v.Alerts {
		if !a.InConflict {
			a.Entries = nil
			alerts = append(alerts, a)
		}
	}
	v.Alerts = alerts
	return v
}

// TestRoundTrip imports each sample's export into a new chart and finds
// the same view, but for what FHIR cannot carry; each imported entry's
// external ID names the resource it came from (or keeps its own).
func TestRoundTrip(t *testing.T) {
	for _, s := range samples {
		t.Run(s.name, func(t *testing.T) {
			orig := s.chart(t)
			want, err := orig.View()
			require.NoError(t, err)
			m := newMemory()
			res := importNew(t, m, exportJSON(t, orig))
			got, err := m.Chart(context.Background(), res.ChartID)
			require.NoError(t, err)
			for i, p := range got.Prescriptions {
				w := want.Prescriptions[i]
				if w.ExternalID != nil {
					assert.Equal(t, w.ExternalID, p.ExternalID, "an external ID is kept")
				} else {
					assert.Equal(t, &record.Identifier{System: fhir.SystemResource, Value: "MedicationRequest/" + w.ID}, p.ExternalID)
				}
			}
			for _, e := range want.EnteredInError {
				assert.True(t, slices.ContainsFunc(res.Skipped, func(s fhir.Skipped) bool { return s.Resource != "" && contains(s.Resource, e.ID) }),
					"the entry %s entered in error is reported, not silently dropped", e.ID)
			}
			assert.Equal(t, comparable(want), comparable(got), "the chart read back from FHIR differs")
		})
	}
}

func contains(s, sub string) bool {
	return len(sub) > 0 && len(s) >= len(sub) && slices.Contains([]string{s[len(s)-len(sub):]}, sub)
}
