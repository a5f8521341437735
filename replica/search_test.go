package replica_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/record/identity"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/store"
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
