package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"slices"

	"github.com/chartsync/chartsync/internal/atomicfile"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/record/fhir"
	"github.com/chartsync/chartsync/record/identity"
	"github.com/chartsync/chartsync/replica"
)

// fhirCommands registers export-fhir and import-fhir.
func fhirCommands() {
	var chartRef, out string
	register(&command{
		name: "export-fhir", args: "-chart CHART -out FILE",
		help: "Write a chart as a FHIR R4 Bundle (JSON) to a file.",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&chartRef, "chart", "", "the chart's ID or its first characters (required)")
			fs.StringVar(&out, "out", "", "the file to write, e.g. wanjiru.fhir.json (required)")
		},
		run: func(ctx context.Context, a *app, fs *flag.FlagSet, args []string) error {
			if chartRef == "" || out == "" {
				return usagef("-chart and -out are required")
			}
			if err := noRefs(args); err != nil {
				return err
			}
			v, err := a.view(ctx, []string{chartRef})
			if err != nil {
				return err
			}
			data, err := fhir.ExportJSON(v)
			if err != nil {
				return err
			}
			if err := atomicfile.Write(out, data, atomicfile.Options{}); err != nil {
				return fmt.Errorf("write %s: %w", out, err)
			}
			fmt.Fprintf(a.out, "Wrote the chart of %s (%s) to %s: a FHIR R4 Bundle, %d bytes.\n",
				v.Patient.FullName(), v.ChartID, out, len(data))
			if len(v.Hidden) > 0 {
				fmt.Fprintf(a.out, "Left out, as your role may not read them: %v.\n", v.Hidden)
			}
			if len(v.Conflicts) > 0 {
				fmt.Fprintf(a.out, "%s in the bundle as extensions; the value shown here is the one exported.\n", plural(len(v.Conflicts), "unsettled conflict is", "unsettled conflicts are"))
			}
			return nil
		},
	})

	var in string
	register(&command{
		name: "import-fhir", args: "-in FILE",
		help: "Import a FHIR R4 Bundle into the chart of its patient (found by chart ID or identifier), or a new chart.",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&in, "in", "", "the bundle to read (required)")
		},
		run: func(ctx context.Context, a *app, fs *flag.FlagSet, args []string) error {
			if in == "" {
				return usagef("-in is required")
			}
			if err := noRefs(args); err != nil {
				return err
			}
			by, err := a.author(ctx)
			if err != nil {
				return err
			}
			d, err := a.device()
			if err != nil {
				return err
			}
			info, err := os.Stat(in)
			if err != nil {
				return err
			}
			if info.Size() > fhir.MaxBundleSize {
				return fmt.Errorf("%s is %d bytes, more than a bundle may be (%d): nothing imported", in, info.Size(), fhir.MaxBundleSize)
			}
			data, err := os.ReadFile(in)
			if err != nil {
				return err
			}
			b, err := fhir.Decode(data)
			if err != nil {
				return fmt.Errorf("%s: %w (nothing imported)", in, err)
			}
			chartID, err := chartOfBundle(ctx, a.r, b)
			if err != nil {
				return err
			}
			res, err := fhir.Import(ctx, a.r, chartID, by, d.Clinic, b)
			if err != nil {
				if res.Changes > 0 {
					return fmt.Errorf("%w; %s saved before it: run the import again to complete it", err, plural(res.Changes, "change was", "changes were"))
				}
				return fmt.Errorf("%w (nothing imported)", err)
			}
			switch {
			case res.Created:
				fmt.Fprintf(a.out, "Imported into a new chart %s: %s added.\n", res.ChartID, plural(res.Added, "entry", "entries"))
			case res.Changes == 0:
				fmt.Fprintf(a.out, "Chart %s already holds everything in %s: nothing changed.\n", res.ChartID, in)
			default:
				fmt.Fprintf(a.out, "Imported into chart %s: %s added, %d updated.\n", res.ChartID, plural(res.Added, "entry", "entries"), res.Updated)
			}
			for _, u := range res.Unknown {
				fmt.Fprintf(a.out, "Not imported: %s (this app does not import that kind of resource).\n", u)
			}
			for _, s := range res.Skipped {
				fmt.Fprintf(a.out, "Not imported: %s: %s.\n", s.Resource, s.Reason)
			}
			return nil
		},
	})
}

// errAmbiguousPatient is returned when a bundle's identifiers name
// several charts.
var errAmbiguousPatient = errors.New("the bundle's patient identifiers match several charts")

// chartOfBundle finds the chart a bundle belongs to: the chart it was
// exported from, or the one chart with one of its patient's identifiers;
// "" for a patient this device does not know.
func chartOfBundle(ctx context.Context, r *replica.Replica, b *fhir.Bundle) (string, error) {
	if b.PatientID != "" {
		if _, err := r.Chart(ctx, b.PatientID); err == nil {
			return b.PatientID, nil
		}
	}
	var found []string
	for _, id := range b.Identifiers() {
		if id.Status == record.StatusInactive {
			continue
		}
		hits, err := r.Search(ctx, identity.Compact(id.Value), 20)
		if err != nil && !errors.Is(err, replica.ErrTooManyMatches) {
			return "", err
		}
		for _, h := range hits {
			v, err := r.Chart(ctx, h.ID)
			if err != nil {
				return "", err
			}
			if slices.ContainsFunc(v.Patient.Identifiers, func(p record.Identifier) bool {
				return p.System == id.System && p.Value == id.Value && p.Status == record.StatusActive
			}) && !slices.Contains(found, h.ID) {
				found = append(found, h.ID)
			}
		}
	}
	switch len(found) {
	case 0:
		return "", nil
	case 1:
		return found[0], nil
	}
	return "", fmt.Errorf("%w (%v): merge the duplicates first, nothing imported", errAmbiguousPatient, found)
}
