package zchange

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/klauspost/compress/dict"
	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"pgregory.net/rapid"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/record"
)

var trainDict = flag.Bool("train-dict", false, "train a dictionary on synthetic charts and write it to new.zdict (never over a shipped one)")

// dict1SHA256 pins the shipped dictionary: stored frames need it as it is.
const dict1SHA256 = "00024a465ea952b3a344cf73169abb3f1d6e474801923cc5e0ecfbc49c4d9f29"

func TestDictionariesAreFrozen(t *testing.T) {
	sum := sha256.Sum256(dict1)
	assert.Equal(t, dict1SHA256, hex.EncodeToString(sum[:]),
		"dict1.zdict changed: frames already stored need it byte for byte; add a new dictionary with a new ID instead")
	id, err := zstd.InspectDictionary(dict1)
	require.NoError(t, err)
	assert.EqualValues(t, 1, id.ID())
}

// chartChanges returns the raw changes of n synthetic charts made with seed.
func chartChanges(t testing.TB, n int, seed uint64) [][]byte {
	r := rand.New(rand.NewPCG(seed, 7))
	staff := []record.Author{
		{UserID: "u-rn-2", Name: "Nurse Wambui", Role: record.RoleNurse, Device: "clinic-tab-2"},
		{UserID: "u-md-4", Name: "Dr Ochieng", Role: record.RoleClinician, Device: "clinic-pc-1"},
		{UserID: "u-lt-1", Name: "Lab Tech Njoroge", Role: record.RoleLabTechnician, Device: "lab-tab"},
	}
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	var out [][]byte
	for range n {
		at := time.Date(2026, 1, 1, 8, 0, 0, 0, time.UTC).Add(time.Duration(r.IntN(5000)) * time.Hour)
		id := uuid.Must(uuid.NewRandomFromReader(seeded{r})).String()
		c, _, err := record.New(id, crdt.NewActorID(), staff[0], at, record.Register{
			GivenName: pick("Akinyi", "Moses", "Grace", "Peter", "Zawadi", "Ali", "Esther", "Kipchoge"), FamilyName: pick("Omondi", "Kiprono", "Wafula", "Hassan", "Mbeki", "Adeyemi"),
			Sex: pick("female", "male"), EstimatedBirthYear: 1940 + r.IntN(80), Village: pick("Siaya", "Bondo", "Ugunja", "Yala", "Gem"),
			Phone: fmt.Sprintf("+2557%08d", r.IntN(1e8)), HomeClinic: "clinic-" + pick("a", "b", "c"),
		})
		require.NoError(t, err)
		do := func(by record.Author, op record.Op) record.Result {
			at = at.Add(time.Duration(1+r.IntN(200)) * time.Minute)
			res, err := c.Do(by, at, op)
			require.NoError(t, err)
			return res
		}
		do(staff[0], record.AddAllergy{Substance: pick("Penicillin", "Codeine", "Latex", "Eggs"), Severity: pick("mild", "severe"), Reaction: pick("hives", "swelling", "rash")})
		for range 1 + r.IntN(3) {
			do(staff[1], record.AddEncounter{Complaint: pick("abdominal pain", "vomiting", "joint pain", "routine review"), Clinician: staff[1].Name,
				Vitals: record.Vitals{Pulse: float64(55 + r.IntN(60)), Temperature: 36 + float64(r.IntN(40))/10, Weight: float64(30 + r.IntN(70))}, Note: pick("Reviewed.", "Examined; plan discussed.")})
			do(staff[1], record.Diagnose{Code: pick("K29.7", "M25.5", "R10.4", "A01.0"), Text: pick("Gastritis", "Joint pain", "Abdominal pain", "Typhoid fever")})
			rx := do(staff[1], record.Prescribe{Drug: pick("Omeprazole", "Ciprofloxacin", "Diclofenac", "Metronidazole"), Dose: float64(100 * (1 + r.IntN(5))), DoseUnit: "mg", Route: "oral", Frequency: pick("OD", "BD", "TDS"), DurationDays: 5 + r.IntN(10)})
			if r.IntN(3) == 0 {
				do(staff[1], record.ReviseDose{PrescriptionID: rx.EntryID, Dose: 250, Reason: "renal function"})
			}
		}
		do(staff[2], record.RecordLabResult{Test: "White cell count", Value: record.Ptr(float64(3 + r.IntN(15))), Unit: "10^9/L", RefLow: record.Ptr(4.0), RefHigh: record.Ptr(11.0), SpecimenAt: at})
		chs, err := c.Doc().Changes(nil)
		require.NoError(t, err)
		for _, ch := range chs {
			out = append(out, ch.Raw)
		}
		c.Doc().Close()
	}
	return out
}

