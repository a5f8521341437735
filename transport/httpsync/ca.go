package httpsync

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/chartsync/chartsync/internal/atomicfile"
)

// Credential errors, returned by VerifyDevice and matched by a client's
// *StatusError for the corresponding code. Each also matches
// ErrUnauthorized.
var (
	ErrNoCredential       = fmt.Errorf("no device credential presented: %w", ErrUnauthorized)
	ErrCredentialExpired  = fmt.Errorf("device credential expired or not yet valid: %w", ErrUnauthorized)
	ErrCredentialRejected = fmt.Errorf("device credential not issued by this cloud, or damaged: %w", ErrUnauthorized)
	// ErrCredentialRevoked: the cloud's administrator revoked the
	// device (Config.CheckDevice says so). Only the administrator can
	// let it sync again, by enrolling it anew.
	ErrCredentialRevoked = fmt.Errorf("device revoked by the cloud's administrator: %w", ErrUnauthorized)
)

// URI SAN prefixes binding a device certificate to a replica and a clinic.
const (
	uriReplica = "chartsync:replica:"
	uriClinic  = "chartsync:clinic:"
)

// Device is who a verified device certificate says a device is.
type Device struct {
	Replica  string    `json:"replica"`   // the device's replica ID (32 hex digits)
	Clinic   string    `json:"clinic"`    // the clinic whose charts it may read and write
	Name     string    `json:"name"`      // the device's name (certificate common name)
	Serial   string    `json:"serial"`    // certificate serial number, hex
	NotAfter time.Time `json:"not_after"` // when the credential expires
}

// DeviceCA issues and verifies device credentials: an ed25519 key and a
// self-signed CA certificate that the cloud keeps in its data directory.
// It is safe for concurrent use.
type DeviceCA struct {
	Cert *x509.Certificate
	key  ed25519.PrivateKey
}

