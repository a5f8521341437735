package login

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/chartsync/chartsync/internal/fuzzseed"
)

// FuzzParseHash: no encoded hash makes the parser or Verify panic; what
// parses is within Params.Validate's bounds and is exactly the canonical
// form Hash writes; Verify answers nil or ErrWrongPassword for it, and
// ErrMalformedHash for everything else.
func FuzzParseHash(f *testing.F) {
	for _, p := range []Params{{Memory: 64, Time: 1, Threads: 1}, {Memory: 256, Time: 3, Threads: 2}} {
		h, err := Hash("correct horse", p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(h, "correct horse")
		fuzzseed.Write(f, "FuzzParseHash", []any{h, "correct horse"}, []any{h, "wrong horse"})
		f.Add(strings.Replace(h, "argon2id", "argon2i", 1), "correct horse")
		f.Add(strings.Replace(h, "v=19", "v=16", 1), "correct horse")
		f.Add(h+"$", "")
		f.Add(h[:len(h)-3], "correct horse")
	}
	f.Add("$argon2id$v=19$m=65536,t=2,p=1$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc", "password")
	f.Add("$argon2id$v=19$m=4294967295,t=4294967295,p=255$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc", "password")
	f.Add("$argon2id$v=19$m=1048576,t=1,p=16$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y7cJHAph8ArZWb2GRPPc", "password")
	f.Add("$argon2id$v=19$m=64,t=1,p=1,keyid=x$c29tZXNhbHQ$CTFhFdXPJO1aFaMaO6Mm5c8y", "")
	f.Add("", "")
	f.Add("$$$$$", "x")

	f.Fuzz(func(t *testing.T, encoded, password string) {
		h, err := parseHash(encoded)
		if err != nil {
			if !errors.Is(err, ErrMalformedHash) {
				t.Fatalf("parse error %v does not match ErrMalformedHash", err)
			}
			if _, err := ParseHash(encoded); !errors.Is(err, ErrMalformedHash) {
				t.Fatalf("ParseHash accepts what parseHash refuses: %v", err)
			}
			if err := Verify(encoded, password); !errors.Is(err, ErrMalformedHash) {
				t.Fatalf("Verify of a malformed hash gave %v", err)
			}
			return
		}
		if err := h.params.Validate(); err != nil {
			t.Fatalf("parsed parameters out of bounds: %v", err)
		}
		if len(h.salt) < minSaltLen || len(h.salt) > maxSaltLen || len(h.key) < minKeyLen || len(h.key) > maxKeyLen {
			t.Fatalf("salt of %d or key of %d bytes", len(h.salt), len(h.key))
		}
		if h.String() != encoded {
			t.Fatalf("accepted a non-canonical form:\n%q\nwhich reads as\n%q", encoded, h.String())
		}
		// Parameters are bounded, but up to 64 MiB: only compute small ones.
		if uint64(h.params.Memory)*uint64(h.params.Time) <= 4096 {
			if err := Verify(encoded, password); err != nil && err != ErrWrongPassword {
				t.Fatalf("Verify of a well-formed hash gave %v", err)
			}
		}
	})
}

// FuzzDecodeState: no state file makes the decoder panic; what it refuses
// is ErrCorruptState; what it accepts is within bounds, encodes back to a
// file that decodes to the same state, and keeps the Guard's promises
// about lockouts at any clock reading. The checksum is also fixed up, so
// the fuzzer reaches the field checks behind it.
func FuzzDecodeState(f *testing.F) {
	t0 := time.Date(2026, 3, 1, 14, 0, 0, 0, time.UTC)
	seeds := []map[string]*entry{
		{},
		{"amina": {failures: 5, level: 1, last: t0, until: t0.Add(time.Minute)}},
		{"amina": {failures: 2, last: t0}, "baraka": {failures: 100, level: 32, last: t0, until: t0.Add(24 * time.Hour)},
			`"ሰላም" <\>`: {failures: 1, last: time.Date(1, 1, 1, 0, 0, 1, 0, time.UTC)}},
	}
	for _, users := range seeds {
		data, err := encodeState(users)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
		fuzzseed.Write(f, "FuzzDecodeState", []any{data})
	}
	f.Add([]byte(`{"format":"chartsync-login-guard","version":1,"users":[{"user":"amina","failures":5,"level":1,"last_failure":"2026-03-01T14:00:00Z","locked_until":"2026-03-01T14:00:00Z"}],"sha256":""}`))
	f.Add([]byte(`{"format":"chartsync-login-guard","version":2,"users":[],"sha256":""}`))
	f.Add([]byte(`{"users":[{},{},{}]}`))
	f.Add([]byte(`{}`))
	f.Add([]byte(`null`))
	f.Add([]byte{})

	f.Fuzz(func(t *testing.T, data []byte) {
		checkDecodedState(t, data)
		var sf stateFile
		if json.Unmarshal(data, &sf) == nil {
			if sum, err := sf.sum(); err == nil {
				sf.SHA256 = sum
				if fixed, err := marshal(sf); err == nil {
					checkDecodedState(t, fixed)
				}
			}
		}
	})
}

func checkDecodedState(t *testing.T, data []byte) {
	users, err := decodeState(data)
	if err != nil {
		if !errors.Is(err, ErrCorruptState) {
			t.Fatalf("decode error %v does not match ErrCorruptState", err)
		}
		return
	}
	if len(users) > MaxUsersLimit {
		t.Fatalf("%d users decoded", len(users))
	}
	for name, e := range users {
		u := stateUser{User: name, Failures: e.failures, Level: e.level, LastFailure: e.last, LockedUntil: e.until}
		if err := u.check(); err != nil {
			t.Fatalf("decoded an out-of-bounds entry: %v", err)
		}
	}
	again, err := encodeState(users)
	if err != nil {
		t.Fatalf("a decoded state does not encode: %v", err)
	}
	back, err := decodeState(again)
	if err != nil {
		t.Fatalf("an encoded state does not decode: %v", err)
	}
	third, err := encodeState(back)
	if err != nil || string(third) != string(again) {
		t.Fatalf("state changes through encode and decode: %v", err)
	}

	// The Guard's promise at any clock reading: after settling, a lockout
	// ends after now and no more than MaxLockout after it.
	g := &Guard{policy: Policy{}.withDefaults(), users: back}
	for _, e := range back {
		for _, now := range []time.Time{e.last.Add(-time.Hour), e.last, e.until, e.last.Add(25 * time.Hour)} {
			c := *e
			if g.settleEntry(&c, now) {
				continue
			}
			if c.last.After(now) {
				t.Fatalf("settled at %v, last failure still at %v", now, c.last)
			}
			if !c.until.IsZero() && (!c.until.After(now) || c.until.Sub(now) > g.policy.MaxLockout) {
				t.Fatalf("settled at %v, locked until %v", now, c.until)
			}
		}
	}
}
