package login

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
)

// Bounds on passwords and argon2 parameters. Params.Validate, Hash and the
// hash parser enforce them, so that an encoded hash arriving from a peer can
// never make a device allocate more than MaxMemory or compute for long. They
// are what a tablet of 2 GiB, shared with the app and its charts, can
// afford at every login: RFC 9106's second recommended parameters (64 MiB,
// 3 passes, 4 lanes) and OWASP's (DefaultParams) fit. The replicated user
// roster (package record) refuses a hash outside them as an invalid change.
const (
	// MinPasswordLength is the fewest characters (runes) Hash accepts.
	MinPasswordLength = 8
	// MaxPasswordLength is the most bytes Hash accepts; Verify reports a
	// longer password as wrong without computing anything.
	MaxPasswordLength = 1024
	// MaxMemory is the largest Params.Memory, in KiB (64 MiB).
	MaxMemory = 64 << 10
	// MaxTime is the largest Params.Time (passes over the memory).
	MaxTime = 10
	// MaxThreads is the largest Params.Threads.
	MaxThreads = 4
	// MaxWork bounds Memory×Time, in KiB-passes (64 MiB 4 times, or
	// 25 MiB 10 times), so the largest memory and the most passes cannot
	// be asked for together.
	MaxWork = MaxMemory * 4

	saltLen          = 16 // bytes of salt Hash draws
	keyLen           = 32 // bytes of key Hash derives
	minSaltLen       = 8  // salts and keys Verify accepts from other tools
	maxSaltLen       = 64
	minKeyLen        = 16
	maxKeyLen        = 64
	maxEncodedLen    = 256 // no valid encoded hash is longer
	maxDecimalDigits = 10  // enough for a uint32
)

// Params are argon2id cost parameters.
type Params struct {
	Memory  uint32 // KiB; at least 8 per thread
	Time    uint32 // passes over the memory
	Threads uint8  // lanes computed in parallel
}

// DefaultParams are OWASP's minimum for argon2id (19 MiB, 2 passes, 1
// lane): some tens of milliseconds on a low-end laptop or phone. Use them
// for every hash on the roster; smaller parameters are for tests.
var DefaultParams = Params{Memory: 19 * 1024, Time: 2, Threads: 1}

// Validate reports parameters outside this package's bounds: Threads 1 to
// MaxThreads, Time 1 to MaxTime, Memory 8×Threads to MaxMemory KiB, and
// Memory×Time at most MaxWork. It does not judge strength: small
// parameters pass (tests use them); DefaultParams are the floor for real
// hashes.
func (p Params) Validate() error {
	switch {
	case p.Threads < 1 || p.Threads > MaxThreads:
		return fmt.Errorf("%w: threads %d not in 1..%d", ErrInvalidParams, p.Threads, MaxThreads)
	case p.Time < 1 || p.Time > MaxTime:
		return fmt.Errorf("%w: time %d not in 1..%d", ErrInvalidParams, p.Time, MaxTime)
	case p.Memory < 8*uint32(p.Threads) || p.Memory > MaxMemory:
		return fmt.Errorf("%w: memory %d KiB not in %d..%d KiB", ErrInvalidParams, p.Memory, 8*uint32(p.Threads), MaxMemory)
	case uint64(p.Memory)*uint64(p.Time) > MaxWork:
		return fmt.Errorf("%w: memory %d KiB × time %d is over %d KiB-passes", ErrInvalidParams, p.Memory, p.Time, MaxWork)
	}
	return nil
}

// Hash derives an argon2id key from password with a fresh 16-byte random
// salt and returns it in PHC form:
//
//	$argon2id$v=19$m=19456,t=2,p=1$<salt>$<key>
//
// with salt and key in unpadded standard base64. It refuses a password of
// fewer than MinPasswordLength characters (ErrWeakPassword) or more than
// MaxPasswordLength bytes (ErrPasswordTooLong), and parameters that fail
// Validate (ErrInvalidParams). Passwords are compared byte for byte: a
// caller whose keyboards may compose accented letters differently should
// normalise them (NFC) before Hash and Verify alike.
func Hash(password string, p Params) (string, error) {
	if err := checkPassword(password); err != nil {
		return "", err
	}
	if err := p.Validate(); err != nil {
		return "", err
	}
	salt := make([]byte, saltLen)
	if _, err := rand.Read(salt); err != nil {
		return "", fmt.Errorf("login: read random salt: %w", err)
	}
	h := phc{params: p, salt: salt, key: argon2.IDKey([]byte(password), salt, p.Time, p.Memory, p.Threads, keyLen)}
	return h.String(), nil
}

func checkPassword(password string) error {
	if len(password) > MaxPasswordLength {
		return ErrPasswordTooLong
	}
	if utf8.RuneCountInString(password) < MinPasswordLength {
		return ErrWeakPassword
	}
	return nil
}