// seeded feeds uuid from the seeded generator.
type seeded struct{ r *rand.Rand }

func (s seeded) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(s.r.Uint32())
	}
	return len(p), nil
}

// TestTrainDictionary writes a dictionary trained on synthetic charts to
// new.zdict when run with -train-dict. dict1.zdict was made so, with ID 1.
func TestTrainDictionary(t *testing.T) {
	if !*trainDict {
		t.Skip("run with -train-dict to train a new dictionary")
	}
	d, err := dict.BuildZstdDict(chartChanges(t, 400, 1), dict.Options{MaxDictSize: 16 << 10, HashBytes: 6, ZstdDictID: 1, ZstdLevel: zstd.SpeedBetterCompression})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile("new.zdict", d, 0o644))
}

func TestCompressesChartChanges(t *testing.T) {
	raws := chartChanges(t, 60, 99) // other charts than the dictionary's
	var raw, stored int
	for _, r := range raws {
		s := Compress(r)
		got, err := Decompress(s)
		require.NoError(t, err)
		require.Equal(t, r, got)
		raw, stored = raw+len(r), stored+len(s)
	}
	ratio := float64(raw) / float64(stored)
	t.Logf("%d changes, %d bytes raw, %d stored: %.2f×", len(raws), raw, stored, ratio)
	assert.Greater(t, ratio, 3.0, "chart changes shrink with the dictionary")
}

func TestRawRowsReadAsTheyAre(t *testing.T) {
	for _, b := range [][]byte{nil, []byte("c1"), []byte("hello, world")} {
		got, err := Decompress(Compress(b))
		require.NoError(t, err)
		assert.Equal(t, b, got, "bytes that are not a change are stored as they are")
	}
	raw := chartChanges(t, 1, 5)[0]
	got, err := Decompress(raw) // a row written before compression
	require.NoError(t, err)
	assert.Equal(t, raw, got)
	short := append(bytes.Clone(automergeMagic), 1, 2, 3)
	assert.Equal(t, short, Compress(short), "too small to be worth compressing")
}

func TestDecompressRefusesDamage(t *testing.T) {
	raw := chartChanges(t, 1, 6)[1]
	frame := Compress(raw)
	require.True(t, bytes.HasPrefix(frame, zstdMagic))
	enc, err := zstd.NewWriter(nil)
	require.NoError(t, err)
	flipped := bytes.Clone(frame)
	flipped[len(flipped)/2] ^= 0xff
	tests := map[string][]byte{
		"truncated frame":       frame[:len(frame)/2],
		"flipped byte":          flipped,
		"frame of another kind": enc.EncodeAll([]byte("not a change at all, but long enough to compress well well well"), nil),
		"huge claimed size":     append(bytes.Clone(zstdMagic), 0xe4, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f),
	}
	for name, b := range tests {
		t.Run(name, func(t *testing.T) {
			got, err := Decompress(b)
			if name == "flipped byte" && err == nil {
				// A flip inside a literal can decode; the change's own
				// checksum catches it later. It must still be a change.
				assert.True(t, bytes.HasPrefix(got, automergeMagic))
				return
			}
			assert.ErrorIs(t, err, ErrCorrupt)
		})
	}
}

func TestPropertyRoundTrip(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		body := rapid.SliceOfN(rapid.Byte(), 0, 4096).Draw(t, "body")
		if rapid.Bool().Draw(t, "repetitive") {
			body = bytes.Repeat(body, 1+len(body)%7)
		}
		raw := append(bytes.Clone(automergeMagic), body...)
		got, err := Decompress(Compress(raw))
		if err != nil {
			t.Fatalf("round trip: %v", err)
		}
		if !bytes.Equal(got, raw) {
			t.Fatalf("round trip changed the bytes")
		}
	})
}

func FuzzDecompress(f *testing.F) {
	for _, r := range chartChanges(f, 2, 3)[:6] {
		f.Add(Compress(r))
	}
	f.Add([]byte("junk"))
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := Decompress(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("untyped error %v", err)
			}
			return
		}
		if bytes.HasPrefix(b, zstdMagic) && !bytes.HasPrefix(got, automergeMagic) || len(got) > MaxChangeBytes {
			t.Fatalf("accepted %d bytes that are not a change", len(got))
		}
	})
}

// What Compress returns holds what it stores, with no more spare capacity
// than the allocator's rounding: a store batch holds it until it commits.
func TestCompressedChangesHoldTheirSize(t *testing.T) {
	for _, r := range chartChanges(t, 10, 3) {
		s := Compress(r)
		require.Less(t, len(s), len(r))
		assert.LessOrEqual(t, cap(s), len(s)+len(s)/8+16, "%d bytes in %d of capacity", len(s), cap(s))
	}
}
