package gate

import (
	"errors"
	"fmt"

	"github.com/chartsync/chartsync/replica"
)

// ErrUnauthenticated is IdentifyBundle's error for a bundle that carries
// no valid signature of the sender it names: nothing says who sent it.
var ErrUnauthenticated = errors.New("gate: bundle not signed by the sender it names")

// bundleAuthDomain is the chart name under which a replica signs a
// bundle's digest (replica.Bundle.Auth): part of the bundle format.
const bundleAuthDomain = "chartsync bundle"

// IdentifyBundle authenticates a bundle that came without an
// authenticated channel (a file carried on a USB stick) by its sender's
// signature over the whole bundle (replica.Bundle.Auth, which a replica
// with a Config.Signer puts on every bundle it makes for a courier):
// the Sender it returns is the replica the bundle names, in the clinic
// keys enrols it in (its name is left empty). A bundle that does not
// decode gives the replica's error (replica.ErrMalformedBundle,
// replica.ErrBundleVersion, ...); one unsigned, or whose signature does not
// verify against the sender's enrolled key, ErrUnauthenticated.
func IdentifyBundle(data []byte, keys replica.Keys) (Sender, error) {
	b, err := replica.DecodeBundle(data)
	if err != nil {
		return Sender{}, fmt.Errorf("identify bundle: %w", err)
	}
	if len(b.Auth) == 0 {
		return Sender{}, fmt.Errorf("identify bundle from %s: unsigned: %w", b.From, ErrUnauthenticated)
	}
	clinic, err := keys.VerifyChange(b.From, bundleAuthDomain, b.Signed(), b.Auth)
	if err != nil {
		return Sender{}, fmt.Errorf("identify bundle from %s: %w: %w", b.From, ErrUnauthenticated, err)
	}
	return Sender{Replica: b.From, Clinic: clinic}, nil
}
