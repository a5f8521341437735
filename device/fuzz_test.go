package device_test

import (
	"bytes"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/internal/fuzzseed"
)

// seedFiles are real files of this package, made afresh: an enrolment, a
// revocation, a request (binary and text), a roster, a device key file
// and an authority key file.
type seedFiles struct {
	cloud                                              *device.Authority
	enrolment, revocation, request, requestPEM, roster []byte
	identity, authority                                []byte
	// accepting is a revocation naming the changes accepted (format 2).
	accepting []byte
	// hubRevocation is the cloud's revocation of a hub's key accepting
	// one of its enrolments; hubRoster a roster file holding it, that
	// enrolment and one it refuses.
	hubRevocation, hubRoster []byte
}

func fuzzFiles(f *testing.F) seedFiles {
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
	accepting, err := cloud.RevokeAccepting(id.ReplicaID(), "kamuga", t0.Add(time.Minute), map[string]uint64{
		"0c3c5c2e-6f1a-4d7e-9a51-5d8c2b7f0e11": 4, "5b1f0c2a-9e3d-4a7b-8c6f-1d2e3f4a5b6c": 1})
	if err != nil {
		f.Fatal(err)
	}
	other := newIdentity(f, "kamuga-hub")
	e2, err := cloud.Enrol(other.Public(), t0, 365*24*time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	r, err := device.NewRoster(device.RosterConfig{Authorities: []device.TrustedAuthority{{Key: cloud.PublicKey()}}, Now: func() time.Time { return t0 }})
	if err != nil {
		f.Fatal(err)
	}
	for _, rec := range [][]byte{e, e2} {
		if _, err := r.Add(rec); err != nil {
			f.Fatal(err)
		}
	}
	hub, err := device.NewAuthority()
	if err != nil {
		f.Fatal(err)
	}
	hubRecs := make([][]byte, 2)
	for i := range hubRecs {
		if hubRecs[i], err = hub.Enrol(newIdentity(f, "kamuga").Public(), t0, time.Hour); err != nil {
			f.Fatal(err)
		}
	}
	hubRev, err := cloud.RevokeAuthority(hub.PublicKey(), t0, hubRecs[:1])
	if err != nil {
		f.Fatal(err)
	}
	hr, err := device.NewRoster(device.RosterConfig{Authorities: []device.TrustedAuthority{{Key: cloud.PublicKey()}, {Key: hub.PublicKey(), Clinics: []string{"kamuga"}}},
		Now: func() time.Time { return t0 }})
	if err != nil {
		f.Fatal(err)
	}
	for _, rec := range [][]byte{hubRecs[0], hubRecs[1], hubRev, e} {
		if _, err := hr.Add(rec); err != nil {
			f.Fatal(err)
		}
	}
	dir := f.TempDir()
	if err := cloud.Save(dir + "/authority"); err != nil {
		f.Fatal(err)
	}
	auth, err := os.ReadFile(dir + "/authority")
	if err != nil {
		f.Fatal(err)
	}
	return seedFiles{cloud: cloud, enrolment: e, revocation: rev, request: id.Request(), requestPEM: id.RequestPEM(),
		roster: r.Encode(), identity: marshal(f, id), authority: auth, accepting: accepting, hubRevocation: hubRev, hubRoster: hr.Encode()}
}

// marshal returns id's bytes (Identity.MarshalBinary).
func marshal(t testing.TB, id *device.Identity) []byte {
	t.Helper()
	data, err := id.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// all returns every seed file, a few bytes of a frame, and nothing.
func (s seedFiles) all() [][]byte {
	return [][]byte{s.enrolment, s.revocation, s.accepting, s.request, s.requestPEM, s.roster, s.identity, s.authority, s.hubRevocation, s.hubRoster, nil, []byte("CSE\x01\x01\x00\x00\x00")}
}

// typed reports whether err is one of the refusals the package documents.
func typed(err error) bool {
	for _, target := range []error{device.ErrMalformed, device.ErrVersion, device.ErrTooLarge, device.ErrBadSignature,
		device.ErrUnknownAuthority, device.ErrOutOfScope, device.ErrExpired, device.ErrRevokedAuthority} {
		if errors.Is(err, target) {
			return true
		}
	}
	return false
}

// bodies returns data as it is and framed as a file of kind with a
// correct checksum (as a forger would write it), so that the fuzzer
// reaches the fields behind the checksum. The frame is left uncompressed:
// wire.Encode's compressor can hold a fuzz worker for the whole run on
// some inputs.
func bodies(kind byte, data []byte) [][]byte {
	return [][]byte{data, frame(kind, 0, uint64(len(data)), data)}
}

// FuzzDecodeEnrolment: decoding enrolments never panics, refuses with a
// typed error, and whatever decodes is signed, consistent and keeps its
// bytes.
func FuzzDecodeEnrolment(f *testing.F) {
	s := fuzzFiles(f)
	for _, seed := range s.all() {
		f.Add(seed)
	}
	fuzzseed.Bytes(f, "FuzzDecodeEnrolment", s.enrolment, s.revocation, s.accepting)
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, data := range bodies('E', data) {
			e, err := device.DecodeEnrolment(data)
			if err != nil {
				if !typed(err) {
					t.Fatalf("refused with an untyped error: %v", err)
				}
				continue
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
			if e.Accepted != nil && !e.Revoked {
				t.Fatal("an enrolment in force names accepted changes")
			}
			for chart, seq := range e.Accepted {
				if chart == "" || seq == 0 {
					t.Fatalf("decoded revocation accepts chart %q up to %d", chart, seq)
				}
			}
		}
	})
}

// FuzzParseRequest: parsing enrolment requests (binary or text) never
// panics and refuses with a typed error; what parses is a valid device
// identity, and an authority enrols it.
func FuzzParseRequest(f *testing.F) {
	s := fuzzFiles(f)
	for _, seed := range [][]byte{s.request, s.requestPEM, s.request[:len(s.request)/2], s.enrolment, nil} {
		f.Add(seed)
	}
	fuzzseed.Bytes(f, "FuzzParseRequest", s.request, s.requestPEM)
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, data := range bodies('Q', data) {
			p, err := device.ParseRequest(data)
			if err != nil {
				if !typed(err) {
					t.Fatalf("refused with an untyped error: %v", err)
				}
				continue
			}
			if err := p.Validate(); err != nil {
				t.Fatalf("parsed request has an invalid device: %v", err)
			}
			if _, err := s.cloud.EnrolRequest(data, t0, time.Hour); err != nil {
				t.Fatalf("a request that parses is not enrolled: %v", err)
			}
		}
	})
}

