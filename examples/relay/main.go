// Command relay shows chartsync's store-and-forward relay on one machine:
// three village clinics that never get signal, one health worker's phone
// that walks between them and the district hub, and a hub with internet
// that syncs with the cloud. Every replica is an SQLite database and every
// relay node a directory, all in a temporary directory.
//
// The villages are enrolled offline: each writes an enrolment request, the
// hub administrator signs it, and the signed enrolment and roster come back
// on a "USB stick". Bundles travel signed by their sender and encrypted to
// their recipient; the phone can read none of them. The demo prints what
// the phone carries on each visit and ends when every replica holds the
// same charts with the same heads (exit status 1 otherwise).
//
//	go run ./examples/relay [-keep]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/transport/relay"
)

var (
	nurse  = record.Author{UserID: "u-achieng", Name: "Nurse Achieng", Role: record.RoleNurse, Device: "village-tablet"}
	chw    = record.Author{UserID: "u-otieno", Name: "Otieno (CHW)", Role: record.RoleCommunityHealthWorker, Device: "village-phone"}
	doctor = record.Author{UserID: "u-mutua", Name: "Dr Mutua", Role: record.RoleClinician, Device: "district-laptop"}
	labTec = record.Author{UserID: "u-wafula", Name: "Wafula (lab)", Role: record.RoleLabTechnician, Device: "cloud-lab"}
	clerk  = record.Author{UserID: "u-njoki", Name: "Njoki (records)", Role: record.RoleRegistrationClerk, Device: "district-desk"}
)

// maxTrips bounds the phone's rounds.
const maxTrips = 10

func main() {
	keep := flag.Bool("keep", false, "keep the databases and relay directories instead of removing them")
	flag.Parse()
	if err := run(context.Background(), *keep); err != nil {
		fmt.Fprintln(os.Stderr, "relay demo:", err)
		os.Exit(1)
	}
}

// site is a replica, with its relay endpoint if it has one.
type site struct {
	name   string
	clinic string
	r      *replica.Replica
	keys   *device.Identity
	e      *relay.Endpoint
}

