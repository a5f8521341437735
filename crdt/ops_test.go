package crdt_test

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/chartsync/chartsync/crdt"
)

// edit runs one Edit and fails the test if it is refused.
func edit(t require.TestingT, d *crdt.Doc, msg string, fn func(tx *crdt.Tx) error) crdt.Change {
	ch, err := d.Edit(msg, t0, fn)
	require.NoError(t, err, "edit %q", msg)
	return ch
}

func decode(t require.TestingT, ch crdt.Change) crdt.ChangeInfo {
	info, err := crdt.ChangeOps(ch.Raw)
	require.NoError(t, err, "decoding change %q", ch.Message)
	return info
}

func id(ctr uint64, actor string) crdt.OpID { return crdt.OpID{Counter: ctr, Actor: actor} }

func str(s string) crdt.Value { return crdt.Value{Type: crdt.ValueString, Str: s} }

// The operations of a few edits, spelt out: what each Tx call writes.
func TestChangeOpsDecodesEdits(t *testing.T) {
	a, b := "aa01", "bb02"
	d, err := crdt.New(a)
	require.NoError(t, err)
	first := edit(t, d, "init", func(tx *crdt.Tx) error {
		require.NoError(t, tx.PutMap(nil, "m"))
		require.NoError(t, tx.Put([]string{"m"}, "dose", "500 mg"))
		return tx.PutText([]string{"m"}, "note", "hé🙂")
	})
	info := decode(t, first)
	assert.Equal(t, first.Hash, info.Hash)
	assert.Equal(t, a, info.Actor)
	assert.Equal(t, uint64(1), info.Seq)
	assert.Equal(t, uint64(1), info.StartOp)
	assert.Equal(t, "init", info.Message)
	assert.True(t, info.Time.Equal(t0))
	assert.Empty(t, info.Deps)
	assert.Empty(t, info.OtherActors)
	m, note := id(1, a), id(3, a)
	assert.Equal(t, []crdt.Op{
		{ID: id(1, a), Obj: crdt.Root, Key: crdt.Key{Prop: "m"}, Action: crdt.ActionMakeMap},
		{ID: id(2, a), Obj: m, Key: crdt.Key{Prop: "dose"}, Action: crdt.ActionSet, Value: str("500 mg")},
		{ID: id(3, a), Obj: m, Key: crdt.Key{Prop: "note"}, Action: crdt.ActionMakeText},
		{ID: id(4, a), Obj: note, Key: crdt.Key{IsElem: true}, Insert: true, Action: crdt.ActionSet, Value: str("h")},
		{ID: id(5, a), Obj: note, Key: crdt.Key{IsElem: true, Elem: id(4, a)}, Insert: true, Action: crdt.ActionSet, Value: str("é")},
		{ID: id(6, a), Obj: note, Key: crdt.Key{IsElem: true, Elem: id(5, a)}, Insert: true, Action: crdt.ActionSet, Value: str("🙂")},
	}, info.Ops)

	// Another actor overwrites the dose concurrently with a's splice.
	other, err := d.Fork(nil, b)
	require.NoError(t, err)
	theirs := edit(t, other, "dose", func(tx *crdt.Tx) error { return tx.Put([]string{"m"}, "dose", "1 g") })
	ours := edit(t, d, "splice", func(tx *crdt.Tx) error { return tx.SpliceText([]string{"m"}, "note", 1, 1, "ey") })
	assert.Equal(t, []crdt.Op{
		{ID: id(7, b), Obj: m, Key: crdt.Key{Prop: "dose"}, Action: crdt.ActionSet, Value: str("1 g"), Pred: []crdt.OpID{id(2, a)}},
	}, decode(t, theirs).Ops)
	oursInfo := decode(t, ours)
	assert.Equal(t, []crdt.Hash{first.Hash}, oursInfo.Deps)
	assert.Equal(t, []crdt.Op{
		{ID: id(7, a), Obj: note, Key: crdt.Key{IsElem: true, Elem: id(5, a)}, Action: crdt.ActionDelete, Pred: []crdt.OpID{id(5, a)}},
		{ID: id(8, a), Obj: note, Key: crdt.Key{IsElem: true, Elem: id(4, a)}, Insert: true, Action: crdt.ActionSet, Value: str("e")},
		{ID: id(9, a), Obj: note, Key: crdt.Key{IsElem: true, Elem: id(8, a)}, Insert: true, Action: crdt.ActionSet, Value: str("y")},
	}, oursInfo.Ops)

	// Once merged, a put supersedes both values, naming both actors.
	_, err = d.Merge(other)
	require.NoError(t, err)
	both := decode(t, edit(t, d, "resolve", func(tx *crdt.Tx) error { return tx.Put([]string{"m"}, "dose", "750 mg") }))
	assert.Equal(t, []string{b}, both.OtherActors)
	assert.ElementsMatch(t, []crdt.OpID{id(7, b)}, both.Ops[0].Pred)
	assert.Equal(t, uint64(10), both.StartOp, "after the 9 operations of a's changes")
}

