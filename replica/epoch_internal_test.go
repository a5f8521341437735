package replica

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/replica/store"
)

// What a bundle's log epochs do to the record of its sender, without a
// store: the recipient's log is epoch 7 and has head 50; it held the
// sender's log (epoch 3, then 5 after a restore) up to 40 and the sender
// had acknowledged 30 of its own.
func TestEpochsMovePositions(t *testing.T) {
	const own, head = 7, 50
	before := store.Peer{ID: "s", Received: 40, Acked: 30}
	for _, tc := range []struct {
		name       string
		known      []uint64
		b          Bundle
		received   uint64
		acked      uint64
		refused    error
		record     string
		incomplete bool
		restarted  bool
		ackStale   bool
	}{
		{name: "first epoch learnt", known: nil, b: Bundle{Epoch: 3, AckEpoch: 0, Base: 40, Upto: 45, Head: 45, Ack: 35},
			received: 45, acked: 35, record: "3"},
		{name: "same epochs", known: []uint64{3}, b: Bundle{Epoch: 3, AckEpoch: own, Base: 40, Upto: 45, Head: 45, Ack: 35},
			received: 45, acked: 35},
		{name: "a stale acknowledgement never goes back", known: []uint64{3}, b: Bundle{Epoch: 3, AckEpoch: own, Base: 40, Upto: 40, Head: 40, Ack: 20},
			received: 40, acked: 30},
		{name: "sender restored: its new log from the start, its acknowledgement back", known: []uint64{3}, b: Bundle{Epoch: 5, AckEpoch: own, Base: 0, Upto: 12, Head: 20, Ack: 10},
			received: 12, acked: 10, record: "5,3", incomplete: true, restarted: true},
		{name: "sender restored, bundle not from its start", known: []uint64{3}, b: Bundle{Epoch: 5, AckEpoch: own, Base: 4, Upto: 12, Head: 20, Ack: 10},
			received: 0, acked: 10, record: "5,3", incomplete: true, restarted: true},
		{name: "this replica's log restored: the peer holds none of it", known: []uint64{3}, b: Bundle{Epoch: 3, AckEpoch: 9, Base: 40, Upto: 45, Head: 45, Ack: 60},
			received: 45, acked: 0, incomplete: true, ackStale: true},
		{name: "late bundle of a log the sender left", known: []uint64{5, 3}, b: Bundle{Epoch: 3, AckEpoch: own, Base: 40, Upto: 90, Head: 90, Ack: 45},
			received: 40, acked: 30, refused: ErrStalePositions},
		{name: "no epochs named (as before)", known: []uint64{3}, b: Bundle{Base: 40, Upto: 45, Head: 45, Ack: 35},
			received: 45, acked: 35},
		{name: "an acknowledgement beyond head, same log", known: []uint64{3}, b: Bundle{Epoch: 3, AckEpoch: own, Base: 40, Upto: 45, Head: 45, Ack: 60},
			received: 45, acked: 30, refused: ErrImpossiblePosition},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ep := seeEpochs(&tc.b, own, tc.known)
			assert.Equal(t, tc.record, ep.record)
			assert.Equal(t, tc.restarted, ep.restarted)
			assert.Equal(t, tc.ackStale, ep.ackStale)
			got, refused := advancePeer(before, &tc.b, head, true, ep)
			if tc.refused != nil {
				require.ErrorIs(t, refused, tc.refused)
			} else {
				require.NoError(t, refused)
			}
			assert.Equal(t, tc.received, got.Received, "held of the sender's log")
			assert.Equal(t, tc.acked, got.Acked, "the sender holds of this one's")
			assert.Equal(t, tc.incomplete, ep.restarted || ep.ackStale)
		})
	}
}

// Many epochs learnt: the oldest are let go.
func TestPeerEpochsKeptAreBounded(t *testing.T) {
	known := []uint64{}
	for e := uint64(1); e <= 10; e++ {
		ep := seeEpochs(&Bundle{Epoch: e}, 99, known)
		require.NotEmpty(t, ep.record)
		known = append([]uint64{e}, known...)
		if len(known) > keptEpochs {
			known = known[:keptEpochs]
		}
	}
	assert.Equal(t, []uint64{10, 9, 8, 7}, known)
	assert.Equal(t, "11,10,9,8", seeEpochs(&Bundle{Epoch: 11}, 99, known).record)
}

// Nodes over one store name its log alike; another place or log ID
// names another; every epoch is within bounds and not 0.
func TestEpochOf(t *testing.T) {
	a := epochOf("log", "postgres:1:2:3")
	assert.Equal(t, a, epochOf("log", "postgres:1:2:3"))
	assert.NotEqual(t, a, epochOf("log", "postgres:1:2:4"))
	assert.NotEqual(t, a, epochOf("other", "postgres:1:2:3"))
	for i := range 1000 {
		e := epochOf(NewID(), string(rune(i)))
		require.True(t, e >= 1 && e <= MaxEpoch, "epoch %d", e)
	}
}
