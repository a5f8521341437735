package replica_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/internal/wire"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/store"
)

// Fixed replica IDs keep the fuzz corpus meaningful from run to run.
const (
	fuzzSenderID    = "5e4de7000000000000000000000000a1"
	fuzzRecipientID = "7ec1b1e40000000000000000000000b2"
)

// newFuzzReplica returns a replica with a fixed ID over a fresh store.
func newFuzzReplica(t testing.TB, id string) (*replica.Replica, *store.Mem) {
	t.Helper()
	st := store.NewMem()
	_, err := st.Write(context.Background(), store.Batch{Meta: map[string]string{"replica_id": id}})
	require.NoError(t, err)
	r, err := replica.New(context.Background(), st, replica.Config{Now: frozen, CompactAfter: 3, CacheCharts: 2})
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Close() })
	require.Equal(t, id, r.ID())
	return r, st
}

// fuzzSeeds returns real bundles from sender to recipient: everything,
// one change, and an idle summary. It leaves recipient holding some charts
// the bundles also touch.
func fuzzSeeds(t testing.TB, sender, recipient *replica.Replica) [][]byte {
	t.Helper()
	ctx := context.Background()
	var seeds [][]byte
	add := func() {
		out, err := sender.MakeBundle(ctx, recipient.ID())
		require.NoError(t, err)
		seeds = append(seeds, out.Data)
	}
	id := register(t, sender, "Wanjiru", "Mwangi", "Kamuga")
	add() // one change
	rx := edit(t, sender, id, prescribe("Amoxicillin", 500))
	edit(t, sender, id, record.AddAllergy{Substance: "Penicillin", Severity: "severe"})
	_, err := replica.SyncPair(ctx, sender, recipient)
	require.NoError(t, err)
	add() // idle
	edit(t, sender, id, record.ReviseDose{PrescriptionID: rx.EntryID, Dose: 250, Reason: "renal"})
	edit(t, recipient, id, record.ReviseDose{PrescriptionID: rx.EntryID, Dose: 750, Reason: "weight"})
	other := register(t, sender, "Baraka", "Otieno", "Siaya")
	enc := edit(t, sender, other, record.AddEncounter{Date: "2026-03-02", Complaint: "fever", Note: "seen at home"})
	edit(t, sender, other, record.EditNote{EncounterID: enc.EntryID, Pos: 0, Insert: "Pt "})
	add() // several charts, concurrent with the recipient
	return seeds
}

// withBodies adds, for each frame, its body: the fuzz functions also wrap
// their input in a valid frame, so that mutations reach the body parser
// instead of stopping at the checksum.
func withBodies(t testing.TB, frames [][]byte) [][]byte {
	out := append([][]byte{}, frames...)
	for _, f := range frames {
		_, body, err := wire.Decode(f, 'B', replica.BundleVersion, replica.MaxBundleBytes)
		require.NoError(t, err)
		out = append(out, body)
	}
	return out
}

func FuzzDecodeBundle(f *testing.F) {
	sender, _ := newFuzzReplica(f, fuzzSenderID)
	recipient, _ := newFuzzReplica(f, fuzzRecipientID)
	for _, s := range withBodies(f, fuzzSeeds(f, sender, recipient)) {
		f.Add(s)
	}
	// Signed bundles: a bundle of several charts carries a batch
	// signature.
	signer, signedRecipient, _ := signedFuzzReplicas(f)
	for _, s := range withBodies(f, fuzzSeeds(f, signer, signedRecipient)) {
		f.Add(s)
	}
	f.Add([]byte{})
	f.Add([]byte("CSB\x01\x01\x00"))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, in := range [][]byte{data, wire.Encode('B', replica.BundleVersion, data)} {
			b, err := replica.DecodeBundle(in)
			if err != nil {
				require.True(t, isTypedBundleError(err), "untyped error %v", err)
				continue
			}
			require.LessOrEqual(t, b.Base, b.Upto)
			require.LessOrEqual(t, b.Upto, b.Head)
			require.NotEqual(t, b.From, b.To)
			enc, err := b.Encode()
			require.NoError(t, err, "a decoded bundle encodes")
			b2, err := replica.DecodeBundle(enc)
			require.NoError(t, err, "an encoded bundle decodes")
			require.Equal(t, b, b2, "decode, encode, decode gives the same bundle")
			enc2, err := b2.Encode()
			require.NoError(t, err)
			require.Equal(t, enc, enc2, "encoding is deterministic")
		}
	})
}