// ---- the model ----

// mop is one map-key operation as the model predicts it.
type mop struct {
	id, obj crdt.OpID
	key     string
	action  crdt.Action
	value   crdt.Value
	pred    []crdt.OpID
}

// model predicts the operations an Edit writes, from the operations the
// document holds. Only one document ever edits text, so its model keeps
// the texts' visible elements; both keep every map-key operation.
type model struct {
	actor string
	seq   uint64
	maxOp uint64
	ops   map[crdt.OpID]*mop
	byKey map[crdt.OpID]map[string][]crdt.OpID
	texts map[crdt.OpID][]crdt.OpID // visible elements of each text
	runes map[crdt.OpID][]rune
}

func newModel(actor string) *model {
	return &model{actor: actor, ops: map[crdt.OpID]*mop{}, byKey: map[crdt.OpID]map[string][]crdt.OpID{},
		texts: map[crdt.OpID][]crdt.OpID{}, runes: map[crdt.OpID][]rune{}}
}

func (m *model) add(o *mop) {
	if _, ok := m.ops[o.id]; ok {
		return
	}
	m.ops[o.id] = o
	if m.byKey[o.obj] == nil {
		m.byKey[o.obj] = map[string][]crdt.OpID{}
	}
	m.byKey[o.obj][o.key] = append(m.byKey[o.obj][o.key], o.id)
	m.maxOp = max(m.maxOp, o.id.Counter)
}

// visible returns the operations at a key that nothing overwrote, in
// Automerge's order (counter, then actor): the last one is shown.
func (m *model) visible(obj crdt.OpID, key string) []crdt.OpID {
	ids := m.byKey[obj][key]
	gone := map[crdt.OpID]bool{}
	for _, i := range ids {
		for _, p := range m.ops[i].pred {
			gone[p] = true
		}
	}
	var out []crdt.OpID
	for _, i := range ids {
		if !gone[i] && m.ops[i].action != crdt.ActionDelete {
			out = append(out, i)
		}
	}
	slices.SortFunc(out, func(x, y crdt.OpID) int {
		return cmp.Or(cmp.Compare(x.Counter, y.Counter), cmp.Compare(x.Actor, y.Actor))
	})
	return out
}

// shown returns the operation whose value a key shows.
func (m *model) shown(obj crdt.OpID, key string) (*mop, bool) {
	v := m.visible(obj, key)
	if len(v) == 0 {
		return nil, false
	}
	return m.ops[v[len(v)-1]], true
}

// resolve finds the map at path, as Tx does; false if Tx would refuse.
func (m *model) resolve(path []string) (crdt.OpID, bool) {
	obj := crdt.Root
	for _, seg := range path {
		o, ok := m.shown(obj, seg)
		if !ok || o.action != crdt.ActionMakeMap {
			return crdt.OpID{}, false
		}
		obj = o.id
	}
	return obj, true
}

func (m *model) merge(o *model) {
	for _, op := range o.ops {
		m.add(op)
	}
	m.maxOp = max(m.maxOp, o.maxOp)
}

