package replica_test

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/record/identity"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/store"
	"github.com/chartsync/chartsync/replica/store/sqlite"
)

// registerPatient registers p (home clinic "kamuga-dispensary" unless set).
func registerPatient(t T, r *replica.Replica, p record.Patient) string {
	t.Helper()
	if p.HomeClinic == "" {
		p.HomeClinic = "kamuga-dispensary"
	}
	if p.Sex == "" {
		p.Sex = "female"
	}
	id, err := r.Register(context.Background(), nurse, record.Register(p))
	require.NoError(t, err, "register %s", p.FullName())
	return id
}

func foundIDs(fs []replica.Found) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.ID)
	}
	return out
}

// replicaStores opens a replica over each kind of store the tests cover.
var replicaStores = []struct {
	name string
	open func(t *testing.T) *replica.Replica
}{
	{"memory", func(t *testing.T) *replica.Replica { r, _ := newMem(t, replica.Config{Now: frozen}); return r }},
	{"sqlite", func(t *testing.T) *replica.Replica {
		r, _ := openSQLite(t, tempDB(t, "search"), replica.Config{Now: frozen})
		return r
	}},
}

// TestSearch finds registered patients by what a clerk types: names in
// any order, case and accents, spelling variants, first letters, village,
// phone and clinic number, through the store's index; a renamed patient
// is found by the new name only.
func TestSearch(t *testing.T) {
	ctx := context.Background()
	for _, st := range replicaStores {
		t.Run(st.name, func(t *testing.T) {
			r := st.open(t)
			wanjiru := registerPatient(t, r, record.Patient{GivenName: "Wanjiru", FamilyName: "Mwangi", Village: "Kamuga",
				Phone: "+254 712 345678", BirthDate: "1990-05-01",
				Identifiers: []record.Identifier{{System: record.SystemClinic, Value: "KMG-0042"}}})
			wanjiku := registerPatient(t, r, record.Patient{GivenName: "Wanjiku", FamilyName: "Mwangi", Village: "Nyeri", EstimatedBirthYear: 1962})
			otieno := registerPatient(t, r, record.Patient{GivenName: "Achieng", FamilyName: "Otieno", Village: "Kamuga", EstimatedBirthYear: 1975})

			// Charts that match alike are listed by ID.
			tie := func(ids ...string) []string { return slices.Sorted(slices.Values(ids)) }
			for _, tt := range []struct {
				query string
				limit int
				want  []string
			}{
				{"wanjiru mwangi", 0, []string{wanjiru}},
				{"Mwangi Wanjiru", 0, []string{wanjiru}},
				{"Wanjiro", 0, []string{wanjiru}}, // a spelling variant
				{"WANJÍRU", 0, []string{wanjiru}},
				{"wanj", 0, tie(wanjiku, wanjiru)}, // first letters
				{"mwangi", 0, tie(wanjiku, wanjiru)},
				{"mwangi nyeri", 0, []string{wanjiku}},
				{"kamuga", 0, tie(otieno, wanjiru)},
				{"0712 345 678", 0, []string{wanjiru}},
				{"kmg 0042", 0, []string{wanjiru}},
				{"wanjiru otieno", 0, nil}, // every word must match
				{"nobody", 0, nil},
				{"", 0, nil},
				{"mwangi", 1, tie(wanjiku, wanjiru)[:1]},
			} {
				got, err := r.Search(ctx, tt.query, tt.limit)
				require.NoError(t, err, tt.query)
				assert.Equal(t, tt.want, foundIDs(got), "search %q (limit %d)", tt.query, tt.limit)
			}

			got, err := r.Search(ctx, "wanjiru", 0)
			require.NoError(t, err)
			require.Len(t, got, 1)
			assert.Equal(t, "Mwangi", got[0].FamilyName, "a search returns the chart's index entry")
			assert.InDelta(t, 1.01, got[0].Score, 1e-9, "a whole word of a name scores 1, plus 0.01 for a name")
			mixed, err := r.Search(ctx, "wanjiru kamuga", 0)
			require.NoError(t, err)
			require.Len(t, mixed, 1)
			assert.Less(t, mixed[0].Score, got[0].Score, "a village matches less well than a name")

			// A rename replaces the chart's keys.
			newName := "Kamau"
			edit(t, r, wanjiru, record.UpdateDemographics{FamilyName: &newName})
			got, err = r.Search(ctx, "wanjiru mwangi", 0)
			require.NoError(t, err)
			assert.Empty(t, got, "the old name no longer finds the renamed patient")
			got, err = r.Search(ctx, "wanjiru kamau", 0)
			require.NoError(t, err)
			assert.Equal(t, []string{wanjiru}, foundIDs(got), "the new name does")
			got, err = r.Search(ctx, "+254712345678", 0)
			require.NoError(t, err)
			assert.Equal(t, []string{wanjiru}, foundIDs(got), "and so does the phone still")
		})
	}
}