// NewDeviceCA creates a CA valid from now for valid.
func NewDeviceCA(name string, now time.Time, valid time.Duration) (*DeviceCA, error) {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("new device CA: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: name, Organization: []string{"chartsync"}},
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              now.Add(valid),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		SubjectKeyId:          keyID(pub),
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		return nil, fmt.Errorf("new device CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("new device CA: %w", err)
	}
	return &DeviceCA{Cert: cert, key: key}, nil
}

// Files of a DeviceCA in a directory.
const (
	caCertFile = "ca.crt"
	caKeyFile  = "ca.key"
)

// OpenDeviceCA loads the CA kept in dir (ca.crt and ca.key), creating it,
// valid for ten years, if neither file exists. The key is written 0600.
func OpenDeviceCA(dir string, now time.Time) (ca *DeviceCA, created bool, err error) {
	certPEM, errCert := os.ReadFile(filepath.Join(dir, caCertFile))
	keyPEM, errKey := os.ReadFile(filepath.Join(dir, caKeyFile))
	switch {
	case errCert == nil && errKey == nil:
		ca, err := ParseDeviceCA(certPEM, keyPEM)
		if err != nil {
			return nil, false, fmt.Errorf("device CA in %s: %w", dir, err)
		}
		return ca, false, nil
	case errors.Is(errCert, os.ErrNotExist) && errors.Is(errKey, os.ErrNotExist):
	case errCert != nil && !errors.Is(errCert, os.ErrNotExist):
		return nil, false, fmt.Errorf("device CA: %w", errCert)
	case errKey != nil && !errors.Is(errKey, os.ErrNotExist):
		return nil, false, fmt.Errorf("device CA: %w", errKey)
	default:
		return nil, false, fmt.Errorf("device CA in %s: one of %s and %s is missing; restore it from a backup (a new CA would lock out every enrolled device)", dir, caCertFile, caKeyFile)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("device CA: %w", err)
	}
	ca, err = NewDeviceCA("chartsync device CA", now, 10*365*24*time.Hour)
	if err != nil {
		return nil, false, err
	}
	certPEM, keyPEM, err = ca.MarshalPEM()
	if err != nil {
		return nil, false, err
	}
	// The key first: a certificate without its key is useless, a key
	// without its certificate is reported above rather than replaced.
	if err := atomicfile.Write(filepath.Join(dir, caKeyFile), keyPEM, atomicfile.Options{Perm: 0o600}); err != nil {
		return nil, false, fmt.Errorf("device CA: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(dir, caCertFile), certPEM, atomicfile.Options{Perm: 0o644}); err != nil {
		return nil, false, fmt.Errorf("device CA: %w", err)
	}
	return ca, true, nil
}

// ParseDeviceCA loads a CA from its PEM certificate and PKCS #8 key.
func ParseDeviceCA(certPEM, keyPEM []byte) (*DeviceCA, error) {
	cert, err := parseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	key, err := parseKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	if !cert.IsCA || !key.Public().(ed25519.PublicKey).Equal(cert.PublicKey) {
		return nil, errors.New("CA key does not match the CA certificate")
	}
	return &DeviceCA{Cert: cert, key: key}, nil
}

// MarshalPEM returns the CA certificate and its PKCS #8 private key.
func (ca *DeviceCA) MarshalPEM() (certPEM, keyPEM []byte, err error) {
	keyPEM, err = marshalKeyPEM(ca.key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Cert.Raw}), keyPEM, nil
}

// Pool returns a pool holding the CA certificate, for Config.DeviceCA.
func (ca *DeviceCA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// Enrolment is what a device credential binds.
type Enrolment struct {
	Replica string // the device's replica ID
	Clinic  string // the clinic it belongs to
	Device  string // a name for the device, e.g. kamuga-tablet-1
	// PublicKey is the device's own ed25519 signing key
	// (device.Public.SignKey, from the enrolment request the device
	// made): the certificate is issued for it, and the device proves it
	// holds the private key on every connection. Required.
	PublicKey ed25519.PublicKey
	// Valid is how long the credential is valid (default a year).
	Valid time.Duration
	// Now is the issue time (zero means time.Now).
	Now time.Time
	// CloudURL, CloudReplica and ServerTrust are copied into the
	// credential: where the cloud is, its replica ID, and the certificates
	// (a CA, or the server's own certificate to pin) the device verifies
	// the cloud against.
	CloudURL     string
	CloudReplica string
	ServerTrust  []*x509.Certificate
}

// Enrol issues a device credential: a client certificate for the device's
// own key (e.PublicKey), binding its replica and clinic, signed by the CA.
// The credential holds no private key: the device adds its own at load
// time (Credential.WithIdentity), so the key never leaves the device. Check
// that the device holds the key before enrolling it: device.ParseRequest
// does, for a request the device made with device.Identity.Request.
func (ca *DeviceCA) Enrol(e Enrolment) (*Credential, error) {
	if err := checkReplicaID(e.Replica); err != nil {
		return nil, fmt.Errorf("enrol device: %w", err)
	}
	if err := checkName("clinic", e.Clinic); err != nil {
		return nil, fmt.Errorf("enrol device: %w", err)
	}
	if err := checkName("device", e.Device); err != nil {
		return nil, fmt.Errorf("enrol device: %w", err)
	}
	if len(e.PublicKey) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("enrol device: the device's ed25519 public key is required (got %d bytes)", len(e.PublicKey))
	}
	if e.PublicKey.Equal(ca.Cert.PublicKey) {
		return nil, errors.New("enrol device: the device key is the CA's own key")
	}
	if e.CloudReplica != "" {
		if err := checkReplicaID(e.CloudReplica); err != nil {
			return nil, fmt.Errorf("enrol device: cloud %w", err)
		}
	}
	if e.Valid == 0 {
		e.Valid = 365 * 24 * time.Hour
	}
	if e.Valid < 0 {
		return nil, errors.New("enrol device: validity must be positive")
	}
	if e.Now.IsZero() {
		e.Now = time.Now()
	}
	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	notAfter := e.Now.Add(e.Valid)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: e.Device, Organization: []string{e.Clinic}},
		NotBefore:    e.Now.Add(-5 * time.Minute),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		URIs: []*url.URL{
			{Scheme: "chartsync", Opaque: "replica:" + e.Replica},
			{Scheme: "chartsync", Opaque: "clinic:" + url.PathEscape(e.Clinic)},
		},
		AuthorityKeyId: ca.Cert.SubjectKeyId,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, ed25519.PublicKey(bytes.Clone(e.PublicKey)), ca.key)
	if err != nil {
		return nil, fmt.Errorf("enrol device: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("enrol device: %w", err)
	}
	dev, err := deviceFromCert(cert)
	if err != nil {
		return nil, fmt.Errorf("enrol device: %w", err)
	}
	return &Credential{
		Device: dev, Cert: cert,
		ServerTrust: e.ServerTrust, CloudURL: e.CloudURL, CloudReplica: e.CloudReplica,
	}, nil
}

