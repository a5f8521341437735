// Command quickstart shows chartsync end to end on one machine: two rural
// clinics and a cloud replica, each an embedded SQLite database in a
// temporary directory. The clinics edit one patient's chart while offline,
// sync through the cloud, and both then show the same chart with the
// conflicting doses and the alerts a clinician must see. Lwanda registers
// the same woman again offline; the duplicate is detected and merged, and
// the merge reaches Kamuga. Finally every replica is closed and reopened,
// and everything is still there.
//
//	go run ./examples/quickstart [-keep]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/chartsync/chartsync/examples/internal/chartfmt"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
)

var (
	nurse  = record.Author{UserID: "u-achieng", Name: "Nurse Achieng", Role: record.RoleNurse, Device: "kamuga-tablet"}
	doctor = record.Author{UserID: "u-mutua", Name: "Dr Mutua", Role: record.RoleClinician, Device: "lwanda-laptop"}
)

func main() {
	keep := flag.Bool("keep", false, "keep the replica databases instead of removing them")
	flag.Parse()
	if err := run(context.Background(), *keep); err != nil {
		fmt.Fprintln(os.Stderr, "quickstart:", err)
		os.Exit(1)
	}
}

type site struct {
	name, path string
	r          *replica.Replica
}

func (s *site) open(ctx context.Context) error {
	r, err := replica.Open(ctx, s.path, replica.Config{})
	if err != nil {
		return fmt.Errorf("open %s: %w", s.name, err)
	}
	s.r = r
	return nil
}