// TestSearchFindsReceivedCharts: a chart that arrives by sync is in the
// receiving replica's index, under its keys as edited elsewhere.
func TestSearchFindsReceivedCharts(t *testing.T) {
	ctx := context.Background()
	clinic, _ := newMem(t, replica.Config{Now: frozen})
	cloud, _ := openSQLite(t, tempDB(t, "cloud"), replica.Config{Now: frozen})
	id := registerPatient(t, clinic, record.Patient{GivenName: "Akosua", FamilyName: "Mensah", EstimatedBirthYear: 1990, Village: "Asafo", Phone: "024 555 0101"})
	_, err := replica.SyncPair(ctx, clinic, cloud)
	require.NoError(t, err)
	got, err := cloud.Search(ctx, "akosua asafo", 0)
	require.NoError(t, err)
	assert.Equal(t, []string{id}, foundIDs(got))

	village := "Kumasi"
	edit(t, clinic, id, record.UpdateDemographics{Village: &village})
	_, err = replica.SyncPair(ctx, clinic, cloud)
	require.NoError(t, err)
	got, err = cloud.Search(ctx, "akosua asafo", 0)
	require.NoError(t, err)
	assert.Empty(t, got, "a received edit replaces the chart's keys")
	got, err = cloud.Search(ctx, "mensah kumasi", 0)
	require.NoError(t, err)
	assert.Equal(t, []string{id}, foundIDs(got))
}

// Pools the property tests draw patients and queries from: names that
// share phonetic keys and prefixes, accents, phones and clinic numbers.
var (
	givenPool   = []string{"Wanjiru", "Wanjiku", "Akosua", "Amina", "Mohammed", "Muhammad", "Priya", "Ravi", "Mary", "Meera"}
	familyPool  = []string{"Mwangi", "Muangi", "Mensah", "Mensa", "Bello", "Kumar", "Otieno", "Njoroge", "N'Diaye"}
	villagePool = []string{"Kamuga", "Nyeri", "Asafo", "Anandpur", "Kaduna", ""}
	phonePool   = []string{"", "+254 712 345678", "0712 345 679", "024 555 0101"}
	clinicPool  = []string{"", "KMG-0042", "KMG-0043"}
	queryPool   = []string{"wanjiru", "wanjiro", "WANJIKU", "wanj", "mwangi", "muangi", "akosa", "mensah", "mohamed", "muh",
		"priya", "mary", "kumar", "njoroje", "ndiaye", "n'diaye", "kamuga", "nyeri", "asafo", "ana", "0712345678",
		"+254 712 345 679", "0245550101", "kmg 0042", "kmg-0043", "zzz", "ma", "é", "-"}
)

func drawPatient(t *rapid.T) record.Patient {
	p := record.Patient{
		GivenName:  rapid.SampledFrom(givenPool).Draw(t, "given"),
		FamilyName: rapid.SampledFrom(familyPool).Draw(t, "family"),
		Village:    rapid.SampledFrom(villagePool).Draw(t, "village"),
		Phone:      rapid.SampledFrom(phonePool).Draw(t, "phone"),
		Sex:        rapid.SampledFrom([]string{"female", "male"}).Draw(t, "sex"),
	}
	if rapid.Bool().Draw(t, "exact birth date") {
		p.BirthDate = fmt.Sprintf("%d-03-0%d", rapid.IntRange(1960, 1963).Draw(t, "year"), rapid.IntRange(1, 2).Draw(t, "day"))
	} else {
		p.EstimatedBirthYear = rapid.IntRange(1960, 1963).Draw(t, "estimated year")
	}
	if rapid.Bool().Draw(t, "swap names") {
		p.GivenName, p.FamilyName = p.FamilyName, p.GivenName
	}
	if v := rapid.SampledFrom(clinicPool).Draw(t, "clinic number"); v != "" {
		p.Identifiers = append(p.Identifiers, record.Identifier{System: record.SystemClinic, Value: v})
	}
	return p
}

