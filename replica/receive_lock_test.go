package replica_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/internal/wire"
	"github.com/chartsync/chartsync/replica"
)

// waitFor fails the test if ch does not deliver within a generous bound:
// the bound only turns a deadlock into a failure.
func waitFor[V any](t *testing.T, ch <-chan V, what string) V {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(60 * time.Second):
		t.Fatalf("%s did not happen", what)
		panic("unreachable")
	}
}

// idleSync runs one exchange each way between dev and hub.
func idleSync(ctx context.Context, dev, hub *replica.Replica) error {
	up, err := dev.MakeBundle(ctx, hub.ID())
	if err != nil {
		return err
	}
	if _, err := hub.Receive(ctx, up.Data); err != nil {
		return err
	}
	down, err := hub.MakeBundle(ctx, dev.ID())
	if err != nil {
		return err
	}
	_, err = dev.Receive(ctx, down.Data)
	return err
}

func TestALargeBundleDoesNotStallOtherSyncs(t *testing.T) {
	ctx := context.Background()
	hub, _ := newMem(t, replica.Config{CheckAuthors: true})
	big, _ := newMem(t, replica.Config{})
	other, _ := newMem(t, replica.Config{})
	for i := range 40 {
		id := register(t, big, fmt.Sprintf("Patient %d", i), "Otieno", "Kamuga")
		edit(t, big, id, prescribe("Amoxicillin", 250))
	}
	require.NoError(t, idleSync(ctx, other, hub), "the other device's first sync")

	planned, release := make(chan struct{}), make(chan struct{})
	hub.SetAfterPlan(func(from string) {
		if from == big.ID() {
			planned <- struct{}{}
			<-release
		}
	})
	out, err := big.MakeBundle(ctx, hub.ID())
	require.NoError(t, err)
	received := make(chan error, 1)
	go func() {
		_, err := hub.Receive(ctx, out.Data)
		received <- err
	}()
	waitFor(t, planned, "the large bundle being planned")

	// The large bundle has been decoded, verified, applied and judged,
	// and waits before its commit: the other device syncs meanwhile.
	synced := make(chan error, 1)
	go func() { synced <- idleSync(ctx, other, hub) }()
	require.NoError(t, waitFor(t, synced, "the other device's idle sync while a large bundle is received"))
	view, err := hub.Find(ctx, "", 0)
	require.NoError(t, err)
	assert.Empty(t, view, "nothing of the large bundle is visible before its commit")

	close(release)
	require.NoError(t, waitFor(t, received, "the large bundle's receive"))
	assert.Len(t, chartIDs(t, hub), 40, "the large bundle is stored once it commits")
}

func TestABundleOvertakenByAnEditIsPlannedAgain(t *testing.T) {
	ctx := context.Background()
	hub, _ := newMem(t, replica.Config{CheckAuthors: true})
	dev, _ := newMem(t, replica.Config{})
	id := register(t, dev, "Achieng", "Odhiambo", "Kamuga")
	_, err := replica.SyncPair(ctx, dev, hub)
	require.NoError(t, err)
	view(t, hub, id) // the chart is cached at the hub

	edit(t, dev, id, prescribe("Metformin", 500))
	var plans atomic.Int32
	planned, release := make(chan struct{}), make(chan struct{})
	hub.SetAfterPlan(func(from string) {
		if from == dev.ID() && plans.Add(1) == 1 {
			planned <- struct{}{}
			<-release
		}
	})
	out, err := dev.MakeBundle(ctx, hub.ID())
	require.NoError(t, err)
	received := make(chan error, 1)
	go func() {
		_, err := hub.Receive(ctx, out.Data)
		received <- err
	}()
	waitFor(t, planned, "the bundle being planned")
	// An edit at the hub commits first, on the chart the bundle changes.
	edit(t, hub, id, allergy(1))
	close(release)
	require.NoError(t, waitFor(t, received, "the overtaken bundle's receive"))
	assert.Equal(t, int32(2), plans.Load(), "the overtaken bundle was planned again from the chart as it now is")

	v := view(t, hub, id)
	assert.Len(t, v.Prescriptions, 1, "the device's prescription is kept")
	assert.Len(t, v.Allergies, 1, "the hub's own edit is kept")
	_, err = replica.SyncPair(ctx, dev, hub)
	require.NoError(t, err)
	requireSameCharts(t, dev, hub)
}