// FuzzMergeRoster: merging arbitrary bytes never panics, refuses with a
// typed error, and never adds a record unless the whole input is
// accepted.
func FuzzMergeRoster(f *testing.F) {
	s := fuzzFiles(f)
	for _, seed := range s.all() {
		f.Add(seed)
	}
	fuzzseed.Bytes(f, "FuzzMergeRoster", s.roster, s.enrolment, s.hubRoster, s.hubRevocation)
	cloud := s.cloud
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, data := range bodies('D', data) {
			r, err := device.NewRoster(device.RosterConfig{Authorities: []device.TrustedAuthority{{Key: cloud.PublicKey()}}, Now: func() time.Time { return t0 }})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := r.Merge(data); err != nil {
				if !typed(err) {
					t.Fatalf("refused with an untyped error: %v", err)
				}
				if len(r.Enrolments()) != 0 || len(r.AuthorityRevocations()) != 0 {
					t.Fatal("a refused roster added records")
				}
			}
		}
	})
}

// FuzzDecodeAuthorityRevocation: decoding authority revocations never
// panics and refuses with a typed error; what decodes is signed by the
// key it names, revokes another key, keeps its bytes, and names its
// accepted records once each in increasing order.
func FuzzDecodeAuthorityRevocation(f *testing.F) {
	s := fuzzFiles(f)
	for _, seed := range append(s.all(), s.hubRevocation[:len(s.hubRevocation)/2]) {
		f.Add(seed)
	}
	fuzzseed.Bytes(f, "FuzzDecodeAuthorityRevocation", s.hubRevocation)
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, data := range bodies('H', data) {
			v, err := device.DecodeAuthorityRevocation(data)
			if err != nil {
				if !typed(err) {
					t.Fatalf("refused with an untyped error: %v", err)
				}
				continue
			}
			if !bytes.Equal(v.Raw(), data) {
				t.Fatal("decoded revocation does not keep its bytes")
			}
			if bytes.Equal(v.Authority, v.Revoked) {
				t.Fatal("decoded revocation revokes its own signer")
			}
			for i := 1; i < len(v.Accepted); i++ {
				if bytes.Compare(v.Accepted[i-1][:], v.Accepted[i][:]) >= 0 {
					t.Fatal("decoded revocation names its accepted records out of order")
				}
			}
			r, err := device.NewRoster(device.RosterConfig{Authorities: []device.TrustedAuthority{{Key: v.Authority}}, Now: func() time.Time { return t0 }})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := r.AddAuthorityRevocation(data); err != nil {
				t.Fatalf("a roster trusting its signer refuses a decoded revocation: %v", err)
			}
		}
	})
}

