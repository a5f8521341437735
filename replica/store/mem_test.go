package store_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/replica/store"
	"github.com/chartsync/chartsync/replica/store/storetest"
)

func TestMemConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Opened {
		s := store.NewMem()
		t.Cleanup(func() { _ = s.Close() })
		return storetest.Opened{Store: s, FailWrites: func(*testing.T) func() {
			s.FailWrites = errors.New("disk failed")
			return func() { s.FailWrites = nil }
		}}
	})
}

// TestMemScopeNamingAClinicTwice: a scope that names a clinic twice puts
// each change in the clinic's log once.
func TestMemScopeNamingAClinicTwice(t *testing.T) {
	ctx := context.Background()
	s := store.NewMem()
	raw := []byte("a1")
	_, err := s.Write(ctx, store.Batch{
		Changes: []store.NewChange{{Chart: "a", Hash: sha256.Sum256(raw), Raw: raw}},
		Charts:  []store.Chart{{ID: "a", Scope: []string{"north", "north"}}},
	})
	require.NoError(t, err)
	raw2 := []byte("a2")
	_, err = s.Write(ctx, store.Batch{Changes: []store.NewChange{{Chart: "a", Hash: sha256.Sum256(raw2), Raw: raw2}}})
	require.NoError(t, err)
	got, err := s.LogFor(ctx, store.LogQuery{Clinic: "north"})
	require.NoError(t, err)
	assert.Len(t, got, 2, "each change of the chart is in the clinic's log once")
}