func FuzzReceive(f *testing.F) {
	sender, _ := newFuzzReplica(f, fuzzSenderID)
	recipient, st := newFuzzReplica(f, fuzzRecipientID)
	for _, s := range withBodies(f, fuzzSeeds(f, sender, recipient)) {
		f.Add(s)
	}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, in := range [][]byte{data, wire.Encode('B', replica.BundleVersion, data)} {
			before := dumpStore(t, st)
			got, err := recipient.Receive(ctx, in)
			if err != nil {
				require.True(t, isTypedBundleError(err), "untyped error %v", err)
				require.Equal(t, before, dumpStore(t, st), "a refused bundle changed the store")
				continue
			}
			for _, id := range got.Charts {
				v, err := recipient.Chart(ctx, id)
				if err != nil {
					require.ErrorIs(t, err, replica.ErrNotFound)
					continue
				}
				heads, err := recipient.Heads(ctx, id)
				require.NoError(t, err)
				require.True(t, heads.Equal(v.Heads), "chart %s: index heads %s, chart heads %s", id, heads, v.Heads)
			}
		}
	})
}

// FuzzReceiveSigned is FuzzReceive on a recipient that checks
// signatures and authors (as every device of a deployment does), from a
// sender that signs: refused bundles give a typed error and leave the
// store's charts, log and peers as they were; accepted changes were
// signed by an enrolled device.
// signedFuzzReplicas returns a sender and a recipient with fixed IDs,
// each a device enrolled by one authority, that sign their changes and
// check others'; the recipient checks authors too.
func signedFuzzReplicas(f *testing.F) (sender, recipient *replica.Replica, recipientStore *store.Mem) {
	auth, err := device.NewAuthority()
	require.NoError(f, err)
	mk := func(id string, cfg replica.Config) (*replica.Replica, *store.Mem) {
		keys, err := device.Generate(id, "kamuga-dispensary")
		require.NoError(f, err)
		rec, err := auth.Enrol(keys.Public(), frozenAt, 24*time.Hour)
		require.NoError(f, err)
		roster, err := device.NewRoster(device.RosterConfig{Authorities: []device.TrustedAuthority{{Key: auth.PublicKey()}}, Now: frozen})
		require.NoError(f, err)
		_, err = roster.Add(rec)
		require.NoError(f, err)
		cfg.Now, cfg.CompactAfter, cfg.CacheCharts, cfg.Signer, cfg.Keys = frozen, 3, 2, keys, roster
		st := store.NewMem()
		r, err := replica.New(context.Background(), st, cfg)
		require.NoError(f, err)
		f.Cleanup(func() { _ = r.Close() })
		return r, st
	}
	sender, _ = mk(fuzzSenderID, replica.Config{})
	recipient, recipientStore = mk(fuzzRecipientID, replica.Config{CheckAuthors: true})
	return sender, recipient, recipientStore
}

func FuzzReceiveSigned(f *testing.F) {
	sender, recipient, st := signedFuzzReplicas(f)
	for _, s := range withBodies(f, fuzzSeeds(f, sender, recipient)) {
		f.Add(s)
	}
	ctx := context.Background()
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, in := range [][]byte{data, wire.Encode('B', replica.BundleVersion, data)} {
			before := dumpStore(t, st)
			_, err := recipient.Receive(ctx, in)
			if err != nil {
				require.True(t, isTypedBundleError(err) || errors.Is(err, replica.ErrForgedChange) || errors.Is(err, replica.ErrUnauthorizedChange),
					"untyped error %v", err)
				require.Equal(t, before, dumpStore(t, st), "a refused bundle changed the store")
			}
		}
	})
}
