package web

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/chartsync/chartsync/record"
)

// BenchmarkChartPage serves the chart page of a chart with 200 entries
// (50 each of prescriptions, lab results, visits and diagnoses) to a
// logged-in clinician, and reports the page's size in bytes, and as a
// browser that takes gzip receives it (wire-bytes).
func BenchmarkChartPage(b *testing.B) {
	f := newFixture(b)
	id := f.register(record.Register{GivenName: "Wanjiru", FamilyName: "Mwangi", EstimatedBirthYear: 1988})
	for i := range 50 {
		f.edit(id, record.Prescribe{Drug: fmt.Sprintf("Drug %d", i), Dose: 100, DoseUnit: "mg", Route: "oral", Frequency: "BD"})
		f.edit(id, record.RecordLabResult{Test: fmt.Sprintf("Test %d", i), Value: record.Ptr(float64(i)), Unit: "g/dL", RefLow: record.Ptr(10.0), RefHigh: record.Ptr(20.0), SpecimenAt: f.clock.now()})
		f.edit(id, record.AddEncounter{Complaint: fmt.Sprintf("Visit %d", i), Date: "2026-03-01", Note: "Seen and examined."})
		f.edit(id, record.Diagnose{Text: fmt.Sprintf("Problem %d", i)})
	}
	c := f.client()
	c.login(record.RoleClinician)
	var size int
	b.ResetTimer()
	for b.Loop() {
		code, body := c.get("/chart/" + id)
		if code != http.StatusOK {
			b.Fatalf("chart page: %d", code)
		}
		size = len(body)
	}
	b.ReportMetric(float64(size), "page-bytes")
	req, err := http.NewRequest(http.MethodGet, f.ts.URL+"/chart/"+id, nil)
	if err != nil {
		b.Fatal(err)
	}
	req.Header.Set("Accept-Encoding", "gzip")
	_, zipped, resp := c.do(req)
	if resp.Header.Get("Content-Encoding") != "gzip" {
		b.Fatal("the chart page is not sent gzip-encoded")
	}
	b.ReportMetric(float64(len(zipped)), "wire-bytes")
}
