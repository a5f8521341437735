package relay

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/record"
)

// TestPropertyVillagesConverge: random village clinics and a hub, random
// phones (relay nodes, some with small budgets) carrying between them on a
// random schedule, phones lost with what they carry, bundles delivered
// twice and in any order, and time passing (bundles expire and are sent
// afresh). Throughout, no node drops a bundle that is neither expired nor
// acknowledged. Once a final round of carrying without loss completes,
// every replica holds the same charts with the same heads, and every edit
// whose write returned nil is on every replica.
func TestPropertyVillagesConverge(t *testing.T) {
	base := testDir(t)
	rapid.Check(t, func(rt *rapid.T) {
		dir, err := os.MkdirTemp(base, "check-*")
		require.NoError(rt, err)
		defer os.RemoveAll(dir)
		p := newPropWorld(rt, dir)
		defer p.close()

		steps := rapid.IntRange(10, 60).Draw(rt, "steps")
		for range steps {
			p.step(rt)
		}
		p.finalRounds(rt)
	})
}

type propWorld struct {
	w      *world
	hub    *site
	sites  []*site // hub first, then the clinics
	phones []*Node
	saved  map[string][]crdt.Hash // chart → changes whose write returned nil
}

const propLifetime = 7 * 24 * time.Hour

func newPropWorld(t *rapid.T, dir string) *propWorld {
	w := newWorld(t, dir)
	p := &propWorld{w: w, saved: map[string][]crdt.Hash{}}
	nClinics := rapid.IntRange(1, 3).Draw(t, "clinics")
	hubName := "hub"
	p.hub = p.open(t, hubName)
	p.sites = []*site{p.hub}
	for i := range nClinics {
		s := p.open(t, fmt.Sprintf("clinic%d", i), p.hub.r.ID())
		p.sites = append(p.sites, s)
		p.hub.e.cfg.Peers = append(p.hub.e.cfg.Peers, s.r.ID())
	}
	nPhones := rapid.IntRange(1, 3).Draw(t, "phones")
	for i := range nPhones {
		budget := rapid.SampledFrom([]int64{0, 0, 4 << 10, 16 << 10}).Draw(t, fmt.Sprintf("phone%d budget", i))
		p.phones = append(p.phones, w.node(t, fmt.Sprintf("phone%d", i), NodeConfig{Budget: budget}))
	}
	return p
}

func (p *propWorld) open(t *rapid.T, name string, peers ...string) *site {
	s := p.w.site(t, name, peers...)
	s.e.cfg.Lifetime = propLifetime
	return s
}

func (p *propWorld) close() {
	for _, s := range p.sites {
		s.close()
	}
	for _, n := range p.phones {
		n.Close()
	}
}

// nodes returns every relay node: the sites' own, then the phones.
func (p *propWorld) nodes() []*Node {
	var ns []*Node
	for _, s := range p.sites {
		ns = append(ns, s.e.Node())
	}
	return append(ns, p.phones...)
}

func (p *propWorld) step(t *rapid.T) {
	ctx := context.Background()
	switch rapid.IntRange(0, 9).Draw(t, "action") {
	case 0, 1, 2: // an edit somewhere
		p.edit(t, p.sites[rapid.IntRange(0, len(p.sites)-1).Draw(t, "editor")])
	case 3, 4: // a site syncs with what its node holds
		s := p.sites[rapid.IntRange(0, len(p.sites)-1).Draw(t, "syncer")]
		p.checked(t, func() { p.sync(t, s) })
	case 5, 6, 7: // a phone meets a site or another phone
		nodes := p.nodes()
		a := p.phones[rapid.IntRange(0, len(p.phones)-1).Draw(t, "carrier")]
		b := nodes[rapid.IntRange(0, len(nodes)-1).Draw(t, "met")]
		if a == b {
			return
		}
		p.checked(t, func() {
			if rapid.Bool().Draw(t, "one way") {
				_, err := Carry(ctx, a, b)
				require.NoError(t, err)
			} else {
				_, _, err := Exchange(ctx, a, b)
				require.NoError(t, err)
			}
		})
	case 8: // a phone is lost with everything on it, or a file arrives twice
		n := p.phones[rapid.IntRange(0, len(p.phones)-1).Draw(t, "phone")]
		if rapid.Bool().Draw(t, "lost") {
			require.NoError(t, os.RemoveAll(filepath.Join(n.Dir(), heldDir)))
			require.NoError(t, os.MkdirAll(filepath.Join(n.Dir(), heldDir), 0o700))
			require.NoError(t, n.Close())
			fresh, err := OpenNode(n.Dir(), p.w.roster, NodeConfig{Budget: n.cfg.Budget, Now: p.w.clock.Now})
			require.NoError(t, err)
			p.phones[slices.Index(p.phones, n)] = fresh
			return
		}
		items, err := n.Items(ctx)
		require.NoError(t, err)
		if len(items) == 0 {
			return
		}
		it := items[rapid.IntRange(0, len(items)-1).Draw(t, "duplicate")]
		raw, err := n.Read(ctx, it.Key())
		require.NoError(t, err)
		s := p.sites[rapid.IntRange(0, len(p.sites)-1).Draw(t, "gets a duplicate")]
		require.NoError(t, os.WriteFile(filepath.Join(s.e.Node().Dir(), "dup-"+newID()+".relay"), raw, 0o600))
	case 9: // time passes: hours, or days, so bundles expire
		d := rapid.SampledFrom([]time.Duration{time.Hour, 20 * time.Hour, 3 * 24 * time.Hour, 8 * 24 * time.Hour}).Draw(t, "wait")
		p.checked(t, func() { p.w.clock.Advance(d) })
	}
}