// TestPropertySearchScoresAsIdentity: on any register and any query, a
// replica's Search, which scores charts from their index entries alone,
// lists exactly what identity's Match and Rank make of every patient
// held, loaded whole: the same charts, scores and order.
func TestPropertySearchScoresAsIdentity(t *testing.T) {
	ctx := context.Background()
	rapid.Check(t, func(rt *rapid.T) {
		r, _ := newMem(t, replica.Config{Now: frozen})
		patients := map[string]record.Patient{}
		for range rapid.IntRange(1, 6).Draw(rt, "patients") {
			p := drawPatient(rt)
			id := registerPatient(rt, r, p)
			patients[id] = view(rt, r, id).Patient
		}
		words := rapid.SliceOfN(rapid.SampledFrom(queryPool), 1, 3).Draw(rt, "words")
		query := strings.Join(words, " ")
		q := identity.ParseQuery(query)
		var want []identity.Hit
		for id, p := range patients {
			if score, ok := q.Match(p); ok {
				want = append(want, identity.Hit{ChartID: id, Score: score})
			}
		}
		identity.Rank(want)
		got, err := r.Search(ctx, query, 0)
		require.NoError(rt, err)
		var hits []identity.Hit
		for _, f := range got {
			hits = append(hits, identity.Hit{ChartID: f.ID, Score: f.Score})
		}
		require.Equal(rt, want, hits, "search %q", query)
	})
}

// TestDuplicates: a woman registered at the village clinic is found as a
// likely duplicate when registered again at the district hospital with
// her names swapped and spelt otherwise, with the reasons; her sister,
// who shares her phone and family name, is not listed, nor is a chart
// compared with itself.
func TestDuplicates(t *testing.T) {
	ctx := context.Background()
	for _, st := range replicaStores {
		t.Run(st.name, func(t *testing.T) {
			r := st.open(t)
			akosua := registerPatient(t, r, record.Patient{GivenName: "Akosua", FamilyName: "Mensah", BirthDate: "1990-04-02",
				Village: "Asafo", Phone: "+233 24 555 0101"})
			registerPatient(t, r, record.Patient{GivenName: "Abena", FamilyName: "Mensah", BirthDate: "1993-01-20",
				Village: "Asafo", Phone: "+233 24 555 0101"})
			registerPatient(t, r, record.Patient{GivenName: "Kofi", FamilyName: "Boateng", Sex: "male", EstimatedBirthYear: 1980, Village: "Asafo"})

			district := record.Patient{GivenName: "Mensa", FamilyName: "Akossua", Sex: "female", EstimatedBirthYear: 1991,
				Village: "Asafo", Phone: "024 555 0101", HomeClinic: "district"}
			got, err := r.Duplicates(ctx, district)
			require.NoError(t, err)
			require.Len(t, got, 1, "only the same woman is a likely duplicate: %+v", got)
			assert.Equal(t, akosua, got[0].ChartID)
			var reasons []identity.Reason
			for _, e := range got[0].Evidence {
				reasons = append(reasons, e.Reason)
			}
			assert.Equal(t, []identity.Reason{identity.ReasonSimilarName, identity.ReasonBirth, identity.ReasonSameVillage, identity.ReasonSamePhone}, reasons)

			dup := registerPatient(t, r, district)
			got, err = r.DuplicatesOf(ctx, dup)
			require.NoError(t, err)
			require.Len(t, got, 1)
			assert.Equal(t, akosua, got[0].ChartID, "an existing chart's duplicates")
			got, err = r.DuplicatesOf(ctx, akosua)
			require.NoError(t, err)
			require.Len(t, got, 1, "a chart is not its own duplicate")
			assert.Equal(t, dup, got[0].ChartID)

			_, err = r.DuplicatesOf(ctx, "no-such-chart")
			assert.ErrorIs(t, err, replica.ErrNotFound)
			got, err = r.Duplicates(ctx, record.Patient{Sex: "female"})
			require.NoError(t, err)
			assert.Empty(t, got, "a registration with nothing to compare by has no duplicates")
		})
	}
}

