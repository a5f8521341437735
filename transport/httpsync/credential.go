package httpsync

import (
	"bytes"
	"crypto"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/chartsync/chartsync/device"
	"github.com/chartsync/chartsync/internal/atomicfile"
)

// Credential is what a device needs to sync with the cloud, besides its
// own key: the certificate the cloud issued for that key, how to
// recognise the cloud, and where the cloud is; and, for the relay courier,
// the cloud's enrolment of the device (a device.Enrolment) and the roster
// of devices the cloud had enrolled. None of it is secret: the private key
// stays in the device's identity file (device.Identity) and is added at
// load time with WithIdentity or WithKey.
type Credential struct {
	Device Device
	// Key signs the TLS handshake for Cert's public key. It is never
	// written to or read from a credential file; WithIdentity sets it.
	Key  crypto.Signer
	Cert *x509.Certificate
	// ServerTrust holds CA certificates the cloud's certificate must chain
	// to, or the cloud's own certificate to pin. Empty means the system's
	// roots.
	ServerTrust  []*x509.Certificate
	CloudURL     string
	CloudReplica string
	// Authority is the cloud's enrolment authority key (device.Authority),
	// which the device trusts for relay enrolments; Enrolment is the
	// device's own enrolment signed by it (a device.Enrolment file), for
	// the same replica, clinic and key as Cert; Roster is a roster file
	// (device.Roster.Encode) of the devices the cloud had enrolled. All
	// three are optional; NewRoster uses them.
	Authority ed25519.PublicKey
	Enrolment []byte
	Roster    []byte

	// path is the file the credential was read from, if any: a client
	// keeps the device's TLS sessions beside it (see SessionFileFor).
	path string
}

// SessionFileFor returns where a client keeps the TLS sessions of a
// credential read with ReadCredentialFile: beside it, with ".sessions"
// added to its name. It is empty for a credential made in memory.
func (c *Credential) SessionFileFor() string {
	if c == nil || c.path == "" {
		return ""
	}
	return c.path + ".sessions"
}

// Errors of a credential and the device's key.
var (
	// ErrNoDeviceKey: a client was given a credential without the
	// device's key (see WithIdentity).
	ErrNoDeviceKey = errors.New("the credential has no device key: load the device's identity and use Credential.WithIdentity")
	// ErrKeyMismatch: the credential was issued for another key, replica
	// or clinic than the device's identity.
	ErrKeyMismatch = errors.New("the credential was not issued for this device's key")
)

// PEM block types of a credential file's chartsync parts: the cloud
// block's body is cloudBlock as JSON; the enrolment and roster blocks hold
// device.Enrolment and device.Roster files.
const (
	pemCloud     = "CHARTSYNC CLOUD"
	pemEnrolment = "CHARTSYNC ENROLMENT"
	pemRoster    = "CHARTSYNC ROSTER"
)

type cloudBlock struct {
	URL       string `json:"url,omitempty"`
	Replica   string `json:"replica,omitempty"`
	Authority string `json:"authority,omitempty"` // hex ed25519 public key
}

// MarshalPEM encodes the credential as a PEM file: the device certificate
// first, each server-trust certificate, the relay enrolment and roster if
// any, and last a CHARTSYNC CLOUD block holding the cloud's URL, replica
// ID and enrolment authority key as JSON. It never holds a private key.
// openssl and curl read the certificates (curl --cert FILE --key KEY, with
// a key that only the device holds).
func (c *Credential) MarshalPEM() ([]byte, error) {
	if c.Cert == nil {
		return nil, errors.New("credential has no certificate")
	}
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "# chartsync credential of device %s, clinic %s, for the cloud at %s.\n", c.Device.Name, c.Device.Clinic, c.CloudURL)
	fmt.Fprintf(&buf, "# It holds no secret: it works only with the device's own key, which never leaves the device.\n")
	for _, cert := range append([]*x509.Certificate{c.Cert}, c.ServerTrust...) {
		if err := pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}); err != nil {
			return nil, err
		}
	}
	for _, b := range []pem.Block{{Type: pemEnrolment, Bytes: c.Enrolment}, {Type: pemRoster, Bytes: c.Roster}} {
		if len(b.Bytes) > 0 {
			if err := pem.Encode(&buf, &b); err != nil {
				return nil, err
			}
		}
	}
	cb := cloudBlock{URL: c.CloudURL, Replica: c.CloudReplica}
	if len(c.Authority) > 0 {
		cb.Authority = hex.EncodeToString(c.Authority)
	}
	cloud, err := json.Marshal(cb)
	if err != nil {
		return nil, err
	}
	if err := pem.Encode(&buf, &pem.Block{Type: pemCloud, Bytes: cloud}); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ParseCredential reads a credential written by MarshalPEM: the first
