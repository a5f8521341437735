package storetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/chartsync/chartsync/replica/store"
)

func exact(keys ...string) []store.Lookup {
	var out []store.Lookup
	for _, k := range keys {
		out = append(out, store.Lookup{Key: k})
	}
	return out
}

func prefix(key string) store.Lookup { return store.Lookup{Key: key, Prefix: true} }

func ids(cs []store.Chart) []string {
	var out []string
	for _, c := range cs {
		out = append(out, c.ID)
	}
	return out
}

// runSearch checks Index.Search: charts found by their keys as last
// written, by exact and prefix lookups, every term's lookups intersected,
// each chart once, sorted by ID, limited, patients' charts only.
func runSearch(t *testing.T, open func(t *testing.T) Opened) {
	ctx := context.Background()

	t.Run("SearchFindsChartsByKeys", func(t *testing.T) {
		s := open(t).Store
		_, err := s.Write(ctx, store.Batch{Charts: []store.Chart{
			{ID: "c3", GivenName: "Wanjiru", FamilyName: "Mwangi", Keys: []string{"n:wanjiru", "n:mwangi", "s:wnjr", "v:nyeri", "t:712345678"}},
			{ID: "c1", GivenName: "Wanjiku", FamilyName: "Mwangi", Keys: []string{"n:wanjiku", "n:mwangi", "n:mwangi", "s:wnjk", "v:nyeri"}},
			{ID: "c2", GivenName: "Akosua", FamilyName: "Mensah", Keys: []string{"v:asafo", "n:mensah", "n:akosua", "i:a_c%1"}},
			{ID: "c4", GivenName: "Amaka", Keys: []string{"n:abc1", "n:wan", "n:wao", "v:ɔkɔ"}},
			{ID: "r1", Kind: store.KindUsers, HomeClinic: "north", Keys: []string{"n:mwangi", "v:nyeri"}},
		}})
		require.NoError(t, err)

		got, err := s.Chart(ctx, "c1")
		require.NoError(t, err)
		assert.Equal(t, []string{"n:mwangi", "n:wanjiku", "s:wnjk", "v:nyeri"}, got.Keys, "a chart's keys are kept sorted, each once")
		roster, err := s.Chart(ctx, "r1")
		require.NoError(t, err)
		assert.Empty(t, roster.Keys, "a roster has no search keys")

		tests := []struct {
			name   string
			search store.Search
			want   []string
		}{
			{"one exact key", store.Search{Terms: [][]store.Lookup{exact("n:mwangi")}}, []string{"c1", "c3"}},
			{"a key no chart has", store.Search{Terms: [][]store.Lookup{exact("n:mwang")}}, nil},
			{"a prefix", store.Search{Terms: [][]store.Lookup{{prefix("n:wanj")}}}, []string{"c1", "c3"}},
			{"a prefix is a range, not a pattern", store.Search{Terms: [][]store.Lookup{{prefix("i:a_c")}}}, []string{"c2"}},
			{"an underscore is not a wildcard", store.Search{Terms: [][]store.Lookup{{prefix("n:a_c")}}}, nil},
			{"a prefix that is a whole key", store.Search{Terms: [][]store.Lookup{{prefix("n:wan")}}}, []string{"c1", "c3", "c4"}},
			{"a prefix past the last key", store.Search{Terms: [][]store.Lookup{{prefix("v:ɔk")}}}, []string{"c4"}},
			{"an exact key is not a prefix", store.Search{Terms: [][]store.Lookup{exact("n:wan")}}, []string{"c4"}},
			{"several lookups of a term are a union", store.Search{Terms: [][]store.Lookup{exact("n:akosua", "s:wnjr", "n:nobody")}}, []string{"c2", "c3"}},
			{"terms intersect", store.Search{Terms: [][]store.Lookup{exact("n:mwangi"), {prefix("n:wanjir")}}}, []string{"c3"}},
			{"a chart found by several lookups and terms comes once",
				store.Search{Terms: [][]store.Lookup{{prefix("n:"), prefix("n:mw"), {Key: "v:nyeri"}}, {prefix("v:"), prefix("s:w")}}}, []string{"c1", "c2", "c3", "c4"}},
			{"a term that finds nothing finds nothing", store.Search{Terms: [][]store.Lookup{exact("n:mwangi"), exact("n:nobody")}}, nil},
			{"a term with no lookups finds nothing", store.Search{Terms: [][]store.Lookup{exact("n:mwangi"), nil}}, nil},
			{"no terms find nothing", store.Search{}, nil},
			{"a limit", store.Search{Terms: [][]store.Lookup{{prefix("n:")}}, Limit: 2}, []string{"c1", "c2"}},
			{"a phone", store.Search{Terms: [][]store.Lookup{exact("i:712345678", "t:712345678")}}, []string{"c3"}},
		}
		for _, tt := range tests {
			cs, err := s.Search(ctx, tt.search)
			require.NoError(t, err, tt.name)
			assert.Equal(t, tt.want, ids(cs), tt.name)
		}
		cs, err := s.Search(ctx, store.Search{Terms: [][]store.Lookup{exact("t:712345678")}})
		require.NoError(t, err)
		require.Len(t, cs, 1)
		assert.Equal(t, "Wanjiru", cs[0].GivenName, "a search returns the charts' entries")
		assert.Equal(t, []string{"n:mwangi", "n:wanjiru", "s:wnjr", "t:712345678", "v:nyeri"}, cs[0].Keys, "with their keys")
		cs[0].Keys[0] = "changed"
		again, err := s.Chart(ctx, "c3")
		require.NoError(t, err)
		assert.Equal(t, "n:mwangi", again.Keys[0], "the keys returned belong to the caller")
	})

	t.Run("SearchKeysAreReplacedOnRewrite", func(t *testing.T) {
		o := open(t)
		s := o.Store
		_, err := s.Write(ctx, store.Batch{Charts: []store.Chart{
			{ID: "a", Keys: []string{"n:achieng", "v:kisumu"}},
			{ID: "b", Keys: []string{"n:achieng", "v:siaya"}},
		}})
		require.NoError(t, err)
		// a is renamed (once, then again in the same batch: the last
		// entry counts); b loses its keys.
		_, err = s.Write(ctx, store.Batch{Charts: []store.Chart{
			{ID: "a", Keys: []string{"n:akinyi", "v:kisumu"}},
			{ID: "b"},
			{ID: "a", Keys: []string{"n:atieno", "v:kisumu"}},
		}})
		require.NoError(t, err)
		check := func(s store.Store, when string) {
			for _, tt := range []struct {
				key  string
				want []string
			}{
				{"n:achieng", nil}, {"n:akinyi", nil}, {"v:siaya", nil}, {"n:atieno", []string{"a"}}, {"v:kisumu", []string{"a"}},
			} {
				cs, err := s.Search(ctx, store.Search{Terms: [][]store.Lookup{exact(tt.key)}})
				require.NoError(t, err)
				assert.Equal(t, tt.want, ids(cs), "%s: the charts under %s", when, tt.key)
			}
			cs, err := s.Search(ctx, store.Search{Terms: [][]store.Lookup{{prefix("")}}})
			require.NoError(t, err)
			assert.Equal(t, []string{"a"}, ids(cs), "%s: a chart whose keys were all removed is found by none", when)
			b, err := s.Chart(ctx, "b")
			require.NoError(t, err)
			assert.Empty(t, b.Keys, when)
		}
		check(s, "after the rewrite")
		// A roster written under a patient chart's ID takes its keys away.
		_, err = s.Write(ctx, store.Batch{Charts: []store.Chart{{ID: "b", Keys: []string{"n:achieng"}}}})
		require.NoError(t, err)
		_, err = s.Write(ctx, store.Batch{Charts: []store.Chart{{ID: "b", Kind: store.KindUsers, Keys: []string{"n:achieng"}}}})
		require.NoError(t, err)
		check(s, "after a roster replaced a chart")
		if o.Reopen != nil {
			check(o.Reopen(t), "after a reopen")
		}
	})

	t.Run("FailedWriteKeepsTheSearchKeys", func(t *testing.T) {
		o := open(t)
		if o.FailWrites == nil {
			t.Skip("the store cannot be made to fail")
		}
		s := o.Store
		_, err := s.Write(ctx, store.Batch{Charts: []store.Chart{{ID: "a", Keys: []string{"n:old"}}}})
		require.NoError(t, err)
		heal := o.FailWrites(t)
		_, err = s.Write(ctx, store.Batch{Charts: []store.Chart{{ID: "a", Keys: []string{"n:new"}}}})
		heal()
		require.Error(t, err)
		if !errors.Is(err, store.ErrOutcomeUnknown) {
			cs, err := s.Search(ctx, store.Search{Terms: [][]store.Lookup{exact("n:old")}})
			require.NoError(t, err)
			assert.Equal(t, []string{"a"}, ids(cs), "a failed write leaves the keys as they were")
			cs, err = s.Search(ctx, store.Search{Terms: [][]store.Lookup{exact("n:new")}})
			require.NoError(t, err)
			assert.Empty(t, cs, "a failed write adds no key")
		}
	})

	t.Run("SearchMatchesTheLastKeys", func(t *testing.T) {
		// A model: a search selects the patients' charts whose keys, as
		// last written, answer every term.
		// One store serves every case: each case's charts and keys carry
		// its own prefix, which every lookup starts with.
		s := open(t).Store
		n := 0
		rapid.Check(t, func(rt *rapid.T) {
			n++
			ns := fmt.Sprintf("%05d|", n)
			charts := []string{ns + "a", ns + "b", ns + "c", ns + "d", ns + "e"}
			keys := []string{"n:a", "n:ab", "n:abc", "n:b", "s:a", "v:a", "v:ab", "i:1", "n:é", "n:ÿ", "n:ÿa", "n:Ā"}
			model := map[string][]string{}
			for range rapid.IntRange(1, 6).Draw(rt, "batches") {
				var b store.Batch
				for range rapid.IntRange(0, 4).Draw(rt, "charts") {
					c := store.Chart{ID: rapid.SampledFrom(charts).Draw(rt, "chart")}
					if rapid.IntRange(0, 9).Draw(rt, "kind") == 0 {
						c.Kind = store.KindUsers
					}
					for _, k := range rapid.SliceOfN(rapid.SampledFrom(keys), 0, 4).Draw(rt, "keys") {
						c.Keys = append(c.Keys, ns+k)
					}
					b.Charts = append(b.Charts, c)
					model[c.ID] = nil
					if c.Kind == "" {
						model[c.ID] = c.Keys
					}
				}
				_, err := s.Write(ctx, b)
				require.NoError(rt, err)
			}
			lookup := rapid.Custom(func(rt *rapid.T) store.Lookup {
				k := rapid.SampledFrom(keys).Draw(rt, "key")
				if rapid.Bool().Draw(rt, "prefix") {
					r := []rune(k)
					return store.Lookup{Key: ns + string(r[:rapid.IntRange(0, len(r)).Draw(rt, "length")]), Prefix: true}
				}
				return store.Lookup{Key: ns + k}
			})
			for range 5 {
				q := store.Search{Terms: rapid.SliceOfN(rapid.SliceOfN(lookup, 0, 3), 0, 3).Draw(rt, "terms"), Limit: rapid.IntRange(0, 3).Draw(rt, "limit")}
				var want []string
				for _, id := range charts {
					if k, ok := model[id]; ok && q.Selects(k) {
						want = append(want, id)
					}
				}
				if q.Limit > 0 && len(want) > q.Limit {
					want = want[:q.Limit]
				}
				got, err := s.Search(ctx, q)
				require.NoError(rt, err)
				require.Equal(rt, want, ids(got), "search %s", fmt.Sprint(q))
				for _, c := range got {
					k := slices.Clone(model[c.ID])
					slices.Sort(k)
					if k = slices.Compact(k); len(k) == 0 {
						k = nil
					}
					require.Equal(rt, k, c.Keys, "the keys of %s", c.ID)
				}
			}
		})
	})
}