// pending is a change being predicted: its operations so far.
type pending struct {
	m   *model
	ops []crdt.Op
}

func (p *pending) next() crdt.OpID {
	return crdt.OpID{Counter: p.m.maxOp + 1, Actor: p.m.actor}
}

func (p *pending) mapOp(obj crdt.OpID, key string, action crdt.Action, v crdt.Value) crdt.OpID {
	pred := p.m.visible(obj, key)
	op := crdt.Op{ID: p.next(), Obj: obj, Key: crdt.Key{Prop: key}, Action: action, Value: v, Pred: pred}
	p.ops = append(p.ops, op)
	p.m.add(&mop{id: op.ID, obj: obj, key: key, action: action, value: v, pred: pred})
	return op.ID
}

func (p *pending) insert(text, after crdt.OpID, r rune) crdt.OpID {
	key := crdt.Key{IsElem: true, Elem: after}
	op := crdt.Op{ID: p.next(), Obj: text, Key: key, Insert: true, Action: crdt.ActionSet, Value: str(string(r))}
	p.ops = append(p.ops, op)
	p.m.maxOp = op.ID.Counter
	return op.ID
}

func (p *pending) del(text, elem crdt.OpID) {
	op := crdt.Op{ID: p.next(), Obj: text, Key: crdt.Key{IsElem: true, Elem: elem}, Action: crdt.ActionDelete, Pred: []crdt.OpID{elem}}
	p.ops = append(p.ops, op)
	p.m.maxOp = op.ID.Counter
}

func (p *pending) text(obj crdt.OpID, pos, del int, s string) {
	elems, rs := p.m.texts[obj], p.m.runes[obj]
	for _, e := range elems[pos : pos+del] {
		p.del(obj, e)
	}
	after := crdt.OpID{}
	if pos > 0 {
		after = elems[pos-1]
	}
	var ins []crdt.OpID
	for _, r := range s {
		after = p.insert(obj, after, r)
		ins = append(ins, after)
	}
	p.m.texts[obj] = slices.Concat(elems[:pos], ins, elems[pos+del:])
	p.m.runes[obj] = slices.Concat(rs[:pos], []rune(s), rs[pos+del:])
}

var (
	mapKeys  = []string{"a", "b", "c"}
	textRuns = []string{"", "x", "hé", "🙂 ok", "ß\u00e9\u4e2d"}
)

// drawPath draws a path of up to two map keys.
func drawPath(t *rapid.T) []string {
	n := rapid.IntRange(0, 2).Draw(t, "depth")
	path := make([]string, n)
	for i := range path {
		path[i] = rapid.SampledFrom(mapKeys).Draw(t, "segment")
	}
	return path
}

// drawEdit draws one Tx call the model says succeeds, predicts its
// operations into p, and returns the call; nil if the draw cannot apply.
func drawEdit(t *rapid.T, p *pending, texts bool) func(tx *crdt.Tx) error {
	path := drawPath(t)
	obj, ok := p.m.resolve(path)
	if !ok {
		return nil
	}
	key := rapid.SampledFrom(mapKeys).Draw(t, "key")
	shown, has := p.m.shown(obj, key)
	kinds := []string{"put", "put-map"}
	if texts {
		kinds = append(kinds, "put-text", "splice")
	}
	switch rapid.SampledFrom(kinds).Draw(t, "kind") {
	case "put":
		v := rapid.SampledFrom([]string{"", "500 mg", "é", "{\"k\":1}"}).Draw(t, "value")
		if vis := p.m.visible(obj, key); len(vis) == 1 && p.m.ops[vis[0]].action == crdt.ActionSet && p.m.ops[vis[0]].value == str(v) {
			return nil // Automerge writes nothing for a value a key already holds alone
		}
		p.mapOp(obj, key, crdt.ActionSet, str(v))
		return func(tx *crdt.Tx) error { return tx.Put(path, key, v) }
	case "put-map":
		if has {
			return nil // a no-op on a map, an error on anything else
		}
		p.mapOp(obj, key, crdt.ActionMakeMap, crdt.Value{})
		return func(tx *crdt.Tx) error { return tx.PutMap(path, key) }
	case "put-text":
		if has {
			return nil
		}
		s := rapid.SampledFrom(textRuns).Draw(t, "text")
		text := p.mapOp(obj, key, crdt.ActionMakeText, crdt.Value{})
		p.m.texts[text], p.m.runes[text] = nil, nil
		p.text(text, 0, 0, s)
		return func(tx *crdt.Tx) error { return tx.PutText(path, key, s) }
	default:
		if !has || shown.action != crdt.ActionMakeText {
			return nil
		}
		n := len(p.m.texts[shown.id])
		pos := rapid.IntRange(0, n).Draw(t, "pos")
		del := rapid.IntRange(0, n-pos).Draw(t, "del")
		s := rapid.SampledFrom(textRuns).Draw(t, "insert")
		if del == 0 && s == "" {
			return nil
		}
		p.text(shown.id, pos, del, s)
		return func(tx *crdt.Tx) error { return tx.SpliceText(path, key, pos, del, s) }
	}
}