// IssueServerCert issues a TLS server certificate for hosts (names or IP
// addresses), signed by the CA, with a new ed25519 key. It is meant for
// development: a device whose credential trusts the CA then trusts this
// server. It returns the PEM certificate and PKCS #8 key, ready for
// tls.X509KeyPair.
func (ca *DeviceCA) IssueServerCert(hosts []string, now time.Time, valid time.Duration) (certPEM, keyPEM []byte, err error) {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("issue server certificate: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:   serial,
		Subject:        pkix.Name{CommonName: "chartsync cloud", Organization: []string{"chartsync"}},
		NotBefore:      now.Add(-5 * time.Minute),
		NotAfter:       now.Add(valid),
		KeyUsage:       x509.KeyUsageDigitalSignature,
		ExtKeyUsage:    []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		AuthorityKeyId: ca.Cert.SubjectKeyId,
	}
	if tmpl.NotAfter.After(ca.Cert.NotAfter) {
		tmpl.NotAfter = ca.Cert.NotAfter
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("issue server certificate: %w", err)
	}
	keyPEM, err = marshalKeyPEM(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// VerifyDevice checks a client's certificate chain (leaf first, as in
// tls.ConnectionState.PeerCertificates) against the device CAs in roots at
// time now, and returns the device it names. Errors match
// ErrNoCredential, ErrCredentialExpired or ErrCredentialRejected (and so
// ErrUnauthorized).
func VerifyDevice(chain []*x509.Certificate, roots *x509.CertPool, now time.Time) (Device, error) {
	if len(chain) == 0 {
		return Device{}, ErrNoCredential
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	leaf := chain[0]
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, CurrentTime: now,
		KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	var invalid x509.CertificateInvalidError
	switch {
	case errors.As(err, &invalid) && invalid.Reason == x509.Expired:
		return Device{}, fmt.Errorf("%w (valid %s to %s)", ErrCredentialExpired,
			leaf.NotBefore.UTC().Format(time.DateOnly), leaf.NotAfter.UTC().Format(time.DateOnly))
	case err != nil:
		return Device{}, fmt.Errorf("%w: %v", ErrCredentialRejected, err)
	}
	dev, err := deviceFromCert(leaf)
	if err != nil {
		return Device{}, fmt.Errorf("%w: %v", ErrCredentialRejected, err)
	}
	return dev, nil
}

// deviceFromCert reads the device a certificate binds, without verifying it.
func deviceFromCert(c *x509.Certificate) (Device, error) {
	d := Device{Name: c.Subject.CommonName, Serial: hex.EncodeToString(c.SerialNumber.Bytes()), NotAfter: c.NotAfter}
	var replicas, clinics int
	for _, u := range c.URIs {
		s := u.String()
		switch {
		case strings.HasPrefix(s, uriReplica):
			d.Replica = strings.TrimPrefix(s, uriReplica)
			replicas++
		case strings.HasPrefix(s, uriClinic):
			cl, err := url.PathUnescape(strings.TrimPrefix(s, uriClinic))
			if err != nil {
				return Device{}, fmt.Errorf("certificate clinic %q: %w", s, err)
			}
			d.Clinic = cl
			clinics++
		}
	}
	if replicas != 1 || clinics != 1 {
		return Device{}, errors.New("certificate does not name exactly one replica and one clinic")
	}
	if err := checkReplicaID(d.Replica); err != nil {
		return Device{}, fmt.Errorf("certificate %w", err)
	}
	if err := checkName("clinic", d.Clinic); err != nil {
		return Device{}, fmt.Errorf("certificate %w", err)
	}
	return d, nil
}

func checkReplicaID(id string) error {
	b, err := hex.DecodeString(id)
	if err != nil || len(b) != 16 || strings.ToLower(id) != id {
		return fmt.Errorf("replica ID %q is not 32 lower-case hex digits", id)
	}
	return nil
}

// checkName accepts a clinic or device name: 1 to 128 printable
// characters, no spaces or control characters.
func checkName(what, s string) error {
	if s == "" || len(s) > 128 {
		return fmt.Errorf("%s name %q must be 1 to 128 characters", what, s)
	}
	for _, r := range s {
		if r <= ' ' || r == 0x7f {
			return fmt.Errorf("%s name %q must not contain spaces or control characters", what, s)
		}
	}
	return nil
}

func newSerial() (*big.Int, error) {
	s, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("certificate serial: %w", err)
	}
	return s.Add(s, big.NewInt(1)), nil
}

func keyID(pub ed25519.PublicKey) []byte {
	h := sha256.Sum256(pub)
	return h[:20]
}

func marshalKeyPEM(key ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("marshal key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func parseKeyPEM(data []byte) (ed25519.PrivateKey, error) {
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "PRIVATE KEY" {
		return nil, errors.New("no PEM PRIVATE KEY block")
	}
	k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
	if err != nil {
		return nil, err
	}
	ek, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("key is %T, not ed25519", k)
	}
	return ek, nil
}

func parseCertPEM(data []byte) (*x509.Certificate, error) {
	b, _ := pem.Decode(data)
	if b == nil || b.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM CERTIFICATE block")
	}
	return x509.ParseCertificate(b.Bytes)
}
