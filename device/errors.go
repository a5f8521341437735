package device

import (
	"errors"
	"fmt"

	"github.com/chartsync/chartsync/internal/wire"
)

// Errors returned by this package. Match them with errors.Is; the error
// text says which device or record was refused.
var (
	// ErrMalformed: the bytes are not a well-formed key file, enrolment,
	// request or roster (truncated, corrupted, inconsistent fields).
	ErrMalformed = wire.ErrMalformed
	// ErrVersion: a file of a format version this build does not know.
	ErrVersion = wire.ErrVersion
	// ErrTooLarge: a file or one of its fields is over its limit.
	ErrTooLarge = wire.ErrTooLarge
	// ErrBadSignature: a signature does not verify against the key it
	// claims: the record was forged or changed after it was signed.
	ErrBadSignature = errors.New("device: signature does not verify")
	// ErrUnknownAuthority: an enrolment is signed by a key the roster does
	// not trust.
	ErrUnknownAuthority = errors.New("device: enrolment signed by an untrusted authority")
	// ErrOutOfScope: a trusted authority signed an enrolment for a clinic
	// it may not enrol devices for.
	ErrOutOfScope = errors.New("device: authority may not enrol devices of this clinic")
	// ErrUnknownDevice: no enrolment is held for the replica ID.
	ErrUnknownDevice = errors.New("device: device not enrolled")
	// ErrExpired: the enrolment has expired.
	ErrExpired = errors.New("device: enrolment expired")
	// ErrRevoked: the authority revoked the device's enrolment.
	ErrRevoked = errors.New("device: enrolment revoked")
	// ErrRevokedAuthority: a record was signed by an authority key (a
	// hub administrator's) whose revocation does not accept it: it is
	// not in force, and neither is the device it enrolled or the changes
	// signed with the key it gave. It also matches ErrRevoked.
	ErrRevokedAuthority = fmt.Errorf("device: record of a revoked authority: %w", ErrRevoked)
	// ErrInsecureKeyFile: a secret key file may be read by other users.
	ErrInsecureKeyFile = errors.New("device: key file is readable by other users")
)