// TestPropertyDuplicatesAsIdentity: a replica's Duplicates, which reads
// only the charts its index finds and its entries do not rule out, lists
// what identity.Duplicates makes of every chart held.
func TestPropertyDuplicatesAsIdentity(t *testing.T) {
	ctx := context.Background()
	rapid.Check(t, func(rt *rapid.T) {
		r, _ := newMem(t, replica.Config{Now: frozen})
		var all []identity.Chart
		for range rapid.IntRange(1, 6).Draw(rt, "patients") {
			id := registerPatient(rt, r, drawPatient(rt))
			all = append(all, identity.Chart{ID: id, Patient: view(rt, r, id).Patient})
		}
		p := drawPatient(rt)
		want := identity.Duplicates(p, "", all)
		got, err := r.Duplicates(ctx, p)
		require.NoError(rt, err)
		require.Equal(rt, want, got, "duplicates of %+v", p)

		self := rapid.SampledFrom(all).Draw(rt, "existing chart")
		want = identity.Duplicates(self.Patient, self.ID, all)
		got, err = r.DuplicatesOf(ctx, self.ID)
		require.NoError(rt, err)
		require.Equal(rt, want, got, "duplicates of chart %s", self.ID)
	})
}

// TestSearchRefusesTooManyCandidates: a few letters that match more charts
// than a search scores at once ask for more, instead of ranking some.
func TestSearchRefusesTooManyCandidates(t *testing.T) {
	ctx := context.Background()
	st := store.NewMem()
	var b store.Batch
	for i := range replica.MaxSearchCandidates + 1 {
		p := record.Patient{GivenName: "Mary", FamilyName: letters(i)}
		b.Charts = append(b.Charts, store.Chart{ID: fmt.Sprintf("c%05d", i), GivenName: p.GivenName, FamilyName: p.FamilyName, Keys: identity.Keys(p)})
	}
	_, err := st.Write(ctx, b)
	require.NoError(t, err)
	r, err := replica.New(ctx, keepOpen{st}, replica.Config{})
	require.NoError(t, err)
	defer r.Close()
	_, err = r.Search(ctx, "mary", 10)
	require.ErrorIs(t, err, replica.ErrTooManyMatches)
	got, err := r.Search(ctx, "mary "+letters(42), 10)
	require.NoError(t, err, "more words narrow the search")
	require.NotEmpty(t, got)
	assert.Equal(t, "c00042", got[0].ID, "the whole name first, then its spelling variants")
	_, err = r.Duplicates(ctx, record.Patient{GivenName: "Mary"})
	require.ErrorIs(t, err, replica.ErrTooManyMatches)
}

// letters spells n in the letters a to z, four of them.
func letters(n int) string {
	b := make([]byte, 4)
	for i := range b {
		b[3-i] = byte('a' + n%26)
		n /= 26
	}
	return string(b)
}

// A synthetic register for the search benchmark: names from East and
// West Africa and South Asia, common ones often, and made-up ones from
// syllables for the long tail; villages; most patients with a phone, half
// with a clinic number.
var (
	benchGiven = []string{"Wanjiru", "Wanjiku", "Njeri", "Akinyi", "Achieng", "Atieno", "Amina", "Fatuma", "Halima", "Mary",
		"Grace", "Faith", "Mercy", "Esther", "Joyce", "Akosua", "Abena", "Ama", "Adwoa", "Efua", "Kofi", "Kwame", "Yaw",
		"Kwabena", "Ibrahim", "Mohammed", "Muhammad", "Musa", "Yusuf", "Abdul", "John", "Joseph", "Peter", "James", "David",
		"Daniel", "Samuel", "Priya", "Meera", "Sunita", "Anita", "Lakshmi", "Ravi", "Suresh", "Ramesh", "Rajesh", "Arjun",
		"Chinedu", "Ngozi", "Chiamaka", "Emeka", "Oluwaseun", "Adebayo", "Fatima", "Aisha", "Zainab", "Baraka", "Neema"}
	benchFamily = []string{"Mwangi", "Kamau", "Njoroge", "Otieno", "Odhiambo", "Ochieng", "Wanjala", "Kariuki", "Mutua",
		"Mensah", "Owusu", "Boateng", "Asante", "Osei", "Bello", "Abubakar", "Okafor", "Okeke", "Adeyemi", "Ogunleye",
		"Kumar", "Sharma", "Singh", "Patel", "Reddy", "Devi", "Yadav", "Das", "Nair", "Iyer", "Mohamed", "Hassan", "Ali",
		"Juma", "Said", "Omondi", "Kiplagat", "Chebet", "Kiprono", "Diallo", "Traore", "Keita", "N'Diaye", "Sow", "Ba"}
	benchSyllables = []string{"ka", "ki", "ko", "ma", "mu", "na", "ni", "nde", "wa", "ra", "ri", "ta", "to", "sa", "shi",
		"ba", "bo", "la", "le", "ya", "ye", "ha", "je", "go", "pa", "di", "ga", "mbe", "nyo", "cha"}
)

