package file_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/internal/wire"
	"github.com/chartsync/chartsync/record"
	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/replica/store"
	"github.com/chartsync/chartsync/transport/file"
	"github.com/chartsync/chartsync/transport/transporttest"
)

// Fixed replica IDs, so that seeds stay addressed to the fuzzed recipient.
const (
	fuzzSender    = "5e4d3c2b1a09f8e7d6c5b4a392817060"
	fuzzRecipient = "0f1e2d3c4b5a69788796a5b4c3d2e1f0"
)

// Bundle frames as package replica writes them (see its doc).
const (
	bundleKind    = 'B'
	bundleVersion = replica.BundleVersion
)

// memReplica returns a replica with the given ID over an in-memory store.
func memReplica(tb testing.TB, id string) *replica.Replica {
	tb.Helper()
	ctx := context.Background()
	st := store.NewMem()
	_, err := st.Write(ctx, store.Batch{Meta: map[string]string{"replica_id": id}})
	require.NoError(tb, err)
	r, err := replica.New(ctx, st, replica.Config{})
	require.NoError(tb, err)
	require.Equal(tb, id, r.ID())
	tb.Cleanup(func() { _ = r.Close() })
	return r
}

// seedBundles returns bundles from fuzzSender to fuzzRecipient: an empty
// one, one registering a chart, and one with several changes.
func seedBundles(tb testing.TB) [][]byte {
	tb.Helper()
	ctx := context.Background()
	a := memReplica(tb, fuzzSender)
	var out [][]byte
	add := func() {
		o, err := a.MakeBundle(ctx, fuzzRecipient)
		require.NoError(tb, err)
		out = append(out, o.Data)
	}
	add()
	id, err := a.Register(ctx, nurse, record.Register{GivenName: "Wanjiru", FamilyName: "Mwangi", Sex: "female", EstimatedBirthYear: 1988, HomeClinic: "kamuga"})
	require.NoError(tb, err)
	add()
	for _, op := range []record.Op{
		record.AddAllergy{Substance: "Penicillin", Reaction: "rash", Severity: "moderate"},
		record.Prescribe{Drug: "Amoxicillin", Dose: 500, DoseUnit: "mg", Route: "oral", Frequency: "TDS"},
		record.AddEncounter{Complaint: "fever", Note: "three days of fever"},
	} {
		_, err := a.Edit(ctx, id, nurse, op)
		require.NoError(tb, err)
	}
	add()
	return out
}

func anyOf(err error, targets ...error) bool {
	return slices.ContainsFunc(targets, func(t error) bool { return errors.Is(err, t) })
}

// FuzzParseBundleFile checks that any name and content either parse into
// a bundle whose name is exactly the one given, or fail with a typed error.
func FuzzParseBundleFile(f *testing.F) {
	for _, b := range seedBundles(f) {
		f.Add(file.NameFor(fuzzSender, fuzzRecipient, b), b)
		f.Add(file.NameFor(fuzzRecipient, fuzzSender, b), b)
		f.Add(file.NameFor(fuzzSender, fuzzRecipient, b), b[:len(b)/2])
	}
	f.Add("../etc/passwd", []byte("root"))
	f.Add("", []byte{})
	f.Fuzz(func(t *testing.T, name string, data []byte) {
		b, err := file.Parse(name, data)
		if err != nil {
			require.True(t, anyOf(err, file.ErrBadName, file.ErrCorrupt, replica.ErrMalformedBundle, replica.ErrBundleVersion, replica.ErrBundleTooLarge),
				"untyped error %v", err)
			return
		}
		require.Equal(t, name, file.NameFor(b.From, b.To, data), "a parsed file's name is the one its content makes")
		n, err := file.ParseName(name)
		require.NoError(t, err)
		require.Equal(t, name, n.String())
	})
}

// FuzzImportFile imports one file into a replica: the fuzzed bytes as the
// file (reframe false), or framed with a valid checksum so that they reach
// the bundle decoder and the sync engine (reframe true). A refused file
// must give a typed error and change nothing.
func FuzzImportFile(f *testing.F) {
	for _, b := range seedBundles(f) {
		f.Add(b, false)
		_, body, err := wire.Decode(b, bundleKind, bundleVersion, replica.MaxBundleBytes)
		require.NoError(f, err)
		f.Add(body, true)
	}
	f.Add([]byte{}, false)
	f.Add([]byte{}, true)
	recipient := memReplica(f, fuzzRecipient)
	f.Fuzz(func(t *testing.T, data []byte, reframe bool) {
		if reframe {
			data = wire.Encode(bundleKind, bundleVersion, data)
		}
		name := file.NameFor(fuzzSender, fuzzRecipient, data)
		if b, err := replica.DecodeBundle(data); err == nil {
			name = file.NameFor(b.From, b.To, data)
		}
		dir := t.TempDir()
		writeFile(t, dir, name, data)
		before := transporttest.Snapshot(t, recipient)
		im, err := file.Import(t.Context(), recipient, dir)
		if err != nil {
			require.True(t, anyOf(err, file.ErrCorrupt, replica.ErrMalformedBundle, replica.ErrBundleVersion, replica.ErrBundleTooLarge, replica.ErrWrongRecipient),
				"untyped error %v", err)
			require.Equal(t, 1, im.Rejected)
			require.Equal(t, before, transporttest.Snapshot(t, recipient), "a refused file changed the replica")
		}
	})
}

func writeFile(tb testing.TB, dir, name string, data []byte) {
	tb.Helper()
	require.NoError(tb, os.WriteFile(filepath.Join(dir, name), data, 0o600))
}