func run(ctx context.Context, keep bool) error {
	dir, err := os.MkdirTemp("", "chartsync-relay-*")
	if err != nil {
		return fmt.Errorf("make a temporary directory (check TMPDIR is writable): %w", err)
	}
	if keep {
		fmt.Println("files are kept in", dir)
	} else {
		defer os.RemoveAll(dir)
	}

	step("1. Open five replicas: three villages, the district hub, the cloud")
	villages := []*site{
		{name: "Kamuga", clinic: "kamuga"},
		{name: "Lwanda", clinic: "lwanda"},
		{name: "Siaya", clinic: "siaya"},
	}
	hub := &site{name: "Hub", clinic: "district-hub"}
	cloud := &site{name: "Cloud", clinic: "cloud"}
	sites := append(slices.Clone(villages), hub, cloud)
	for _, s := range sites {
		// The device's keys name its replica, which signs every change
		// it makes with them.
		if s.keys, err = device.Generate(replica.NewID(), s.clinic); err != nil {
			return err
		}
		if err := s.keys.Save(filepath.Join(dir, strings.ToLower(s.name)+".key")); err != nil {
			return err
		}
		fmt.Printf("   %-7s replica %s, signing key %s\n", s.name, s.keys.ReplicaID()[:8], device.Fingerprint(s.keys.Public().SignKey))
	}

	step("2. Enrol every device; the villages never go online")
	cloudKey, err := device.NewAuthority()
	if err != nil {
		return err
	}
	hubKey, err := device.NewAuthority()
	if err != nil {
		return err
	}
	// Every device is installed with the cloud's key, and the hub's key
	// for the three villages.
	trust := device.RosterConfig{Authorities: []device.TrustedAuthority{
		{Key: cloudKey.PublicKey()},
		{Key: hubKey.PublicKey(), Clinics: []string{"kamuga", "lwanda", "siaya"}},
	}}
	hubRoster, err := device.NewRoster(trust)
	if err != nil {
		return err
	}
	now := time.Now()
	for _, s := range []*site{hub, cloud} { // online: enrolled by the cloud
		rec, err := cloudKey.Enrol(s.keys.Public(), now, 365*24*time.Hour)
		if err != nil {
			return err
		}
		if _, err := hubRoster.Add(rec); err != nil {
			return err
		}
	}
	usb := filepath.Join(dir, "usb-stick")
	if err := os.MkdirAll(usb, 0o700); err != nil {
		return err
	}
	for _, v := range villages { // offline: a request on the USB stick, signed at the hub
		reqPath := filepath.Join(usb, v.clinic+".request")
		if err := os.WriteFile(reqPath, v.keys.Request(), 0o600); err != nil {
			return err
		}
		req, err := os.ReadFile(reqPath)
		if err != nil {
			return err
		}
		rec, err := hubKey.EnrolRequest(req, now, 365*24*time.Hour)
		if err != nil {
			return fmt.Errorf("enrol %s: %w", v.name, err)
		}
		if _, err := hubRoster.Add(rec); err != nil {
			return err
		}
		fmt.Printf("   %-7s request carried to the hub and signed (%d bytes)\n", v.name, len(req))
	}
	rosterPath := filepath.Join(usb, "roster")
	if err := hubRoster.Save(rosterPath); err != nil {
		return err
	}
	fmt.Printf("   the roster (%d devices) goes back to every village on the USB stick\n", len(hubRoster.Enrolments()))

	// Each device loads its own copy of the roster (the phone too), and
	// its replica checks that every change it receives is signed by the
	// enrolled device that made it, by a role allowed to make it.
	for _, s := range sites {
		roster, err := device.LoadRoster(rosterPath, trust)
		if err != nil {
			return fmt.Errorf("%s loads the roster: %w", s.name, err)
		}
		// The cloud's own devices may change any chart; every other
		// device only its own clinic's and those referred to it.
		cfg := replica.Config{Signer: s.keys, Keys: roster, CheckAuthors: true, Unscoped: []string{cloud.clinic}}
		if s.r, err = replica.Open(ctx, filepath.Join(dir, strings.ToLower(s.name)+".db"), cfg); err != nil {
			return fmt.Errorf("open %s: %w", s.name, err)
		}
		defer s.r.Close()
	}
	names := map[string]string{}
	for _, s := range sites {
		names[s.r.ID()] = s.name
	}
	var villageIDs []string
	for _, v := range villages {
		villageIDs = append(villageIDs, v.r.ID())
	}
	for _, s := range append(slices.Clone(villages), hub) {
		roster, err := device.LoadRoster(rosterPath, trust)
		if err != nil {
			return fmt.Errorf("%s loads the roster: %w", s.name, err)
		}
		peers := []string{hub.r.ID()}
		if s == hub {
			peers = villageIDs
		}
		if s.e, err = relay.OpenEndpoint(filepath.Join(dir, strings.ToLower(s.name)+"-relay"), s.r, s.keys, roster, relay.Config{Peers: peers}); err != nil {
			return err
		}
		defer s.e.Close()
	}
	phoneRoster, err := device.LoadRoster(rosterPath, trust)
	if err != nil {
		return err
	}
	phone, err := relay.OpenNode(filepath.Join(dir, "phone"), phoneRoster, relay.NodeConfig{Budget: 50 << 20})
	if err != nil {
		return err
	}
	defer phone.Close()

	step("3. A week offline: each village registers and treats patients")
	charts := map[string]string{}
	type reg struct {
		v            *site
		given, fam   string
		by           record.Author
		then         record.Op
		sex          string
		estimatedDOB int
		what         string
	}
	regs := []reg{
		{villages[0], "Wanjiru", "Mwangi", nurse, record.Prescribe{Drug: "Amoxicillin", Dose: 500, DoseUnit: "mg", Route: "oral", Frequency: "TDS", DurationDays: 5}, "female", 1988, "prescribes amoxicillin 500 mg"},
		{villages[1], "Baraka", "Omondi", chw, record.AddEncounter{Complaint: "fever for three days", Vitals: record.Vitals{Temperature: 38.9}, Note: "RDT positive for malaria."}, "male", 2016, "records a fever, RDT positive"},
		{villages[2], "Nafula", "Wekesa", nurse, record.AddAllergy{Substance: "Sulfadoxine-pyrimethamine", Reaction: "rash", Severity: "moderate"}, "female", 1995, "records an allergy to SP"},
	}
	for _, g := range regs {
		id, err := g.v.r.Register(ctx, g.by, record.Register{GivenName: g.given, FamilyName: g.fam, Sex: g.sex, EstimatedBirthYear: g.estimatedDOB, Village: g.v.name, HomeClinic: g.v.clinic})
		if err != nil {
			return err
		}
		if _, err := g.v.r.Edit(ctx, id, g.by, g.then); err != nil {
			return err
		}
		charts[g.given] = id
		fmt.Printf("   %-7s registers %s %s; %s\n", g.v.name+":", g.given, g.fam, g.what)
	}
	// The cloud already holds an older chart nobody in the villages has,
	// registered at the district's records desk, with a result from its lab.
	old, err := cloud.r.Register(ctx, clerk, record.Register{GivenName: "Akinyi", FamilyName: "Atieno", Sex: "female", EstimatedBirthYear: 1970, Village: "Kisumu", HomeClinic: "kamuga"})
	if err != nil {
		return err
	}
	charts["Akinyi"] = old
	if _, err := cloud.r.Edit(ctx, old, labTec, record.RecordLabResult{Test: "HbA1c", LOINC: "4548-4", Value: record.Ptr(8.2), Unit: "%", RefHigh: record.Ptr(6.5), SpecimenAt: time.Now().Add(-48 * time.Hour)}); err != nil {
		return err
	}
	fmt.Printf("   %-7s the lab records Akinyi Atieno's HbA1c\n", "Cloud:")

	// A stranger drops a forged bundle on the phone: it is refused on arrival.
	forged := filepath.Join(phone.Dir(), "free-airtime.relay")
	if err := os.WriteFile(forged, []byte("CSY\x01\x01\x00 not a bundle"), 0o600); err != nil {
		return err
	}

	step("4. The phone walks Kamuga → Lwanda → Siaya → Hub and back, until everyone agrees\n   and every bundle's acknowledgement has come home")
	route := append(slices.Clone(villages), hub)
	converged, settled := false, false
	for trip := 1; trip <= maxTrips && !(converged && settled); trip++ {
		fmt.Printf("   trip %d\n", trip)
		for _, s := range route {
			if err := visit(ctx, s, phone, names); err != nil {
				return err
			}
			if s == hub {
				st, err := replica.SyncPair(ctx, hub.r, cloud.r)
				if err != nil {
					return fmt.Errorf("hub syncs with the cloud: %w", err)
				}
				fmt.Printf("     Hub ⇄ Cloud over the internet: %d changes up, %d down\n", st.AppliedAtB, st.AppliedAtA)
				// What came down from the cloud is sealed for the villages now.
				if _, err := hub.e.Sync(ctx); err != nil {
					return err
				}
			}
		}
		if trip == 1 {
			// Dr Mutua at the district reviews Baraka's chart, which came up with the phone.
			if _, err := cloud.r.Edit(ctx, charts["Baraka"], doctor, record.Diagnose{Code: "B54", Text: "Malaria, unspecified"}); err != nil {
				return err
			}
			fmt.Println("   Dr Mutua (cloud) diagnoses Baraka Omondi with malaria")
		}
		var err error
		if converged, err = allAgree(ctx, sites); err != nil {
			return err
		}
		waiting, err := unacknowledged(ctx, route)
		if err != nil {
			return err
		}
		settled = waiting == 0
		fmt.Printf("   after trip %d: replicas agree: %v; bundles awaiting acknowledgement: %d\n", trip, converged, waiting)
	}
	if !converged {
		return fmt.Errorf("the replicas did not converge after %d trips: please report this as a bug", maxTrips)
	}
	if !settled {
		return fmt.Errorf("acknowledgements did not all come home after %d trips: please report this as a bug", maxTrips)
	}

	step("5. Every replica holds the same charts, with the same heads")
	want, err := headsOf(ctx, cloud.r)
	if err != nil {
		return err
	}
	for _, s := range sites {
		got, err := headsOf(ctx, s.r)
		if err != nil {
			return err
		}
		fmt.Printf("   %-7s %d charts, heads match the cloud: %v\n", s.name+":", len(got), equalHeads(got, want))
	}
	v, err := villages[1].r.Chart(ctx, charts["Baraka"])
	if err != nil {
		return err
	}
	fmt.Printf("   Lwanda sees Dr Mutua's diagnosis for Baraka: %d diagnosis, history of %d entries\n", len(v.Diagnoses), len(v.History))
	return nil
}