type benchRegister struct {
	charts   []store.Chart
	patients []record.Patient
}

// syllableName makes a name of two to four syllables.
func syllableName(r *mathrand.Rand) string {
	var b strings.Builder
	for range 2 + r.IntN(3) {
		b.WriteString(benchSyllables[r.IntN(len(benchSyllables))])
	}
	s := b.String()
	return strings.ToUpper(s[:1]) + s[1:]
}

// makeRegister makes n patients' chart entries as a replica indexes them.
func makeRegister(n int, seed uint64) benchRegister {
	r := mathrand.New(mathrand.NewPCG(seed, 1))
	villages := make([]string, 300)
	for i := range villages {
		villages[i] = syllableName(r)
	}
	name := func(common []string) string {
		if r.IntN(3) == 0 {
			return syllableName(r)
		}
		return common[r.IntN(len(common))]
	}
	var reg benchRegister
	for i := range n {
		p := record.Patient{GivenName: name(benchGiven), FamilyName: name(benchFamily), Village: villages[r.IntN(len(villages))]}
		if r.IntN(10) < 8 {
			p.Phone = fmt.Sprintf("+254 7%02d %06d", r.IntN(100), r.IntN(1000000))
		}
		if r.IntN(2) == 0 {
			p.Identifiers = []record.Identifier{{System: record.SystemClinic, Value: fmt.Sprintf("KMG-%06d", i)}}
		}
		reg.patients = append(reg.patients, p)
		reg.charts = append(reg.charts, store.Chart{
			ID: fmt.Sprintf("%08x-0000-4000-8000-%012x", i, i), GivenName: p.GivenName, FamilyName: p.FamilyName,
			Village: p.Village, HomeClinic: "kamuga-dispensary", Scope: []string{"kamuga-dispensary"}, Keys: identity.Keys(p),
		})
	}
	return reg
}

// queries makes what clerks type to find patients of the register: full
// names, names with the village, the first letters of the given name and
// the family name, a given name with a vowel spelt otherwise, a phone, a
// clinic number; each
// with the chart it is meant to find.
func (reg benchRegister) queries(n int, seed uint64) (texts, wants []string) {
	r := mathrand.New(mathrand.NewPCG(seed, 2))
	for len(texts) < n {
		i := r.IntN(len(reg.patients))
		p := reg.patients[i]
		var q string
		switch r.IntN(6) {
		case 0:
			q = p.GivenName + " " + p.FamilyName
		case 1:
			q = p.FamilyName + " " + p.GivenName + " " + p.Village
		case 2:
			q = p.GivenName[:min(4, len(p.GivenName))] + " " + p.FamilyName
		case 3:
			// A vowel after the first letter spelt otherwise (Wanjiro
			// for Wanjiru), a variant the phonetic key absorbs.
			g := []byte(strings.ToLower(p.GivenName))
			var vowels []int
			for j := 1; j < len(g); j++ {
				if strings.IndexByte("aeiou", g[j]) >= 0 {
					vowels = append(vowels, j)
				}
			}
			if len(vowels) == 0 {
				continue
			}
			j := vowels[r.IntN(len(vowels))]
			g[j] = "aeiou"[(strings.IndexByte("aeiou", g[j])+1+r.IntN(4))%5]
			q = string(g) + " " + p.FamilyName
		case 4:
			if p.Phone == "" {
				continue
			}
			q = "0" + p.Phone[5:]
		case 5:
			if len(p.Identifiers) == 0 {
				continue
			}
			q = strings.ToLower(p.Identifiers[0].Value)
		}
		texts, wants = append(texts, q), append(wants, reg.charts[i].ID)
	}
	return texts, wants
}

