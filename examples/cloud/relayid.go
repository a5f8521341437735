package main

import (
	"context"
	"fmt"
	"time"

	"github.com/chartsync/chartsync/device"
)

// The cloud as a relay recipient. Devices seal relay bundles for the
// cloud to the X25519 recipient of its enrolment in the roster, and check
// the cloud's replies against the same enrolment, so the cloud's own key
// pair (state.Identity: the one that signs the cloud's changes with -db,
// ca/cloud.key with -dir) is enrolled by the cloud's authority, in the
// clinic "cloud", beside the devices. cloud enrol makes sure of it before
// it writes a credential, so every credential's roster carries it; a
// device enrolled before the cloud was (by an older cloud) lacks it, and
// must be enrolled again to relay to the cloud.

// cloudEnrolmentLifetime is how long the cloud's enrolment is valid, as
// long as the device CA; renewEnrolmentWithin is how close to its end
// cloud enrol renews it.
const (
	cloudEnrolmentLifetime = 10 * 365 * 24 * time.Hour
	renewEnrolmentWithin   = 2 * 365 * 24 * time.Hour
)

// relayIdentity returns the cloud's key pair, made first if none is kept,
// which must be for the cloud's replica replicaID.
func relayIdentity(ctx context.Context, st state, replicaID string) (*device.Identity, error) {
	id, _, err := st.Identity(ctx, replicaID)
	if err != nil {
		return nil, fmt.Errorf("the cloud's relay identity: %w", err)
	}
	if id.ReplicaID() != replicaID {
		return nil, fmt.Errorf("the cloud's key pair is for replica %s, not this cloud's %s: the data directory mixes two clouds", id.ReplicaID(), replicaID)
	}
	return id, nil
}

// enrolCloud makes sure the roster st keeps holds an enrolment of the
// cloud's key pair (for replica replicaID) by authority a, valid for
// renewEnrolmentWithin at least, adding one if not. It reports whether it
// added one.
func enrolCloud(ctx context.Context, st state, a *device.Authority, replicaID string, now time.Time) (bool, error) {
	id, err := relayIdentity(ctx, st, replicaID)
	if err != nil {
		return false, err
	}
	roster, err := device.NewRoster(rosterConfig(a))
	if err != nil {
		return false, err
	}
	if _, err := st.MergeRoster(ctx, roster, 0); err != nil {
		return false, err
	}
	if enrolledUntil(roster, id).After(now.Add(renewEnrolmentWithin)) {
		return false, nil
	}
	rec, err := a.Enrol(id.Public(), now, cloudEnrolmentLifetime)
	if err != nil {
		return false, fmt.Errorf("enrol the cloud for relay bundles: %w", err)
	}
	if err := st.AddToRoster(ctx, rec); err != nil {
		return false, fmt.Errorf("enrol the cloud for relay bundles: %w", err)
	}
	return true, nil
}

// enrolledUntil returns when the roster's enrolment of id's keys ends (the
// zero time if it holds none, or a revocation).
func enrolledUntil(r *device.Roster, id *device.Identity) time.Time {
	pub, err := r.Lookup(id.ReplicaID())
	if err != nil || !pub.Equal(id.Public()) {
		return time.Time{}
	}
	for _, e := range r.Enrolments() {
		if e.Device.ReplicaID == id.ReplicaID() && !e.Revoked {
			return e.Expires
		}
	}
	return time.Time{}
}
