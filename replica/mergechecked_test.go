package replica_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/chartsync/chartsync/replica"
)

// TestMergeReachesACheckingCloud: a merge a clinician made on a signing
// device is checked like any change by a cloud that checks every
// change's signature, author role and clinic scope (ReceiveOptions with
// Sender, Clinic and CheckAuthors), and taken: the cloud shows the
// absorbed chart's entries in the survivor and forwards the absorbed one.
func TestMergeReachesACheckingCloud(t *testing.T) {
	ctx := context.Background()
	d := newDeployment(t)
	dev := d.device(t, "kamuga")
	cloud, _ := newMem(t, replica.Config{Keys: d.roster(t), CheckAuthors: true})
	a := registerAt(t, dev.Replica, "Wanjiru", "kamuga")
	b := registerAt(t, dev.Replica, "Wanjiro", "kamuga")
	edit(t, dev.Replica, b, allergy(1))
	send := func() {
		t.Helper()
		out, err := dev.MakeBundle(ctx, cloud.ID())
		require.NoError(t, err)
		_, err = cloud.ReceiveFrom(ctx, out.Data, replica.ReceiveOptions{Sender: dev.ID(), Clinic: "kamuga", CheckAuthors: true})
		require.NoError(t, err, "the checking cloud takes the device's bundle")
	}
	send()
	require.NoError(t, dev.Merge(ctx, b, a, doctor, "the same woman, registered twice"))
	send()

	survivor, err := cloud.Survivor(ctx, b)
	require.NoError(t, err)
	assert.Equal(t, a, survivor, "the cloud forwards the absorbed chart")
	v := view(t, cloud, a)
	require.Len(t, v.Allergies, 1, "the survivor shows the absorbed chart's allergy")
	assert.Equal(t, view(t, dev.Replica, a).Allergies, v.Allergies)
	q, err := cloud.Quarantined(ctx)
	require.NoError(t, err)
	assert.Empty(t, q, "nothing was refused")
}
