package device_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/chartsync/chartsync/device"
)

func fuzzSeeds(f *testing.F) (*device.Authority, [][]byte) {
	cloud, err := device.NewAuthority()
	if err != nil {
		f.Fatal(err)
	}
	id := newIdentity(f, "kamuga")
	e, err := cloud.Enrol(id.Public(), t0, time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	rev, err := cloud.Revoke(id.ReplicaID(), "kamuga", t0)
	if err != nil {
		f.Fatal(err)
	}
	r, err := device.NewRoster(device.RosterConfig{Authorities: []device.TrustedAuthority{{Key: cloud.PublicKey()}}, Now: func() time.Time { return t0 }})
	if err != nil {
		f.Fatal(err)
	}
	if _, err := r.Add(e); err != nil {
		f.Fatal(err)
	}
	return cloud, [][]byte{e, rev, id.Request(), id.RequestPEM(), r.Encode(), nil, []byte("CSE\x01\x01\x00\x00\x00")}
}

// FuzzDecodeEnrolment: decoding enrolments (and requests) never panics,
// and whatever decodes is signed, consistent and keeps its bytes.
func FuzzDecodeEnrolment(f *testing.F) {
	_, seeds := fuzzSeeds(f)
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = device.ParseRequest(data) // the request decoder shares the fields
		e, err := device.DecodeEnrolment(data)
		if err != nil {
			return
		}
		if !bytes.Equal(e.Raw(), data) {
			t.Fatal("decoded enrolment does not keep its bytes")
		}
		if e.Expires.Before(e.Issued) {
			t.Fatal("decoded enrolment expires before it is issued")
		}
		if !e.Revoked {
			if err := e.Device.Validate(); err != nil {
				t.Fatalf("decoded enrolment has an invalid device: %v", err)
			}
		}
	})
}

// FuzzMergeRoster: merging arbitrary bytes never panics and never adds a
// record unless the whole input is accepted.
func FuzzMergeRoster(f *testing.F) {
	cloud, seeds := fuzzSeeds(f)
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := device.NewRoster(device.RosterConfig{Authorities: []device.TrustedAuthority{{Key: cloud.PublicKey()}}, Now: func() time.Time { return t0 }})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Merge(data); err != nil && len(r.Enrolments()) != 0 {
			t.Fatal("a refused roster added records")
		}
	})
}