// certificate is the device's; every other certificate is server trust.
// It checks that the certificate names a replica and a clinic, and that a
// relay enrolment and roster, if present, are signed by the authority the
// file names and that the enrolment is of the certificate's replica,
// clinic and key. It refuses a file holding a private key (a device's key
// never leaves the device). It does not check expiry (the cloud does).
func ParseCredential(data []byte) (*Credential, error) {
	c := &Credential{}
	var sawHeader bool
	var certs []*x509.Certificate
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		switch b.Type {
		case pemCloud:
			var cb cloudBlock
			if err := json.Unmarshal(b.Bytes, &cb); err != nil {
				return nil, fmt.Errorf("credential %s block: %w", pemCloud, err)
			}
			sawHeader = true
			c.CloudURL, c.CloudReplica = cb.URL, cb.Replica
			if cb.Authority != "" {
				k, err := hex.DecodeString(cb.Authority)
				if err != nil || len(k) != ed25519.PublicKeySize {
					return nil, fmt.Errorf("credential %s block: authority %q is not an ed25519 public key in hex", pemCloud, cb.Authority)
				}
				c.Authority = k
			}
		case pemEnrolment, pemRoster:
			dst := &c.Enrolment
			if b.Type == pemRoster {
				dst = &c.Roster
			}
			if *dst != nil {
				return nil, fmt.Errorf("credential holds more than one %s block", b.Type)
			}
			*dst = b.Bytes
		case "CERTIFICATE":
			cert, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("credential certificate: %w", err)
			}
			certs = append(certs, cert)
		default:
			if strings.Contains(b.Type, "PRIVATE KEY") {
				return nil, errors.New("credential holds a private key; a device's key must never leave it: make a new enrolment request on the device and enrol that")
			}
			return nil, fmt.Errorf("credential: unexpected PEM block %q", b.Type)
		}
	}
	if !sawHeader {
		return nil, errors.New("not a chartsync device credential (no " + pemCloud + " block)")
	}
	if len(certs) == 0 {
		return nil, errors.New("credential has no device certificate")
	}
	c.Cert, c.ServerTrust = certs[0], certs[1:]
	if len(c.ServerTrust) == 0 {
		c.ServerTrust = nil
	}
	if _, ok := c.Cert.PublicKey.(ed25519.PublicKey); !ok {
		return nil, fmt.Errorf("credential: the device certificate's key is %T, not ed25519", c.Cert.PublicKey)
	}
	if c.CloudReplica != "" {
		if err := checkReplicaID(c.CloudReplica); err != nil {
			return nil, fmt.Errorf("credential cloud %w", err)
		}
	}
	dev, err := deviceFromCert(c.Cert)
	if err != nil {
		return nil, fmt.Errorf("credential: %w", err)
	}
	c.Device = dev
	if err := c.checkRelay(); err != nil {
		return nil, fmt.Errorf("credential: %w", err)
	}
	return c, nil
}

// checkRelay checks the relay enrolment and roster against the authority
// and the certificate.
func (c *Credential) checkRelay() error {
	if len(c.Enrolment) == 0 && len(c.Roster) == 0 {
		return nil
	}
	if len(c.Authority) != ed25519.PublicKeySize {
		return errors.New("a relay enrolment or roster without the authority key that signed it")
	}
	if len(c.Enrolment) > 0 {
		e, err := device.DecodeEnrolment(c.Enrolment)
		if err != nil {
			return err
		}
		switch {
		case !e.Authority.Equal(c.Authority):
			return fmt.Errorf("relay enrolment signed by authority %s, not the cloud's %s: %w", device.Fingerprint(e.Authority), device.Fingerprint(c.Authority), device.ErrUnknownAuthority)
		case e.Revoked:
			return fmt.Errorf("relay enrolment of %s is a revocation: %w", e.Device.ReplicaID, device.ErrRevoked)
		case e.Device.ReplicaID != c.Device.Replica || e.Device.Clinic != c.Device.Clinic || !e.Device.SignKey.Equal(c.Cert.PublicKey):
			return fmt.Errorf("relay enrolment of %s (%s, key %s) does not match the certificate of %s (%s): %w",
				e.Device.ReplicaID, e.Device.Clinic, device.Fingerprint(e.Device.SignKey), c.Device.Replica, c.Device.Clinic, ErrKeyMismatch)
		}
	}
	if _, err := c.NewRoster(); err != nil {
		return err
	}
	return nil
}

// NewRoster returns a roster trusting the cloud's enrolment authority and
// holding the credential's roster and the device's own enrolment: what
// the relay courier needs to check senders and find recipients' keys. It
// fails if the credential has no authority key.
func (c *Credential) NewRoster() (*device.Roster, error) {
	if len(c.Authority) != ed25519.PublicKeySize {
		return nil, errors.New("the credential names no enrolment authority (enrolled before relay enrolments were issued): enrol the device again")
	}
	r, err := device.NewRoster(device.RosterConfig{Authorities: []device.TrustedAuthority{{Key: c.Authority}}})
	if err != nil {
		return nil, err
	}
	for _, data := range [][]byte{c.Roster, c.Enrolment} {
		if len(data) > 0 {
			if _, err := r.Merge(data); err != nil {
				return nil, err
			}
		}
	}
	return r, nil
}