func run(ctx context.Context, keep bool) error {
	dir, err := os.MkdirTemp("", "chartsync-quickstart-*")
	if err != nil {
		return fmt.Errorf("make a temporary directory (check TMPDIR is writable): %w", err)
	}
	if keep {
		fmt.Println("replica databases are kept in", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	kamuga := &site{name: "Kamuga clinic", path: filepath.Join(dir, "kamuga.db")}
	lwanda := &site{name: "Lwanda clinic", path: filepath.Join(dir, "lwanda.db")}
	cloud := &site{name: "cloud", path: filepath.Join(dir, "cloud.db")}
	sites := []*site{kamuga, lwanda, cloud}
	for _, s := range sites {
		if err := s.open(ctx); err != nil {
			return err
		}
	}
	defer func() {
		for _, s := range sites {
			s.r.Close()
		}
	}()

	step("1. Kamuga registers Wanjiru and prescribes amoxicillin, then syncs with the cloud")
	id, err := kamuga.r.Register(ctx, nurse, record.Register{
		GivenName: "Wanjiru", FamilyName: "Mwangi", Sex: "female", EstimatedBirthYear: 1988,
		Village: "Kamuga", Phone: "+254 712 345678", HomeClinic: "kamuga-dispensary",
	})
	if err != nil {
		return err
	}
	rx, err := kamuga.r.Edit(ctx, id, nurse, record.Prescribe{
		Drug: "Amoxicillin", Dose: 500, DoseUnit: "mg", Route: "oral", Frequency: "TDS", DurationDays: 5,
	})
	if err != nil {
		return err
	}
	if err := syncPair(ctx, kamuga, cloud); err != nil {
		return err
	}

	step("2. Wanjiru is referred to Lwanda, which syncs with the cloud and gets her chart")
	if err := syncPair(ctx, lwanda, cloud); err != nil {
		return err
	}

	step("3. Both clinics lose signal for a week and keep working")
	edits := []struct {
		s  *site
		by record.Author
		op record.Op
	}{
		{kamuga, nurse, record.ReviseDose{PrescriptionID: rx.EntryID, Dose: 250, Reason: "weight 38 kg"}},
		{kamuga, nurse, record.AddEncounter{Complaint: "fever and cough", Vitals: record.Vitals{Temperature: 38.4, Pulse: 104, BPSystolic: 110, BPDiastolic: 70}, Note: "Chest clear."}},
		{lwanda, doctor, record.ReviseDose{PrescriptionID: rx.EntryID, Dose: 1000}},
		{lwanda, doctor, record.AddAllergy{Substance: "Penicillin", Severity: "severe", Reaction: "hives and wheeze"}},
		{lwanda, doctor, record.Prescribe{Drug: "Amoxicillin", Dose: 500, DoseUnit: "mg", Route: "oral", Frequency: "BD"}},
		{lwanda, doctor, record.RecordLabResult{Test: "Haemoglobin", LOINC: "718-7", Value: record.Ptr(6.1), Unit: "g/dL",
			RefLow: record.Ptr(12.0), RefHigh: record.Ptr(16.0), CriticalLow: record.Ptr(7.0), SpecimenAt: time.Now().Add(-time.Hour)}},
	}
	for _, e := range edits {
		res, err := e.s.r.Edit(ctx, id, e.by, e.op)
		if err != nil {
			return fmt.Errorf("%s: %w", e.s.name, err)
		}
		fmt.Printf("   %-14s %s\n", e.s.name+":", lastSummary(ctx, e.s, id, res))
	}
	other, err := lwanda.r.Register(ctx, doctor, record.Register{GivenName: "Otieno", FamilyName: "Odhiambo", Sex: "male", BirthDate: "2019-06-14", Village: "Lwanda", HomeClinic: "lwanda-health-centre"})
	if err != nil {
		return err
	}
	fmt.Printf("   %-14s registered Otieno Odhiambo (%s)\n", "Lwanda clinic:", other[:8])
	// Wanjiru comes to Lwanda without her card; the clerk, offline,
	// cannot see Kamuga's chart and registers her again.
	dup, err := lwanda.r.Register(ctx, nurse, record.Register{GivenName: "Wanjeru", FamilyName: "Mwangi", Sex: "female",
		EstimatedBirthYear: 1988, Village: "Kamuga", Phone: "0712 345678", HomeClinic: "lwanda-health-centre"})
	if err != nil {
		return err
	}
	if _, err := lwanda.r.Edit(ctx, dup, nurse, record.AddEncounter{Complaint: "headache", Vitals: record.Vitals{BPSystolic: 150, BPDiastolic: 95}}); err != nil {
		return err
	}
	fmt.Printf("   %-14s registered Wanjeru Mwangi again (%s), a duplicate, and recorded a visit\n", "Lwanda clinic:", dup[:8])

	step("4. Signal returns: each clinic syncs with the cloud")
	for _, s := range []*site{kamuga, lwanda, kamuga} {
		if err := syncPair(ctx, s, cloud); err != nil {
			return err
		}
	}

	step("5. Both clinics now show the same chart")
	vk, err := kamuga.r.Chart(ctx, id)
	if err != nil {
		return err
	}
	vl, err := lwanda.r.Chart(ctx, id)
	if err != nil {
		return err
	}
	if !vk.Heads.Equal(vl.Heads) {
		return errors.New("the clinics did not converge: please report this as a bug")
	}
	chartfmt.Print(os.Stdout, vk, "   ")
	fmt.Printf("\n   Kamuga and Lwanda hold the same version: %s\n", short(vk.Heads.String()))

	step("6. Dr Mutua settles the dose and stops the duplicate; the clinics sync again")
	if _, err := lwanda.r.Edit(ctx, id, doctor, record.ResolveConflict{EntryID: rx.EntryID, Field: "dose", Value: "250"}); err != nil {
		return err
	}
	for _, p := range vl.Prescriptions {
		if p.ID != rx.EntryID {
			if _, err := lwanda.r.Edit(ctx, id, doctor, record.Discontinue{PrescriptionID: p.ID, Reason: "duplicate of the Kamuga prescription"}); err != nil {
				return err
			}
		}
	}
	for _, s := range []*site{lwanda, kamuga} {
		if err := syncPair(ctx, s, cloud); err != nil {
			return err
		}
	}
	vk, err = kamuga.r.Chart(ctx, id)
	if err != nil {
		return err
	}
	fmt.Printf("   Kamuga now shows %d conflicts and these alerts:\n", len(vk.Conflicts))
	for _, a := range vk.Alerts {
		fmt.Printf("   ! %s\n", a.Message)
	}

	step("7. Dr Mutua finds the duplicate and merges it into Wanjiru's chart; the merge reaches Kamuga")
	dups, err := lwanda.r.DuplicatesOf(ctx, dup)
	if err != nil {
		return err
	}
	if len(dups) == 0 || dups[0].ChartID != id {
		return errors.New("the duplicate was not detected: please report this as a bug")
	}
	var reasons []string
	for _, e := range dups[0].Evidence {
		reasons = append(reasons, string(e.Reason))
	}
	fmt.Printf("   Lwanda: chart %s may be the same patient as %s (score %.2f: %s)\n", dup[:8], id[:8], dups[0].Score, strings.Join(reasons, ", "))
	if err := lwanda.r.Merge(ctx, dup, id, doctor, "registered twice: same phone, name and birth year"); err != nil {
		return err
	}
	for _, s := range []*site{lwanda, kamuga} {
		if err := syncPair(ctx, s, cloud); err != nil {
			return err
		}
	}
	vm, err := kamuga.r.Chart(ctx, dup)
	if err != nil {
		return err
	}
	fmt.Printf("   Kamuga reads chart %s and is shown Wanjiru's chart %s: %d encounters (the Lwanda visit among them), merged from %d chart\n",
		dup[:8], vm.ChartID[:8], len(vm.Encounters), len(vm.Absorbed))
	if vm.ChartID != id {
		return errors.New("the merge did not reach Kamuga: please report this as a bug")
	}
	vk = vm

	step("8. Every replica is closed and reopened from disk")
	for _, s := range sites {
		if err := s.r.Close(); err != nil {
			return err
		}
		if err := s.open(ctx); err != nil {
			return err
		}
		charts, err := s.r.Find(ctx, "", 0)
		if err != nil {
			return err
		}
		v, err := s.r.Chart(ctx, id)
		if err != nil {
			return err
		}
		same := "same version as before"
		if !v.Heads.Equal(vk.Heads) {
			return fmt.Errorf("%s reopened at %s, not %s: please report this as a bug", s.name, v.Heads, vk.Heads)
		}
		var names []string
		for _, c := range charts {
			names = append(names, strings.TrimSpace(c.GivenName+" "+c.FamilyName))
		}
		fmt.Printf("   %-14s %d charts (%s); Wanjiru's chart: %d history entries, %s\n", s.name+":", len(charts), strings.Join(names, ", "), len(v.History), same)
	}
	fmt.Println("\nDone. Nothing saved offline was lost.")
	return nil
}

func step(s string) { fmt.Printf("\n%s\n", s) }

func short(s string) string {
	if len(s) > 16 {
		return s[:16] + "…"
	}
	return s
}

func syncPair(ctx context.Context, a, b *site) error {
	st, err := replica.SyncPair(ctx, a.r, b.r)
	if err != nil {
		return fmt.Errorf("sync %s with %s: %w", a.name, b.name, err)
	}
	fmt.Printf("   synced %s ⇄ %s: %d changes up, %d down, %d+%d bytes, %d round trip(s)\n",
		a.name, b.name, st.ChangesAToB, st.ChangesBToA, st.BytesAToB, st.BytesBToA, st.RoundTrips)
	return nil
}

// lastSummary is the history line of the change just made.
func lastSummary(ctx context.Context, s *site, id string, res record.Result) string {
	v, err := s.r.Chart(ctx, id)
	if err != nil {
		return "(could not read the chart back: " + err.Error() + ")"
	}
	for _, h := range v.History {
		if h.Change == res.Change.Hash {
			return h.Summary
		}
	}
	return "(change not in history)"
}
