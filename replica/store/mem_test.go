package store_test

import (
	"errors"
	"testing"

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