// sortPreds orders every op's predecessors as the model does.
func sortPreds(ops []crdt.Op) []crdt.Op {
	out := slices.Clone(ops)
	for i := range out {
		out[i].Pred = slices.SortedFunc(slices.Values(out[i].Pred), func(x, y crdt.OpID) int {
			return cmp.Or(cmp.Compare(x.Counter, y.Counter), cmp.Compare(x.Actor, y.Actor))
		})
		if len(out[i].Pred) == 0 {
			out[i].Pred = nil
		}
	}
	return out
}

// Two documents edit and merge at random; every change's decoded header
// and operations are what the model predicts from the Tx calls made, the
// change re-encodes to its own bytes, and the operation index agrees.
func TestPropertyChangeOpsMatchesEdits(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		actors := []string{"aa01", "bb02"}
		docs := make([]*crdt.Doc, 2)
		models := make([]*model, 2)
		for i, a := range actors {
			d, err := crdt.New(a)
			require.NoError(t, err)
			docs[i], models[i] = d, newModel(a)
		}
		index := []*crdt.OpIndex{crdt.NewOpIndex(), crdt.NewOpIndex()}
		last := make([]crdt.Hash, 2) // each document's latest own change
		for step := range rapid.IntRange(1, 25).Draw(t, "steps") {
			i := rapid.IntRange(0, 1).Draw(t, "doc")
			if rapid.IntRange(0, 4).Draw(t, "merge") == 0 {
				_, err := docs[i].Merge(docs[1-i])
				require.NoError(t, err)
				models[i].merge(models[1-i])
				x, err := docs[i].OpIndex()
				require.NoError(t, err)
				index[i] = x
				continue
			}
			// Predict on a copy of the model: a change is all or nothing.
			m := *models[i]
			m.ops, m.byKey = maps(models[i].ops), mapsOfKeys(models[i].byKey)
			m.texts, m.runes = mapsOf(models[i].texts), mapsOf(models[i].runes)
			p := &pending{m: &m}
			startOp := m.maxOp + 1
			var calls []func(tx *crdt.Tx) error
			for range rapid.IntRange(1, 3).Draw(t, "calls") {
				if c := drawEdit(t, p, i == 0); c != nil {
					calls = append(calls, c)
				}
			}
			if len(p.ops) == 0 {
				continue
			}
			heads := docs[i].Heads()
			msg := fmt.Sprintf("step %d", step)
			ch := edit(t, docs[i], msg, func(tx *crdt.Tx) error {
				for _, c := range calls {
					if err := c(tx); err != nil {
						return err
					}
				}
				return nil
			})
			m.seq++
			*models[i] = m

			info := decode(t, ch)
			require.Equal(t, ch.Hash, info.Hash)
			require.Equal(t, actors[i], info.Actor)
			require.Equal(t, m.seq, info.Seq)
			require.Equal(t, startOp, info.StartOp)
			require.Equal(t, msg, info.Message)
			require.True(t, ch.Time.Equal(info.Time))
			// Automerge depends on the heads and on the author's own
			// previous change, even when the heads descend from it.
			want := slices.Clone(heads)
			if last[i] != (crdt.Hash{}) && !slices.Contains(want, last[i]) {
				want = append(want, last[i])
			}
			last[i] = ch.Hash
			sortHashes := func(hs []crdt.Hash) []crdt.Hash {
				hs = slices.Clone(hs)
				slices.SortFunc(hs, func(x, y crdt.Hash) int { return bytes.Compare(x[:], y[:]) })
				return nilIfEmpty(hs)
			}
			require.Equal(t, sortHashes(want), sortHashes(info.Deps))
			require.Equal(t, p.ops, sortPreds(info.Ops), "the operations of %s", msg)

			raw, err := crdt.EncodeChange(info)
			require.NoError(t, err)
			require.Equal(t, ch.Raw, raw, "the change re-encodes differently")

			require.NoError(t, index[i].CheckRefs(&info), "a change Automerge made names what it holds")
			index[i].Add(&info)
			for _, op := range info.Ops {
				require.True(t, index[i].Has(op.ID))
				if op.Action.MakesObject() {
					kind, ok := index[i].Object(op.ID)
					require.True(t, ok)
					require.Equal(t, op.Action, kind)
				}
			}
			require.False(t, index[i].Has(crdt.OpID{Counter: info.StartOp + uint64(len(info.Ops)), Actor: actors[i]}))
		}
		// The incrementally built index agrees with one read from the
		// document.
		for i, d := range docs {
			x, err := d.OpIndex()
			require.NoError(t, err)
			require.Equal(t, x.MaxOp(), index[i].MaxOp())
		}
	})
}