// WithKey returns a copy of the credential that signs with key, the
// private key of the device's certificate. It refuses a key for another
// public key than the certificate's with ErrKeyMismatch.
func (c *Credential) WithKey(key crypto.Signer) (*Credential, error) {
	if key == nil {
		return nil, ErrNoDeviceKey
	}
	if err := c.checkKey(key); err != nil {
		return nil, err
	}
	cc := *c
	cc.Key = key
	return &cc, nil
}

func (c *Credential) checkKey(key crypto.Signer) error {
	if c.Cert == nil {
		return errors.New("credential has no certificate")
	}
	pub, ok := key.Public().(ed25519.PublicKey)
	if !ok || !pub.Equal(c.Cert.PublicKey) {
		certKey, _ := c.Cert.PublicKey.(ed25519.PublicKey)
		got := "a non-ed25519 key"
		if ok {
			got = "key " + device.Fingerprint(pub)
		}
		return fmt.Errorf("%w: it certifies key %s, the device has %s", ErrKeyMismatch, device.Fingerprint(certKey), got)
	}
	return nil
}

// WithIdentity returns a copy of the credential that signs with the
// device identity's key (device.Identity.TLSSigner). It refuses, with
// ErrKeyMismatch, a credential issued for another replica, clinic or key
// than the identity's.
func (c *Credential) WithIdentity(id *device.Identity) (*Credential, error) {
	if id == nil {
		return nil, ErrNoDeviceKey
	}
	if id.ReplicaID() != c.Device.Replica {
		return nil, fmt.Errorf("%w: it is for replica %s, the device is %s", ErrKeyMismatch, c.Device.Replica, id.ReplicaID())
	}
	if id.Clinic() != c.Device.Clinic {
		return nil, fmt.Errorf("%w: it is for clinic %s, the device belongs to %s", ErrKeyMismatch, c.Device.Clinic, id.Clinic())
	}
	return c.WithKey(id.TLSSigner())
}

// WriteFile writes the credential to path atomically, mode 0600 (it holds
// no secret, but names the clinic's devices).
func (c *Credential) WriteFile(path string) error {
	data, err := c.MarshalPEM()
	if err != nil {
		return fmt.Errorf("write credential: %w", err)
	}
	if err := atomicfile.Write(path, data, atomicfile.Options{Perm: 0o600}); err != nil {
		return fmt.Errorf("write credential: %w", err)
	}
	return nil
}

// ReadCredentialFile reads a credential file. It refuses a file that
// other users may write: whoever can change its server trust can make the
// device sync with an impostor. The file holds no key: add the device's
// with WithIdentity.
func ReadCredentialFile(path string) (*Credential, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("read credential: %w", err)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return nil, fmt.Errorf("read credential: %s may be changed by other users (mode %v); run chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read credential: %w", err)
	}
	c, err := ParseCredential(data)
	if err != nil {
		return nil, fmt.Errorf("read credential %s: %w", path, err)
	}
	c.path = path
	return c, nil
}

// TLSConfig returns a client TLS configuration presenting the device
// certificate, signed for with Key (none if Key is nil), and verifying the cloud against ServerTrust: a CA
// certificate is a root; a non-CA certificate is pinned (the cloud must
// present exactly it). TLS 1.3 only.
func (c *Credential) TLSConfig() *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS13}
	if c.Key != nil {
		cfg.Certificates = []tls.Certificate{{Certificate: [][]byte{c.Cert.Raw}, PrivateKey: c.Key, Leaf: c.Cert}}
	}
	var pins []*x509.Certificate
	var roots *x509.CertPool
	for _, t := range c.ServerTrust {
		if t.IsCA {
			if roots == nil {
				roots = x509.NewCertPool()
			}
			roots.AddCert(t)
		} else {
			pins = append(pins, t)
		}
	}
	cfg.RootCAs = roots
	if len(pins) == 0 {
		return cfg
	}
	// A pinned certificate is checked in VerifyConnection, which replaces
	// the usual chain check; a CA in ServerTrust is still honoured.
	cfg.InsecureSkipVerify = true
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if len(cs.PeerCertificates) == 0 {
			return errors.New("cloud presented no certificate")
		}
		leaf := cs.PeerCertificates[0]
		for _, p := range pins {
			if leaf.Equal(p) {
				return nil
			}
		}
		if roots == nil {
			return fmt.Errorf("%w: it is not the certificate pinned in the device credential", ErrServerNotTrusted)
		}
		inter := x509.NewCertPool()
		for _, ic := range cs.PeerCertificates[1:] {
			inter.AddCert(ic)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: cs.ServerName}); err != nil {
			return fmt.Errorf("%w: %w", ErrServerNotTrusted, err)
		}
		return nil
	}
	return cfg
}
