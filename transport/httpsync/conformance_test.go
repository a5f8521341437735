package httpsync_test

import (
	"context"
	"testing"

	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/transport/httpsync"
	"github.com/chartsync/chartsync/transport/transporttest"
)

// TestConformance runs the transport suite with A a clinic device and B
// the cloud, joined by HTTPS with mutual TLS.
func TestConformance(t *testing.T) {
	transporttest.Run(t, func(t *testing.T) transporttest.Pair {
		c := newCloud(t, cloudOptions{})
		d := c.newDevice(t, "kamuga-dispensary", "kamuga-tablet-1", fastRetries())
		return transporttest.Pair{
			A: d.rep,
			B: c.rep,
			Round: func(ctx context.Context) error {
				_, err := d.client.Sync(ctx)
				return err
			},
			Capture: func(ctx context.Context) ([]byte, error) {
				out, err := d.rep.MakeBundleFor(ctx, c.rep.ID(), replica.BundleOptions{Clinic: d.clinic})
				return out.Data, err
			},
			Inject: func(ctx context.Context, raw []byte) error {
				_, err := d.client.PostRaw(ctx, raw)
				return err
			},
			BadInput: []error{httpsync.ErrMalformed, httpsync.ErrForbidden, httpsync.ErrTooLarge},
			Sign:     d.id.SignChange,
		}
	})
}