func nilIfEmpty[T any](s []T) []T {
	if len(s) == 0 {
		return nil
	}
	return s
}

func maps(m map[crdt.OpID]*mop) map[crdt.OpID]*mop {
	out := make(map[crdt.OpID]*mop, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func mapsOfKeys(m map[crdt.OpID]map[string][]crdt.OpID) map[crdt.OpID]map[string][]crdt.OpID {
	out := make(map[crdt.OpID]map[string][]crdt.OpID, len(m))
	for k, v := range m {
		in := make(map[string][]crdt.OpID, len(v))
		for kk, vv := range v {
			in[kk] = slices.Clone(vv)
		}
		out[k] = in
	}
	return out
}

func mapsOf[T any](m map[crdt.OpID][]T) map[crdt.OpID][]T {
	out := make(map[crdt.OpID][]T, len(m))
	for k, v := range m {
		out[k] = slices.Clone(v)
	}
	return out
}

// Automerge and ChangeOps read the same header from every change of a
// document that has seen several actors.
func TestChangeOpsAgreesWithParseChange(t *testing.T) {
	d := seedDoc(t)
	other, err := d.Fork(nil, "bb02")
	require.NoError(t, err)
	edit(t, other, "b", func(tx *crdt.Tx) error { return tx.SpliceText([]string{"m"}, "note", 0, 1, "F") })
	_, err = d.Merge(other)
	require.NoError(t, err)
	edit(t, d, "c", func(tx *crdt.Tx) error { return tx.SpliceText([]string{"m"}, "note", 0, 1, "V") })
	chs, err := d.Changes(nil)
	require.NoError(t, err)
	require.Len(t, chs, 4)
	for _, ch := range chs {
		info := decode(t, ch)
		assert.Equal(t, ch.Hash, info.Hash)
		assert.Equal(t, ch.Actor, info.Actor)
		assert.Equal(t, ch.Seq, info.Seq)
		assert.Equal(t, ch.Message, info.Message)
		assert.True(t, ch.Time.Equal(info.Time))
		assert.ElementsMatch(t, ch.Deps, info.Deps)
	}
	assert.Equal(t, []string{"bb02"}, decode(t, chs[3]).OtherActors, "the last change deletes b's character")
}

func TestEncodeChangeRefusesForeignActors(t *testing.T) {
	info := decode(t, seedChange(t))
	bad := info
	bad.Ops = slices.Clone(info.Ops)
	bad.Ops[1].Obj.Actor = "cc03"
	_, err := crdt.EncodeChange(bad)
	assert.ErrorIs(t, err, crdt.ErrMalformed, "an object of an actor the change does not list")
	bad.Ops = slices.Clone(info.Ops)
	bad.Ops[0].ID.Counter++
	_, err = crdt.EncodeChange(bad)
	assert.ErrorIs(t, err, crdt.ErrMalformed, "an operation with the wrong ID")
	bad = info
	bad.Actor = "not hex"
	_, err = crdt.EncodeChange(bad)
	assert.ErrorIs(t, err, crdt.ErrMalformed)
}

// seedChange is the first change of seedDoc: a map, and a text in it.
func seedChange(t *testing.T) crdt.Change {
	chs, err := seedDoc(t).Changes(nil)
	require.NoError(t, err)
	return chs[0]
}

// Changes that name what their dependencies do not hold are refused by
// CheckRefs, each for its own reason.
func TestCheckRefsRefusesUnknownReferences(t *testing.T) {
	d := seedDoc(t)
	chs, err := d.Changes(nil)
	require.NoError(t, err)
	x := crdt.NewOpIndex()
	for _, c := range chs {
		require.NoError(t, x.AddRaw(c.Raw))
	}
	ch := edit(t, d, "edit", func(tx *crdt.Tx) error {
		if err := tx.Put([]string{"m"}, "dose", "1 g"); err != nil {
			return err
		}
		return tx.SpliceText([]string{"m"}, "note", 1, 1, "a")
	})
	good := decode(t, ch)
	require.NoError(t, x.CheckRefs(&good))
	m, note := good.Ops[0].Obj, good.Ops[1].Obj
	cases := []struct {
		name  string
		forge func(ops []crdt.Op)
	}{
		{"an object nobody made", func(ops []crdt.Op) { ops[0].Obj = id(99, "aa01") }},
		{"an object of another actor", func(ops []crdt.Op) { ops[0].Obj = id(m.Counter, "bb02") }},
		{"a string value treated as an object", func(ops []crdt.Op) { ops[0].Obj = id(m.Counter+1, "aa01") }},
		{"a predecessor nobody made", func(ops []crdt.Op) { ops[0].Pred = []crdt.OpID{id(98, "aa01")} }},
		{"a predecessor of the change itself, later", func(ops []crdt.Op) { ops[0].Pred = []crdt.OpID{ops[2].ID} }},
		{"an element nobody made", func(ops []crdt.Op) { ops[2].Key.Elem = id(97, "aa01") }},
		{"a map key in a text", func(ops []crdt.Op) { ops[1].Key = crdt.Key{Prop: "x"} }},
		{"an element in a map", func(ops []crdt.Op) { ops[0].Key = crdt.Key{IsElem: true, Elem: note} }},
		{"an insert into a map", func(ops []crdt.Op) { ops[0].Insert = true }},
		{"a deletion of the head", func(ops []crdt.Op) { ops[1].Key = crdt.Key{IsElem: true} }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			bad := good
			bad.Ops = slices.Clone(good.Ops)
			for i := range bad.Ops {
				bad.Ops[i].Pred = slices.Clone(bad.Ops[i].Pred)
			}
			if tc.name == "an object of another actor" {
				bad.OtherActors = []string{"bb02"}
			}
			tc.forge(bad.Ops)
			raw, err := crdt.EncodeChange(bad)
			require.NoError(t, err)
			again, err := crdt.ChangeOps(raw)
			require.NoError(t, err, "the forged change is well formed")
			assert.ErrorIs(t, x.CheckRefs(&again), crdt.ErrUnknownRef)
		})
	}
	t.Run("operations numbered before what the dependencies hold", func(t *testing.T) {
		bad := good
		bad.StartOp = x.MaxOp()
		bad.Ops = slices.Clone(good.Ops)
		for i := range bad.Ops {
			bad.Ops[i].ID.Counter = bad.StartOp + uint64(i)
		}
		assert.ErrorIs(t, x.CheckRefs(&bad), crdt.ErrUnknownRef)
	})
	t.Run("a map key in a text the change made (automerge-rs panics applying it)", func(t *testing.T) {
		bad := good
		text := id(good.StartOp, "aa01")
		bad.Ops = []crdt.Op{
			{ID: text, Obj: m, Key: crdt.Key{Prop: "t"}, Action: crdt.ActionMakeText},
			{ID: id(good.StartOp+1, "aa01"), Obj: text, Key: crdt.Key{IsElem: true}, Insert: true, Action: crdt.ActionSet, Value: str("a")},
			{ID: id(good.StartOp+2, "aa01"), Obj: text, Key: crdt.Key{Prop: "id"}, Action: crdt.ActionSet, Value: str("x")},
		}
		assert.ErrorIs(t, x.CheckRefs(&bad), crdt.ErrUnknownRef)
	})
	t.Run("an object the change made earlier", func(t *testing.T) {
		info := decode(t, chs[0])
		require.NoError(t, crdt.NewOpIndex().CheckRefs(&info), "the first change names only what it makes")
	})
}

// Forged operations decode to what was encoded: the encoder and decoder
// agree beyond what Automerge writes (other value types, marks, conflicts).
func TestEncodeChangeRoundTripsEveryField(t *testing.T) {
	info := crdt.ChangeInfo{
		Deps: []crdt.Hash{{1}, {2}}, Actor: "aa01", Seq: 3, StartOp: 40, Time: t0.Add(time.Second),
		Message: "forged", OtherActors: []string{"bb02", "cc03"},
	}
	vals := []crdt.Value{
		{Type: crdt.ValueNull}, {Type: crdt.ValueTrue}, {Type: crdt.ValueFalse},
		{Type: crdt.ValueUint, Uint: 1 << 63}, {Type: crdt.ValueInt, Int: -5}, {Type: crdt.ValueFloat, Float: 2.5},
		str("x"), {Type: crdt.ValueBytes, Str: "\x00\xff"}, {Type: crdt.ValueCounter, Int: 7},
		{Type: crdt.ValueTimestamp, Int: t0.UnixMilli()}, {Type: 12, Str: "future"},
	}
	for i, v := range vals {
		info.Ops = append(info.Ops, crdt.Op{ID: id(40+uint64(i), "aa01"), Obj: id(3, "bb02"), Key: crdt.Key{Prop: fmt.Sprint("k", i)},
			Action: crdt.ActionSet, Value: v, Pred: []crdt.OpID{id(uint64(i+1), "cc03"), id(2, "aa01")}})
	}
	n := uint64(40 + len(vals))
	info.Ops = append(info.Ops,
		crdt.Op{ID: id(n, "aa01"), Obj: id(9, "cc03"), Key: crdt.Key{IsElem: true, Elem: id(8, "cc03")}, Insert: true,
			Action: crdt.ActionMark, Value: crdt.Value{Type: crdt.ValueTrue}, Expand: true, MarkName: "bold"},
		crdt.Op{ID: id(n+1, "aa01"), Obj: id(9, "cc03"), Key: crdt.Key{IsElem: true}, Insert: true, Action: crdt.ActionMark},
		crdt.Op{ID: id(n+2, "aa01"), Obj: crdt.Root, Key: crdt.Key{Prop: "c"}, Action: crdt.ActionIncrement,
			Value: crdt.Value{Type: crdt.ValueInt, Int: 2}, Pred: []crdt.OpID{id(1, "aa01")}},
	)
	raw, err := crdt.EncodeChange(info)
	require.NoError(t, err)
	got, err := crdt.ChangeOps(raw)
	require.NoError(t, err)
	info.Hash = got.Hash
	info.Time = info.Time.UTC()
	assert.Equal(t, info, got)
}