// load writes the register's chart entries into st in batches.
func (reg benchRegister) load(tb testing.TB, st store.Store) {
	tb.Helper()
	for i := 0; i < len(reg.charts); i += 1000 {
		_, err := st.Write(context.Background(), store.Batch{Charts: reg.charts[i:min(i+1000, len(reg.charts))]})
		require.NoError(tb, err)
	}
}

// TestSearchALargerRegister: on 2,000 synthetic patients, in memory and
// on SQLite, each of 300 queries made from a patient (full names, names
// and village, first letters, a misspelt name, a phone, a clinic number)
// finds that patient.
func TestSearchALargerRegister(t *testing.T) {
	ctx := context.Background()
	reg := makeRegister(2000, 1)
	texts, wants := reg.queries(300, 1)
	for _, st := range []struct {
		name string
		open func(t *testing.T) store.Store
	}{
		{"memory", func(t *testing.T) store.Store { return store.NewMem() }},
		{"sqlite", func(t *testing.T) store.Store {
			s, err := sqlite.Open(ctx, tempDB(t, "register"))
			require.NoError(t, err)
			return s
		}},
	} {
		t.Run(st.name, func(t *testing.T) {
			s := st.open(t)
			reg.load(t, s)
			r, err := replica.New(ctx, s, replica.Config{})
			require.NoError(t, err)
			defer r.Close()
			for i, q := range texts {
				got, err := r.Search(ctx, q, 0)
				require.NoError(t, err, q)
				assert.Contains(t, foundIDs(got), wants[i], "search %q finds the patient it was made from", q)
			}
		})
	}
}

// BenchmarkSearch measures Replica.Search over 100,000 charts (their
// entries written straight to the store) with the queries clerks type,
// and reports the 50th and 99th percentile of a search, and on SQLite the
// search index's size on disk, in all and per chart.
func BenchmarkSearch(b *testing.B) {
	ctx := context.Background()
	const n = 100_000
	reg := makeRegister(n, 1)
	texts, _ := reg.queries(1000, 2)
	for _, st := range []struct {
		name string
		open func(b *testing.B) (store.Store, string)
	}{
		{"memory", func(b *testing.B) (store.Store, string) { return store.NewMem(), "" }},
		{"sqlite", func(b *testing.B) (store.Store, string) {
			path := tempDB(b, "register")
			s, err := sqlite.Open(ctx, path)
			require.NoError(b, err)
			return s, path
		}},
	} {
		b.Run(st.name, func(b *testing.B) {
			s, path := st.open(b)
			reg.load(b, s)
			r, err := replica.New(ctx, s, replica.Config{})
			require.NoError(b, err)
			defer r.Close()
			var total, keys int64
			if path != "" {
				total, keys = searchIndexBytes(b, path)
			}
			var took []time.Duration
			tooMany := 0
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				start := time.Now()
				_, err := r.Search(ctx, texts[i%len(texts)], 20)
				took = append(took, time.Since(start))
				if errors.Is(err, replica.ErrTooManyMatches) {
					tooMany++
				} else if err != nil {
					b.Fatal(err)
				}
			}
			slices.Sort(took)
			pct := func(p float64) float64 {
				return float64(took[min(len(took)-1, int(p*float64(len(took))))].Microseconds()) / 1000
			}
			b.ReportMetric(pct(0.50), "p50-ms")
			b.ReportMetric(pct(0.99), "p99-ms")
			b.ReportMetric(float64(tooMany)/float64(len(took)), "too-many/op")
			if path != "" {
				b.ReportMetric(float64(total), "index-bytes")
				b.ReportMetric(float64(total)/n, "index-bytes/chart")
				b.ReportMetric(float64(keys)/n, "key-rows-bytes/chart")
			}
		})
	}
}

// searchIndexBytes returns the bytes on disk of the SQLite store's search
// index (both its tables), and of its key rows alone: the database is
// copied compacted (VACUUM INTO) and measured again without them.
func searchIndexBytes(tb testing.TB, path string) (total, keys int64) {
	tb.Helper()
	ctx := context.Background()
	db, err := sql.Open("sqlite3", "file:"+path+"?mode=ro")
	require.NoError(tb, err)
	defer db.Close()
	size := func(drop string) int64 {
		copyPath := filepath.Join(tb.TempDir(), "copy.db")
		_, err := db.ExecContext(ctx, "VACUUM INTO ?", copyPath)
		require.NoError(tb, err)
		if drop != "" {
			c, err := sql.Open("sqlite3", "file:"+copyPath)
			require.NoError(tb, err)
			_, err = c.ExecContext(ctx, drop+"; VACUUM")
			require.NoError(tb, err)
			require.NoError(tb, c.Close())
		}
		fi, err := os.Stat(copyPath)
		require.NoError(tb, err)
		return fi.Size()
	}
	whole := size("")
	return whole - size("DROP TABLE search_keys; DROP TABLE search_charts"), whole - size("DROP TABLE search_keys")
}

