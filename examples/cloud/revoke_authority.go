package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/chartsync/chartsync/crdt"
	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/replica/store"
)

// revokeAuthority signs the cloud authority's revocation of a hub's
// authority key (device.Authority.RevokeAuthority) and keeps it in the
// roster, from which every node serves it with every bundle. It accepts
// the records of the key the cloud holds now: those kept with the
// changes of the devices they enrolled in its replica (the roster holds
// the cloud's own records only). Every other record of the key is refused wherever the
// revocation reaches, whenever it was signed: the decision is what the
// cloud held, not a clock.
func revokeAuthority(ctx context.Context, at where, arg string, stdout io.Writer) error {
	st, err := openState(ctx, at)
	if err != nil {
		return err
	}
	defer st.Close()
	a, _, err := st.Authority(ctx)
	if err != nil {
		return err
	}
	stored, err := storedSignerRecords(ctx, at)
	if err != nil {
		return fmt.Errorf("read the records the cloud holds: %w", err)
	}
	r, err := device.NewRoster(rosterConfig(a))
	if err != nil {
		return err
	}
	if _, err := st.MergeRoster(ctx, r, 0); err != nil {
		return err
	}
	known := slices.Clone(stored)
	for _, v := range r.AuthorityRevocations() {
		known = append(known, v.Raw()) // a key revoked before is named by its fingerprint too
	}
	key, err := authorityKey(arg, known)
	if err != nil {
		return err
	}
	if bytes.Equal(key, a.PublicKey()) {
		return fmt.Errorf("authority %s is the cloud's own: it cannot be revoked (revoke devices with -device)", device.Fingerprint(key))
	}
	var accepted [][]byte
	for _, rec := range stored {
		if signer, ok := recordAuthority(rec); ok && bytes.Equal(signer, key) &&
			!slices.ContainsFunc(accepted, func(h []byte) bool { return bytes.Equal(h, rec) }) {
			accepted = append(accepted, rec)
		}
	}
	now := time.Now().UTC().Truncate(time.Second)
	signed, err := a.RevokeAuthority(key, now, accepted)
	if err != nil {
		return err
	}
	if err := st.AddToRoster(ctx, signed); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Revoked the enrolment authority %s. Every replica the revocation reaches (devices learn of it with their next sync, bundle or roster) refuses every record this key signs but the %d the cloud holds now: the devices it enrols from now on, and their changes.\n",
		device.Fingerprint(key), len(accepted))
	for i, rec := range accepted {
		if i == maxChartsListed {
			fmt.Fprintf(stdout, "  ... and %d more records\n", len(accepted)-i)
			break
		}
		fmt.Fprintf(stdout, "  kept: %s\n", describeRecord(rec))
	}
	if len(accepted) > 0 {
		fmt.Fprintln(stdout, "Devices it enrolled in these records keep working; enrol any other device of its clinics again with cloud enrol.")
	}
	return nil
}

// authorityKey reads the key -authority names: a key file (an authority
// key file, or a public key in hex), a public key in hex, or the
// fingerprint of the key of one of the records held.
func authorityKey(arg string, held [][]byte) (ed25519.PublicKey, error) {
	if data, err := readSmall(arg); err == nil {
		if a, err := device.ParseAuthority(data); err == nil {
			return a.PublicKey(), nil
		}
		if k, ok := hexKey(string(data)); ok {
			return k, nil
		}
		return nil, fmt.Errorf("%s is neither an authority key file nor a public key in hex", arg)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if k, ok := hexKey(arg); ok {
		return k, nil
	}
	var found ed25519.PublicKey
	for _, rec := range held {
		for _, k := range recordKeys(rec) {
			if device.Fingerprint(k) == strings.TrimSpace(arg) {
				found = k
			}
		}
	}
	if found == nil {
		return nil, usagef("-authority %q: no such file, and no record the cloud holds was signed by a key of that fingerprint: give the hub's key file", arg)
	}
	return found, nil
}

// readSmall reads a file of at most 4 KiB (a key file).
func readSmall(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, 4097))
	if err != nil {
		return nil, err
	}
	if len(data) > 4096 {
		return nil, fmt.Errorf("%s is over 4 KiB: not a key file", path)
	}
	return data, nil
}

// hexKey reads an ed25519 public key in hex.
func hexKey(s string) (ed25519.PublicKey, bool) {
	k, err := hex.DecodeString(strings.TrimSpace(s))
	if err != nil || len(k) != ed25519.PublicKeySize {
		return nil, false
	}
	return k, true
}

// recordAuthority returns the key that signed an enrolment or authority
// revocation, checking its signature.
func recordAuthority(rec []byte) (ed25519.PublicKey, bool) {
	if e, err := device.DecodeEnrolment(rec); err == nil {
		return e.Authority, true
	}
	if v, err := device.DecodeAuthorityRevocation(rec); err == nil {
		return v.Authority, true
	}
	return nil, false
}

// recordKeys returns the authority keys a record names: its signer's,
// and for an authority revocation the key it revokes.
func recordKeys(rec []byte) []ed25519.PublicKey {
	if v, err := device.DecodeAuthorityRevocation(rec); err == nil {
		return []ed25519.PublicKey{v.Authority, v.Revoked}
	}
	if k, ok := recordAuthority(rec); ok {
		return []ed25519.PublicKey{k}
	}
	return nil
}

// describeRecord names what a record is, for a person.
func describeRecord(rec []byte) string {
	if e, err := device.DecodeEnrolment(rec); err == nil {
		what := "enrolment"
		if e.Revoked {
			what = "revocation"
		}
		return fmt.Sprintf("%s of device %s of clinic %s, issued %s", what, e.Device.ReplicaID, e.Device.Clinic, e.Issued.Format(time.RFC3339))
	}
	if v, err := device.DecodeAuthorityRevocation(rec); err == nil {
		return fmt.Sprintf("revocation of authority %s, issued %s", device.Fingerprint(v.Revoked), v.Issued.Format(time.RFC3339))
	}
	return "a record"
}

// metaSigner is the prefix of the meta keys under which a replica keeps
// the signed records of each device whose changes it holds (package
// replica keeps them so, to pass them on with those changes).
const metaSigner = "signer/"

// storedSignerRecords returns the signed records the cloud's replica
// keeps with the changes it holds, read from the store beside a running
// server as heldChanges reads it: a look at every change's actor, for an
// administrator's rare revocation.
func storedSignerRecords(ctx context.Context, at where) ([][]byte, error) {
	st, err := openCloudStore(ctx, at)
	if err != nil || st == nil {
		return nil, err
	}
	defer st.Close()
	actors := map[string]bool{}
	for after := uint64(0); ; {
		page, err := st.Log(ctx, after, actorSeqPage)
		if err != nil {
			return nil, err
		}
		for _, c := range page {
			after = c.Seq
			if a, err := crdt.ChangeActor(c.Raw); err == nil {
				actors[a] = true
			}
		}
		if len(page) < actorSeqPage {
			break
		}
	}
	var out [][]byte
	for _, actor := range slices.Sorted(maps.Keys(actors)) {
		v, err := st.Meta(ctx, metaSigner+actor)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, line := range strings.Split(v, "\n") {
			if rec, err := base64.StdEncoding.DecodeString(line); err == nil && len(rec) > 0 {
				out = append(out, rec)
			}
		}
	}
	return out, nil
}

// actorSeqPage is how many changes storedSignerRecords reads at a time.
const actorSeqPage = 1000
