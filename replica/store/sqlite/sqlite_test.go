package sqlite_test

import (
	"context"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/replica/store"
	"github.com/chartsync/chartsync/replica/store/sqlite"
	"github.com/chartsync/chartsync/replica/store/storetest"
)

func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Opened {
		path := filepath.Join(t.TempDir(), "charts.db")
		s, err := sqlite.Open(context.Background(), path)
		require.NoError(t, err)
		t.Cleanup(func() { _ = s.Close() })
		return storetest.Opened{Store: s, Reopen: func(t *testing.T) store.Store {
			require.NoError(t, s.Close())
			s2, err := sqlite.Open(context.Background(), path)
			require.NoError(t, err)
			t.Cleanup(func() { _ = s2.Close() })
			require.NoError(t, s2.IntegrityCheck(context.Background()))
			return s2
		}}
	})
}

func TestOpenRefusesURIPath(t *testing.T) {
	_, err := sqlite.Open(context.Background(), "x.db?mode=memory")
	require.Error(t, err)
}