// A clerk types a name as she heard it; the registered patient is found.
func ExampleReplica_Search() {
	ctx := context.Background()
	r, err := replica.New(ctx, store.NewMem(), replica.Config{})
	if err != nil {
		panic(err)
	}
	defer r.Close()
	nurse := record.Author{UserID: "u-amina", Name: "Amina", Role: record.RoleNurse, Device: "tablet-1"}
	for _, p := range []record.Register{
		{GivenName: "Wanjiru", FamilyName: "Mwangi", Sex: "female", EstimatedBirthYear: 1988, Village: "Kamuga", HomeClinic: "kamuga"},
		{GivenName: "Wanjiku", FamilyName: "Mwangi", Sex: "female", EstimatedBirthYear: 1962, Village: "Nyeri", HomeClinic: "kamuga"},
	} {
		if _, err := r.Register(ctx, nurse, p); err != nil {
			panic(err)
		}
	}
	for _, q := range []string{"wanjiro mwangi", "mwangi nyeri"} {
		found, err := r.Search(ctx, q, 10)
		if err != nil {
			panic(err)
		}
		for _, f := range found {
			fmt.Printf("%s: %s %s of %s (%.2f)\n", q, f.GivenName, f.FamilyName, f.Village, f.Score)
		}
	}
	// Output:
	// wanjiro mwangi: Wanjiru Mwangi of Kamuga (0.86)
	// mwangi nyeri: Wanjiku Mwangi of Nyeri (1.00)
}

// TestReindexAfterUpgrade: a database written before charts were indexed
// by search key is indexed when opened by names, village and national ID
// only; Reindex adds each chart's phones and identifiers, writing only
// the charts whose keys were out of date.
func TestReindexAfterUpgrade(t *testing.T) {
	ctx := context.Background()
	path := tempDB(t, "upgraded")
	r, _ := openSQLite(t, path, replica.Config{Now: frozen})
	id := registerPatient(t, r, record.Patient{GivenName: "Wanjiru", FamilyName: "Mwangi", EstimatedBirthYear: 1988, Phone: "+254 712 345678",
		Identifiers: []record.Identifier{{System: record.SystemClinic, Value: "KMG-0042"}}})
	unnamed := registerPatient(t, r, record.Patient{GivenName: "Achieng", EstimatedBirthYear: 1975})
	require.NoError(t, r.Close())
	db, err := sql.Open("sqlite3", "file:"+path+"?_journal_mode=WAL")
	require.NoError(t, err)
	_, err = db.Exec("DROP TABLE search_keys; DROP TABLE search_charts")
	require.NoError(t, err, "take the database back to before the index")
	require.NoError(t, db.Close())

	r, _ = openSQLite(t, path, replica.Config{Now: frozen})
	got, err := r.Search(ctx, "wanjiru mwangi", 0)
	require.NoError(t, err)
	assert.Equal(t, []string{id}, foundIDs(got), "the migration indexes names")
	got, err = r.Search(ctx, "0712 345 678", 0)
	require.NoError(t, err)
	assert.Empty(t, got, "but not phones, which the entries do not hold")

	n, err := r.Reindex(ctx)
	require.NoError(t, err)
	assert.Equal(t, 1, n, "only the chart with a phone and an identifier is written again")
	for _, q := range []string{"0712 345 678", "kmg-0042", "wanjiru"} {
		got, err = r.Search(ctx, q, 0)
		require.NoError(t, err)
		assert.Equal(t, []string{id}, foundIDs(got), "after Reindex, %q finds the chart", q)
	}
	got, err = r.Search(ctx, "achieng", 0)
	require.NoError(t, err)
	assert.Equal(t, []string{unnamed}, foundIDs(got))
	n, err = r.Reindex(ctx)
	require.NoError(t, err)
	assert.Zero(t, n, "a second Reindex writes nothing")
}