// visit is the phone at a site: the site syncs (opens what it holds,
// seals what its peers need), the phone and the site exchange bundles,
// the site syncs again to open what the phone brought and answer it, and
// the phone takes the answers.
func visit(ctx context.Context, s *site, phone *relay.Node, names map[string]string) error {
	if _, err := s.e.Sync(ctx); err != nil {
		fmt.Printf("     %s refused some arrivals: %v\n", s.name, err)
	}
	scan, err := phone.Scan(ctx)
	if err != nil {
		return err
	}
	for _, r := range scan.Rejected {
		fmt.Printf("     the phone refuses %s: %v\n", filepath.Base(r.Path), r.Err)
	}
	up, down, err := relay.Exchange(ctx, s.e.Node(), phone)
	if err != nil {
		return fmt.Errorf("phone at %s: %w", s.name, err)
	}
	st, err := s.e.Sync(ctx)
	if err != nil {
		fmt.Printf("     %s refused some arrivals: %v\n", s.name, err)
	}
	// The phone waits while the clinic opens what it brought, and takes
	// the acknowledgements and answers with it.
	replies, err := relay.Carry(ctx, s.e.Node(), phone)
	if err != nil {
		return fmt.Errorf("phone at %s: %w", s.name, err)
	}
	up.Carried = append(up.Carried, replies.Carried...)
	up.Full = append(up.Full, replies.Full...)
	fmt.Printf("     at %-7s drops off %s; %s opens %s (%s); picks up %s\n",
		s.name, describe(down, names), s.name, plural(st.BundlesReceived, "bundle"), plural(st.ChangesApplied, "new change"), describe(up, names))
	return nil
}