// Verify checks password against an encoded hash made by Hash (or any
// argon2id v=19 PHC string within bounds). It returns nil on a match,
// ErrWrongPassword on a mismatch (at once, for a password over
// MaxPasswordLength bytes), and a *MalformedHashError (ErrMalformedHash)
// for a string that does not parse or whose parameters fail
// Params.Validate; no input makes it panic, allocate more than MaxMemory
// or run more than MaxWork. The comparison takes constant time.
//
// Verify does no rate limiting: people log in through Guard.Login.
func Verify(encoded, password string) error {
	h, err := parseHash(encoded)
	if err != nil {
		return err
	}
	if len(password) > MaxPasswordLength {
		return ErrWrongPassword
	}
	key := argon2.IDKey([]byte(password), h.salt, h.params.Time, h.params.Memory, h.params.Threads, uint32(len(h.key)))
	if subtle.ConstantTimeCompare(key, h.key) != 1 {
		return ErrWrongPassword
	}
	return nil
}

// ParseHash returns the parameters of an encoded hash without checking any
// password, or a *MalformedHashError. A caller compares them with the
// parameters it wants (DefaultParams) to see which roster entries to hash
// again at the next successful login.
func ParseHash(encoded string) (Params, error) {
	h, err := parseHash(encoded)
	if err != nil {
		return Params{}, err
	}
	return h.params, nil
}

// phc is a parsed argon2id hash.
type phc struct {
	params    Params
	salt, key []byte
}

var b64 = base64.RawStdEncoding.Strict()

func (h phc) String() string {
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version,
		h.params.Memory, h.params.Time, h.params.Threads, b64.EncodeToString(h.salt), b64.EncodeToString(h.key))
}

// parseHash parses the canonical form String writes, and nothing else:
// fields in order, decimal numbers without sign or leading zero, canonical
// unpadded base64. Every length and number is bounded before use.
func parseHash(s string) (phc, error) {
	if len(s) > maxEncodedLen {
		return phc{}, malformed("longer than %d characters", maxEncodedLen)
	}
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[0] != "" {
		return phc{}, malformed("not of the form $argon2id$v=19$m=…,t=…,p=…$salt$hash")
	}
	if parts[1] != "argon2id" {
		alg := parts[1]
		if len(alg) > 16 {
			alg = alg[:16]
		}
		return phc{}, malformed("algorithm %q, want argon2id", alg)
	}
	v, ok := strings.CutPrefix(parts[2], "v=")
	if !ok {
		return phc{}, malformed("no version field")
	}
	version, err := decimal(v)
	if err != nil {
		return phc{}, malformed("version: %v", err)
	}
	if version != argon2.Version {
		return phc{}, malformed("argon2 version %d, want %d", version, argon2.Version)
	}
	fields := strings.Split(parts[3], ",")
	if len(fields) != 3 {
		return phc{}, malformed("want exactly the parameters m, t, p")
	}
	var nums [3]uint32
	for i, name := range []string{"m=", "t=", "p="} {
		digits, ok := strings.CutPrefix(fields[i], name)
		if !ok {
			return phc{}, malformed("parameter %d is not %s…", i+1, name)
		}
		if nums[i], err = decimal(digits); err != nil {
			return phc{}, malformed("parameter %s: %v", name[:1], err)
		}
	}
	if nums[2] > MaxThreads {
		return phc{}, &MalformedHashError{Reason: "parameters out of bounds",
			Err: fmt.Errorf("%w: threads %d not in 1..%d", ErrInvalidParams, nums[2], MaxThreads)}
	}
	h := phc{params: Params{Memory: nums[0], Time: nums[1], Threads: uint8(nums[2])}}
	if err := h.params.Validate(); err != nil {
		return phc{}, &MalformedHashError{Reason: "parameters out of bounds", Err: err}
	}
	if h.salt, err = base64Field(parts[4], minSaltLen, maxSaltLen); err != nil {
		return phc{}, malformed("salt: %v", err)
	}
	if h.key, err = base64Field(parts[5], minKeyLen, maxKeyLen); err != nil {
		return phc{}, malformed("hash: %v", err)
	}
	return h, nil
}

// decimal parses a canonical unsigned decimal that fits in 32 bits.
func decimal(s string) (uint32, error) {
	switch {
	case s == "":
		return 0, fmt.Errorf("empty number")
	case len(s) > maxDecimalDigits:
		return 0, fmt.Errorf("number of more than %d digits", maxDecimalDigits)
	case len(s) > 1 && s[0] == '0':
		return 0, fmt.Errorf("number with a leading zero")
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("not a decimal number")
		}
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("number out of range")
	}
	return uint32(n), nil
}

// base64Field decodes canonical unpadded standard base64 of min to max
// bytes. The decoder skips CR and LF, so the result is re-encoded and
// compared to refuse them.
func base64Field(s string, min, max int) ([]byte, error) {
	if len(s) < b64.EncodedLen(min) || len(s) > b64.EncodedLen(max) {
		return nil, fmt.Errorf("not %d to %d bytes", min, max)
	}
	b, err := b64.DecodeString(s)
	if err != nil || b64.EncodeToString(b) != s {
		return nil, fmt.Errorf("not canonical unpadded base64")
	}
	if len(b) < min || len(b) > max {
		return nil, fmt.Errorf("not %d to %d bytes", min, max)
	}
	return b, nil
}