func TestABundleOvertakenAgainAndAgainIsTakenUnderTheLock(t *testing.T) {
	ctx := context.Background()
	hub, _ := newMem(t, replica.Config{CheckAuthors: true})
	dev, _ := newMem(t, replica.Config{})
	id := register(t, dev, "Achieng", "Odhiambo", "Kamuga")
	_, err := replica.SyncPair(ctx, dev, hub)
	require.NoError(t, err)
	view(t, hub, id)

	edit(t, dev, id, prescribe("Metformin", 500))
	plans := 0
	hub.SetAfterPlan(func(from string) {
		if from == dev.ID() {
			plans++
			edit(t, hub, id, allergy(plans)) // overtakes the bundle every time
		}
	})
	out, err := dev.MakeBundle(ctx, hub.ID())
	require.NoError(t, err)
	got, err := hub.Receive(ctx, out.Data)
	require.NoError(t, err, "a bundle that keeps losing the race is taken under the lock")
	assert.Equal(t, 1, got.Applied)
	assert.Equal(t, 3, plans, "three tries without the lock, then one under it")
	v := view(t, hub, id)
	assert.Len(t, v.Prescriptions, 1)
	assert.Len(t, v.Allergies, 3, "every edit that overtook the bundle is kept")
}

// TestReceivesAtOnceAreBounded: a process receives at most
// ReceiveSlots bundles with changes at once, over all its replicas; the
// others wait, holding only their bytes, and go on as slots free up. A
// bundle without changes (an idle sync) never waits, a frame declaring a
// large body waits before it is decoded, and a receive waiting for a slot
// ends with its context.
func TestReceivesAtOnceAreBounded(t *testing.T) {
	ctx := context.Background()
	size, taken := replica.ReceiveSlots()
	require.Zero(t, taken, "no receive runs before the test")
	n := size + 3
	hub, _ := newMem(t, replica.Config{})
	devs := make([]*replica.Replica, n)
	bundles := make([][]byte, n)
	held := map[string]bool{} // the devices whose bundles wait once planned
	for i := range devs {
		devs[i], _ = newMem(t, replica.Config{})
		register(t, devs[i], fmt.Sprintf("Patient %d", i), "Otieno", "Kamuga")
		out, err := devs[i].MakeBundle(ctx, hub.ID())
		require.NoError(t, err)
		bundles[i] = out.Data
		held[devs[i].ID()] = true
	}
	planned, release := make(chan string, n), make(chan struct{})
	hub.SetAfterPlan(func(from string) {
		if held[from] {
			planned <- from
			<-release
		}
	})
	received := make(chan error, n)
	for i := range devs {
		go func() {
			_, err := hub.Receive(ctx, bundles[i])
			received <- err
		}()
	}
	for range size {
		waitFor(t, planned, "a bundle being planned")
	}
	_, taken = replica.ReceiveSlots()
	require.Equal(t, size, taken, "every slot is taken by a planned bundle")
	select {
	case from := <-planned:
		t.Fatalf("a bundle from %s was planned with every slot taken", from)
	default:
	}

	// An idle sync goes through meanwhile.
	idle, _ := newMem(t, replica.Config{})
	out, err := idle.MakeBundle(ctx, hub.ID())
	require.NoError(t, err)
	_, err = hub.Receive(ctx, out.Data)
	require.NoError(t, err, "an idle bundle is received while every slot is taken")

	// A bundle with changes whose context ends gives up waiting.
	late, _ := newMem(t, replica.Config{})
	register(t, late, "Late", "Otieno", "Kamuga")
	lateOut, err := late.MakeBundle(ctx, hub.ID())
	require.NoError(t, err)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	_, err = hub.Receive(cctx, lateOut.Data)
	require.ErrorIs(t, err, context.Canceled)
	// So does a frame that declares a large body, before it is decoded,
	// however small it compresses to.
	zeros := wire.Encode('B', replica.BundleVersion, make([]byte, 1<<20))
	require.Less(t, len(zeros), 4<<10)
	_, err = hub.Receive(cctx, zeros)
	require.ErrorIs(t, err, context.Canceled, "a large body waits for a slot before it is decoded")
	_, err = hub.Receive(ctx, wire.Encode('B', replica.BundleVersion, make([]byte, 1<<10)))
	require.ErrorIs(t, err, replica.ErrMalformedBundle, "a small body is decoded first")

	close(release)
	for range n {
		require.NoError(t, waitFor(t, received, "a receive"))
	}
	assert.Len(t, chartIDs(t, hub), n, "every bundle is stored once its turn comes")
	_, taken = replica.ReceiveSlots()
	assert.Zero(t, taken, "every slot is given back")
}
