package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/chartsync/chartsync/replica"
	"github.com/chartsync/chartsync/transport"
	"github.com/chartsync/chartsync/transport/file"
	"github.com/chartsync/chartsync/transport/relay"
)

// relayDir is the device's relay endpoint in the data directory: its own
// node (the outbox a phone copies from) and the endpoint's state.
const relayDir = "relay"

// errNotAFolder: a folder given for a bundle is missing or not a folder.
var errNotAFolder = errors.New("not a folder on this device")

// checkFolder checks that dir is an existing folder.
func checkFolder(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("%s: %w (%w)", dir, errNotAFolder, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("%s: %w", dir, errNotAFolder)
	}
	return nil
}

// cloudPeer is the replica ID of the device's cloud, from its credential:
// the peer file and relay bundles are addressed to.
func (a *app) cloudPeer() (string, error) {
	c, err := a.credential()
	if err != nil {
		return "", err
	}
	if c.CloudReplica == "" {
		return "", errors.New("the cloud credential names no cloud replica: run clinic sync once with signal, or ask the administrator for a new credential")
	}
	return c.CloudReplica, nil
}

// exportFile writes the bundle the cloud needs from r to a file in dir
// (a USB stick's folder), with transport/file: every change the cloud has
// not acknowledged and r's acknowledgement of what it holds from it.
func exportFile(ctx context.Context, a *app, r *replica.Replica, dir string) (file.Exported, error) {
	if err := checkFolder(dir); err != nil {
		return file.Exported{}, err
	}
	peer, err := a.cloudPeer()
	if err != nil {
		return file.Exported{}, err
	}
	return file.Export(ctx, r, peer, dir)
}

// importFile applies every bundle file in dir addressed to r, with
// transport/file. A refused file does not stop the others: the error
// joins the refusals, and Imported reports every file.
func importFile(ctx context.Context, r *replica.Replica, dir string) (file.Imported, error) {
	if err := checkFolder(dir); err != nil {
		return file.Imported{}, err
	}
	return file.Import(ctx, r, dir)
}

// handOff is what a relay hand-off did.
type handOff struct {
	// Stats sums the endpoint's two syncs: bundles opened from the phone
	// and sealed for the cloud.
	Stats transport.Stats
	// ToPhone and FromPhone are the bundles carried each way.
	ToPhone, FromPhone relay.CarryResult
	// Refused lists the phone's files refused (not signed by an enrolled
	// device, damaged), with why.
	Refused []relay.Rejected
}

// relayHandOff exchanges relay bundles with a phone's folder (a relay
// node, dir), as a carrier's visit does: the device's endpoint opens
// what it holds and seals what the cloud needs, the phone and the device
// exchange bundles, the endpoint opens what the phone brought and
// answers it, and the phone takes the answers. The endpoint lives in the
// data directory (relayDir); its roster is the cloud credential's.
func relayHandOff(ctx context.Context, a *app, r *replica.Replica, dir string) (handOff, error) {
	var h handOff
	if err := checkFolder(dir); err != nil {
		return h, err
	}
	c, err := a.credential()
	if err != nil {
		return h, err
	}
	id, err := a.identity()
	if err != nil {
		return h, err
	}
	if c.CloudReplica == "" {
		return h, errors.New("the cloud credential names no cloud replica: ask the administrator for a new credential")
	}
	roster, err := c.NewRoster()
	if err != nil {
		return h, err
	}
	e, err := relay.OpenEndpoint(a.path(relayDir), r, id, roster, relay.Config{Peers: []string{c.CloudReplica}})
	if err != nil {
		return h, err
	}
	defer e.Close()
	phone, err := relay.OpenNode(dir, roster, relay.NodeConfig{})
	if err != nil {
		return h, err
	}
	defer phone.Close()
	var errs []error
	st, err := e.Sync(ctx)
	h.Stats.Add(st)
	errs = append(errs, err)
	scan, err := phone.Scan(ctx)
	if err != nil {
		return h, err
	}
	h.Refused = scan.Rejected
	if h.ToPhone, h.FromPhone, err = relay.Exchange(ctx, e.Node(), phone); err != nil {
		return h, err
	}
	st, err = e.Sync(ctx)
	h.Stats.Add(st)
	errs = append(errs, err)
	replies, err := relay.Carry(ctx, e.Node(), phone)
	if err != nil {
		return h, err
	}
	h.ToPhone.Carried = append(h.ToPhone.Carried, replies.Carried...)
	h.ToPhone.Full = append(h.ToPhone.Full, replies.Full...)
	return h, errors.Join(errs...)
}
