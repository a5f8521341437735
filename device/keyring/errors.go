package keyring

import (
	"errors"
	"fmt"
)

// Errors returned by this package, wrapped with the keyring's path and the
// operation. Match them with errors.Is.
var (
	// ErrWrongPassword: the password does not unseal the user's entry.
	ErrWrongPassword = errors.New("keyring: wrong password")
	// ErrUnknownUser: the keyring holds no entry for the user.
	ErrUnknownUser = errors.New("keyring: no such user on this device")
	// ErrDamaged: the keyring file is not one this package wrote, or was
	// changed since: malformed, truncated, larger than MaxFileSize, of
	// another format version, failing its checksum, with parameters out
	// of bounds, or with an entry that unseals to a key other than the
	// device's. The file is left as it is; a device whose keyring is
	// damaged is unlocked with Recover.
	ErrDamaged = errors.New("keyring: the keyring file is damaged")
	// ErrExists: Create was asked to make a keyring where a file is.
	ErrExists = errors.New("keyring: a keyring already exists")
	// ErrUserExists: AddUser was asked for a user the keyring holds.
	ErrUserExists = errors.New("keyring: the user already has an entry")
	// ErrLastUser: RemoveUser was asked to remove the only user, which
	// would leave the device to be unlocked by recovery alone.
	ErrLastUser = errors.New("keyring: cannot remove the last user; add another first")
	// ErrTooManyUsers: the keyring holds MaxUsers users already.
	ErrTooManyUsers = fmt.Errorf("keyring: the keyring holds %d users, the most it can", MaxUsers)
	// ErrWrongKey: a data key given to AddUser, RemoveUser or
	// ResetPassword is not this device's.
	ErrWrongKey = errors.New("keyring: the data key is not this device's")
	// ErrWrongIdentity: the age identity given to Recover is not the one
	// the keyring's recovery entry is encrypted to.
	ErrWrongIdentity = errors.New("keyring: the identity does not match the keyring's recovery recipient")
	// ErrInvalidRecipient: the recovery recipient is not an age X25519
	// ("age1…") or hybrid post-quantum ("age1pq1…") recipient.
	ErrInvalidRecipient = errors.New("keyring: invalid age recipient for recovery")
	// ErrInvalidUser: a user ID that is empty, longer than MaxUserLength
	// bytes, not UTF-8, or holding control characters.
	ErrInvalidUser = fmt.Errorf("keyring: user ID must be 1 to %d bytes of printable text", MaxUserLength)
	// ErrWeakPassword: a new password shorter than MinPasswordLength
	// characters.
	ErrWeakPassword = fmt.Errorf("keyring: password too short; choose one of at least %d characters", MinPasswordLength)
	// ErrPasswordTooLong: a new password longer than MaxPasswordLength
	// bytes.
	ErrPasswordTooLong = fmt.Errorf("keyring: password too long; choose one of at most %d bytes", MaxPasswordLength)
	// ErrInvalidParams: argon2id parameters outside Params.Validate's
	// bounds.
	ErrInvalidParams = errors.New("keyring: invalid argon2id parameters")
)

// damaged returns an error matching ErrDamaged that says why.
func damaged(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrDamaged, fmt.Sprintf(format, args...))
}
