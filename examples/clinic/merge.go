package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/chartsync/chartsync/examples/internal/chartfmt"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
)

// Merging duplicate charts: duplicates lists a chart's likely duplicates
// (replica.DuplicatesOf) with the evidence; merge and unmerge are
// replica.Merge and replica.Unmerge, for the roles the permission matrix
// lets merge (clinicians and administrators).

// explainMerge turns a refused merge or unmerge into what to do next, or
// "" for an error that is not one of them.
func explainMerge(err error) string {
	switch {
	case errors.Is(err, replica.ErrAlreadyMerged):
		return "the chart is already merged into that chart: nothing to do."
	case errors.Is(err, replica.ErrNotMerged):
		return "the chart is not merged into another chart: nothing to unmerge."
	case errors.Is(err, replica.ErrForwarded):
		return err.Error() + ". Merge into the chart it was merged into (\"clinic show CHART\" names it), or unmerge it first."
	}
	return ""
}

func init() {
	register(&command{
		name: "duplicates", args: "CHART",
		help: "List the charts that may be the same patient as this one, most likely first, with the reasons (merge them with clinic merge).",
		run: func(ctx context.Context, a *app, fs *flag.FlagSet, args []string) error {
			ref, err := oneArg(args, "a chart ID (or its first characters)")
			if err != nil {
				return err
			}
			if _, err := a.author(ctx); err != nil {
				return err
			}
			id, err := a.chart(ctx, ref)
			if err != nil {
				return err
			}
			cs, err := a.r.DuplicatesOf(ctx, id)
			if errors.Is(err, replica.ErrTooManyMatches) {
				fmt.Fprintln(a.out, "Too many charts share this patient's name or phone to compare them all: find them with \"clinic find\".")
				return nil
			}
			if err != nil {
				return err
			}
			if len(cs) == 0 {
				fmt.Fprintln(a.out, "No likely duplicate of this chart on this device.")
				return nil
			}
			tw := tabwriter.NewWriter(a.out, 0, 0, 2, ' ', 0)
			fmt.Fprintln(tw, "CHART\tNAME\tBORN\tVILLAGE\tSCORE\tREASONS")
			for _, c := range cs {
				var name, born, village string
				if v, err := a.r.Chart(ctx, c.ChartID); err == nil {
					name, born, village = v.Patient.FullName(), bornText(v.Patient), v.Patient.Village
				}
				var reasons []string
				for _, e := range c.Evidence {
					if e.Weight > 0 {
						reasons = append(reasons, e.Detail)
					}
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%.1f\t%s\n", chartfmt.Short(c.ChartID), name, born, village, c.Score, strings.Join(reasons, "; "))
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintln(a.out, "Same patient? Merge the duplicate into the chart to keep: clinic merge DUPLICATE -into CHART -reason \"...\"")
			return nil
		},
	})

	var into, mergeReason string
	register(&command{
		name: "merge", args: "CHART -into SURVIVOR -reason TEXT",
		help: "Merge a duplicate chart into the chart to keep (clinicians and administrators).\nThe kept chart shows every entry of both; the merged chart forwards to it and keeps its history. Undo with clinic unmerge.",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&into, "into", "", "the chart to keep, which the chart is merged into (required)")
			fs.StringVar(&mergeReason, "reason", "", "why the two charts are the same patient (required)")
		},
		run: func(ctx context.Context, a *app, fs *flag.FlagSet, args []string) error {
			ref, err := oneArg(args, "the chart to merge away (its ID or first characters), and the chart to keep with -into")
			if err != nil {
				return err
			}
			if into == "" {
				return usagef("-into is required: the chart to keep")
			}
			if strings.TrimSpace(mergeReason) == "" {
				return usagef("-reason is required: say why the two charts are the same patient")
			}
			by, err := a.author(ctx)
			if err != nil {
				return err
			}
			id, err := a.chart(ctx, ref)
			if err != nil {
				return err
			}
			survivor, err := a.chart(ctx, into)
			if err != nil {
				return fmt.Errorf("-into: %w", err)
			}
			if id == survivor {
				return usagef("give two different charts: the chart to merge away, and the chart to keep with -into")
			}
			if err := a.r.Merge(ctx, id, survivor, by, mergeReason); err != nil {
				if msg := explainMerge(err); msg != "" {
					return errors.New(msg)
				}
				return err
			}
			fmt.Fprintf(a.out, "Merged chart %s into chart %s: \"clinic show %s\" shows both charts' entries.\n", chartfmt.Short(id), chartfmt.Short(survivor), chartfmt.Short(survivor))
			return nil
		},
	})

	var unmergeReason string
	register(&command{
		name: "unmerge", args: "CHART -reason TEXT",
		help: "Make a chart merged into another a chart of its own again (clinicians and administrators).",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&unmergeReason, "reason", "", "why the two charts are not the same patient (required)")
		},
		run: func(ctx context.Context, a *app, fs *flag.FlagSet, args []string) error {
			ref, err := oneArg(args, "the merged chart (its ID or first characters)")
			if err != nil {
				return err
			}
			if strings.TrimSpace(unmergeReason) == "" {
				return usagef("-reason is required: say why the charts are not the same patient")
			}
			by, err := a.author(ctx)
			if err != nil {
				return err
			}
			id, err := a.chart(ctx, ref)
			if err != nil {
				return err
			}
			if err := a.r.Unmerge(ctx, id, by, unmergeReason); err != nil {
				if msg := explainMerge(err); msg != "" {
					return errors.New(msg)
				}
				return err
			}
			fmt.Fprintf(a.out, "Unmerged chart %s: it is a chart of its own again.\n", chartfmt.Short(id))
			return nil
		},
	})
}

// bornText says a patient's birth date or estimated year.
func bornText(p record.Patient) string {
	if p.BirthDate != "" {
		return p.BirthDate
	}
	if p.EstimatedBirthYear != 0 {
		return fmt.Sprintf("about %d", p.EstimatedBirthYear)
	}
	return ""
}

// printMerges says, after a chart, which chart asked for was merged into
// it and which charts it absorbed.
func printMerges(ctx context.Context, a *app, asked string, v record.View) {
	names := map[string]string{}
	for _, ab := range v.Absorbed {
		names[ab.ChartID] = ab.Patient.FullName()
	}
	if asked != v.ChartID {
		fmt.Fprintf(a.out, "Chart %s was merged into this chart (%s); its entries are shown here.\n", chartfmt.Short(asked), chartfmt.Short(v.ChartID))
	}
	for _, m := range v.Merges {
		name := names[m.ChartID]
		if name == "" {
			if own, err := a.r.OwnChart(ctx, m.ChartID); err == nil {
				name = own.Patient.FullName()
			}
		}
		state := ""
		switch {
		case m.Absorbed:
		case m.Status == record.StatusActive:
			state = " [MERGE CONFLICT: merged elsewhere at the same time; merge it again or unmerge it]"
		default:
			state = " [" + m.Status + "]"
		}
		fmt.Fprintf(a.out, "Merged into this chart: %s %s (%s)%s\n", chartfmt.Short(m.ChartID), name, m.Reason, state)
	}
}