// describe says what one carry moved, in words.
func describe(r relay.CarryResult, names map[string]string) string {
	if len(r.Carried) == 0 {
		return "nothing"
	}
	var parts []string
	for _, it := range r.Carried {
		what := "changes"
		if it.Kind == relay.KindAck {
			what = "ack"
		}
		parts = append(parts, fmt.Sprintf("%s %s→%s", what, names[it.Sender], names[it.Recipient]))
	}
	s := strings.Join(parts, ", ")
	if len(r.Full) > 0 {
		s += fmt.Sprintf(" (%d left for lack of room)", len(r.Full))
	}
	return fmt.Sprintf("%d (%s, %.1f KB)", len(r.Carried), s, float64(r.Bytes())/1024)
}

// unacknowledged counts the bundles of changes each site sent that are
// still in its outbox, waiting for their acknowledgement.
func unacknowledged(ctx context.Context, sites []*site) (int, error) {
	n := 0
	for _, s := range sites {
		items, err := s.e.Node().Items(ctx)
		if err != nil {
			return 0, err
		}
		for _, it := range items {
			if it.Kind == relay.KindChanges && it.Sender == s.r.ID() {
				n++
			}
		}
	}
	return n, nil
}

func headsOf(ctx context.Context, r *replica.Replica) (map[string]string, error) {
	cs, err := r.Find(ctx, "", 0)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, c := range cs {
		out[c.ID] = c.Heads.String()
	}
	return out, nil
}

func equalHeads(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

func allAgree(ctx context.Context, sites []*site) (bool, error) {
	want, err := headsOf(ctx, sites[0].r)
	if err != nil {
		return false, err
	}
	for _, s := range sites[1:] {
		got, err := headsOf(ctx, s.r)
		if err != nil {
			return false, err
		}
		if !equalHeads(got, want) {
			return false, nil
		}
	}
	return true, nil
}

func step(s string) { fmt.Println("\n" + s) }

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}