// FuzzDecodeIdentity: decoding a device key file (ParseIdentity) never panics and refuses
// with a typed error; what decodes is a working identity that encodes to
// a file decoding to the same identity.
func FuzzDecodeIdentity(f *testing.F) {
	s := fuzzFiles(f)
	for _, seed := range [][]byte{s.identity, s.identity[:len(s.identity)/2], s.authority, nil} {
		f.Add(seed)
	}
	fuzzseed.Bytes(f, "FuzzDecodeIdentity", s.identity)
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, data := range bodies('K', data) {
			id, err := device.ParseIdentity(data)
			if err != nil {
				if !typed(err) {
					t.Fatalf("refused with an untyped error: %v", err)
				}
				continue
			}
			if err := id.Public().Validate(); err != nil {
				t.Fatalf("decoded identity has an invalid public part: %v", err)
			}
			again, err := device.ParseIdentity(marshal(t, id))
			if err != nil || !again.Public().Equal(id.Public()) {
				t.Fatalf("a decoded identity does not decode the same once encoded: %v", err)
			}
			if err := id.Public().Verify(device.PurposeRequest, data, id.Sign(device.PurposeRequest, data)); err != nil {
				t.Fatalf("a decoded identity's signature does not verify: %v", err)
			}
		}
	})
}

// FuzzDecodeAuthority: decoding an authority key file (ParseAuthority) never panics and
// refuses with a typed error; what decodes signs enrolments that verify
// as its own.
func FuzzDecodeAuthority(f *testing.F) {
	s := fuzzFiles(f)
	for _, seed := range [][]byte{s.authority, s.authority[:len(s.authority)/2], s.identity, nil} {
		f.Add(seed)
	}
	fuzzseed.Bytes(f, "FuzzDecodeAuthority", s.authority)
	pub := newIdentity(f, "kamuga").Public()
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, data := range bodies('A', data) {
			a, err := device.ParseAuthority(data)
			if err != nil {
				if !typed(err) {
					t.Fatalf("refused with an untyped error: %v", err)
				}
				continue
			}
			rec, err := a.Enrol(pub, t0, time.Hour)
			if err != nil {
				t.Fatal(err)
			}
			e, err := device.DecodeEnrolment(rec)
			if err != nil || !bytes.Equal(e.Authority, a.PublicKey()) {
				t.Fatalf("a decoded authority's enrolment does not verify as its own: %v", err)
			}
		}
	})
}
