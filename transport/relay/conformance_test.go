package relay

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/transport"
	"github.com/chartsync/chartsync/transport/transporttest"
)

var _ transport.Link = (*Link)(nil)

// TestConformance runs the transport conformance suite over relay: A and B
// each sync through their Link, and a phone's node carries between their
// nodes.
func TestConformance(t *testing.T) {
	transporttest.Run(t, func(t *testing.T) transporttest.Pair {
		w := newWorld(t, testDir(t))
		a, b := w.site(t, "a"), w.site(t, "b")
		t.Cleanup(a.close)
		t.Cleanup(b.close)
		phone := w.node(t, "phone", NodeConfig{})
		t.Cleanup(func() { phone.Close() })
		la, lb := a.e.Link(b.r.ID()), b.e.Link(a.r.ID())
		carry := func(ctx context.Context, from, to *Node) error {
			if _, err := Carry(ctx, from, phone); err != nil {
				return err
			}
			_, err := Carry(ctx, phone, to)
			return err
		}
		injected := 0
		return transporttest.Pair{
			A: a.r, B: b.r,
			Round: func(ctx context.Context) error {
				steps := []func() error{
					func() error { _, err := la.Sync(ctx); return err },
					func() error { return carry(ctx, a.e.Node(), b.e.Node()) },
					func() error { _, err := lb.Sync(ctx); return err },
					func() error { return carry(ctx, b.e.Node(), a.e.Node()) },
					func() error { _, err := la.Sync(ctx); return err },
				}
				for _, s := range steps {
					if err := s(); err != nil {
						return err
					}
				}
				return nil
			},
			Capture: func(ctx context.Context) ([]byte, error) { return a.e.Seal(ctx, b.r.ID()) },
			Inject: func(ctx context.Context, raw []byte) error {
				injected++
				// As a Bluetooth transfer would: a file lands in B's node.
				path := filepath.Join(b.e.Node().Dir(), fmt.Sprintf("received-%d.relay", injected))
				require.NoError(t, os.WriteFile(path, raw, 0o600))
				_, err := b.e.Collect(ctx, a.r.ID())
				return err
			},
			BadInput: BadInput,
			Seal: func(ctx context.Context, bundle []byte) ([]byte, error) {
				return a.e.SealBundle(b.r.ID(), bundle)
			},
		}
	})
}
