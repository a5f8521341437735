package replica

import (
	"encoding/base64"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
)

// heldSeed returns the stored form of two held changes of a real chart.
func heldSeed(t testing.TB) string {
	doc, err := crdt.New("")
	require.NoError(t, err)
	var hs []heldChange
	for i, k := range []string{"family", "given"} {
		c, err := doc.Edit("", time.Unix(int64(i), 0), func(tx *crdt.Tx) error { return tx.Put(nil, k, "Mwangi") })
		require.NoError(t, err)
		hs = append(hs, heldChange{chart: "0f63375f-4fb9-40ff-87b3-9a793743ab69", change: c, sig: []byte{1, 2, 3}, clinic: "kamuga"})
	}
	return encodeHeld(hs)
}

// FuzzDecodeHeld: the stored held changes of a peer are read from the
// store's meta values; whatever a damaged or edited file holds there,
// decoding gives changes that encode to the same bytes, or an error,
// and never panics.
func FuzzDecodeHeld(f *testing.F) {
	seed := heldSeed(f)
	raw, err := base64.StdEncoding.DecodeString(seed)
	require.NoError(f, err)
	f.Add(raw)
	f.Add([]byte{})
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, data []byte) {
		v := base64.StdEncoding.EncodeToString(data)
		hs, err := decodeHeld(v, "peer")
		if err != nil {
			return
		}
		if len(hs) == 0 {
			return
		}
		again, err := decodeHeld(encodeHeld(hs), "peer")
		require.NoError(t, err)
		require.Equal(t, len(hs), len(again))
		for i := range hs {
			require.Equal(t, hs[i].change.Hash, again[i].change.Hash)
			require.Equal(t, hs[i].chart, again[i].chart)
			require.Equal(t, hs[i].clinic, again[i].clinic)
		}
	})
}