// sync runs a site's Sync. The only refusals it may report are of copies
// that expired before they arrived (a duplicate left lying about).
func (p *propWorld) sync(t *rapid.T, s *site) {
	_, err := s.e.Sync(context.Background())
	if err != nil {
		require.ErrorIs(t, err, ErrExpired, "%s sync", s.name)
		for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
			if e != nil {
				require.ErrorIs(t, e, ErrExpired, "%s sync", s.name)
			}
		}
	}
}

func (p *propWorld) edit(t *rapid.T, s *site) {
	ctx := context.Background()
	cs, err := s.r.Find(ctx, "", 0)
	require.NoError(t, err)
	if len(cs) == 0 || rapid.IntRange(0, 3).Draw(t, "register") == 0 {
		id, err := s.r.Register(ctx, nurse, record.Register{GivenName: "Patient", FamilyName: s.name, Sex: "female", EstimatedBirthYear: 1980, HomeClinic: "kamuga"})
		require.NoError(t, err)
		v, err := s.r.Chart(ctx, id)
		require.NoError(t, err)
		p.saved[id] = append(p.saved[id], v.History[0].Change)
		return
	}
	c := cs[rapid.IntRange(0, len(cs)-1).Draw(t, "chart")]
	res, err := s.r.Edit(ctx, c.ID, nurse, record.AddEncounter{Complaint: "fever", Note: fmt.Sprintf("seen at %s", s.name)})
	require.NoError(t, err)
	p.saved[c.ID] = append(p.saved[c.ID], res.Change.Hash)
}

// checked runs an action and checks that no node lost a bundle that was
// neither expired nor acknowledged (an acknowledgement of it held in the
// node afterwards).
func (p *propWorld) checked(t *rapid.T, action func()) {
	ctx := context.Background()
	before := map[*Node][]Item{}
	for _, n := range p.nodes() {
		items, err := n.Items(ctx)
		require.NoError(t, err)
		before[n] = items
	}
	action()
	now := p.w.clock.Now()
	for n, items := range before {
		after, err := n.Items(ctx) // leaves out what expired
		require.NoError(t, err)
		all, err := n.allItems(ctx)
		require.NoError(t, err)
		idx := ackIndex(all)
		for _, it := range items {
			if slices.ContainsFunc(after, func(a Item) bool { return a.Key() == it.Key() }) {
				continue
			}
			if it.Expired(now) || acknowledged(idx, it.Header) {
				continue
			}
			t.Fatalf("node %s dropped bundle %s (%s from %s to %s), neither expired nor acknowledged", filepath.Base(n.Dir()), it.Key(), it.Kind, it.Sender, it.Recipient)
		}
	}
}

// finalRounds carries without loss until every site agrees, then checks
// that no saved edit is missing anywhere.
func (p *propWorld) finalRounds(t *rapid.T) {
	ctx := context.Background()
	// A phone with room to spare makes the final rounds (the others may
	// have budgets smaller than some bundles).
	phone := p.w.node(t, "final-phone", NodeConfig{})
	p.phones = append(p.phones, phone)
	for round := 0; ; round++ {
		for _, s := range p.sites {
			p.sync(t, s)
			p.checked(t, func() {
				_, _, err := Exchange(ctx, phone, s.e.Node())
				require.NoError(t, err)
			})
		}
		if p.agree(t) {
			break
		}
		require.Less(t, round, 12, "replicas still differ after %d lossless rounds", round)
	}
	for _, s := range p.sites {
		for chart, hashes := range p.saved {
			v, err := s.r.Chart(ctx, chart)
			require.NoError(t, err, "%s lacks chart %s", s.name, chart)
			for _, h := range hashes {
				require.True(t, slices.ContainsFunc(v.History, func(e record.HistoryEntry) bool { return e.Change == h }),
					"%s: chart %s lacks saved change %s", s.name, chart, h)
			}
		}
	}
}

func (p *propWorld) agree(t *rapid.T) bool {
	want := heads(t, p.hub.r)
	for _, s := range p.sites[1:] {
		if got := heads(t, s.r); !mapsEqual(want, got) {
			return false
		}
	}
	return true
}

func mapsEqual(a, b map[string]string) bool {
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
