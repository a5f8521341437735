package replica_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/replica"
)

// benchSender is a replica holding charts charts of three changes each.
func benchSender(b *testing.B, charts int) *replica.Replica {
	b.Helper()
	r, _ := newMem(b, replica.Config{})
	for i := range charts {
		id := register(b, r, fmt.Sprintf("P%d", i), "Family", "Kamuga")
		edit(b, r, id, allergy(i))
		edit(b, r, id, prescribe("Amoxicillin", 500))
	}
	return r
}

func BenchmarkMakeBundle(b *testing.B) {
	ctx := context.Background()
	for _, n := range []int{10, 500} {
		b.Run(fmt.Sprintf("%d charts", n), func(b *testing.B) {
			r := benchSender(b, n)
			peer := crdt.NewActorID()
			var size int
			for b.Loop() {
				out, err := r.MakeBundle(ctx, peer)
				require.NoError(b, err)
				size = len(out.Data)
			}
			b.ReportMetric(float64(size), "bundle-bytes")
		})
	}
}

func BenchmarkReceive(b *testing.B) {
	ctx := context.Background()
	for _, n := range []int{10, 500} {
		b.Run(fmt.Sprintf("%d charts new", n), func(b *testing.B) {
			r := benchSender(b, n)
			for b.Loop() {
				b.StopTimer()
				to, _ := newMem(b, replica.Config{})
				out, err := r.MakeBundle(ctx, to.ID())
				require.NoError(b, err)
				b.StartTimer()
				_, err = to.Receive(ctx, out.Data)
				require.NoError(b, err)
			}
		})
		b.Run(fmt.Sprintf("%d charts already held", n), func(b *testing.B) {
			r := benchSender(b, n)
			to, _ := newMem(b, replica.Config{})
			out, err := r.MakeBundle(ctx, to.ID())
			require.NoError(b, err)
			_, err = to.Receive(ctx, out.Data)
			require.NoError(b, err)
			for b.Loop() {
				got, err := to.Receive(ctx, out.Data)
				require.NoError(b, err)
				require.Zero(b, got.Applied)
			}
		})
	}
}
