package httpsync

import (
	"bytes"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"

	"github.com/chartsync/chartsync/internal/atomicfile"
)

// Credential is what a device needs to sync with the cloud: its key and
// certificate, how to recognise the cloud, and where the cloud is. Anyone
// holding it can sync as the device: keep the file 0600.
type Credential struct {
	Device Device
	Key    ed25519.PrivateKey
	Cert   *x509.Certificate
	// ServerTrust holds CA certificates the cloud's certificate must chain
	// to, or the cloud's own certificate to pin. Empty means the system's
	// roots.
	ServerTrust  []*x509.Certificate
	CloudURL     string
	CloudReplica string
}

// PEM block types and headers of a credential file.
const (
	pemCredential     = "CHARTSYNC DEVICE CREDENTIAL"
	hdrCloudURL       = "Cloud-Url"
	hdrCloudReplica   = "Cloud-Replica"
	hdrUse            = "Use"
	useDevice         = "device"
	useServerTrust    = "server-trust"
	credentialComment = "# chartsync device credential. Anyone holding this file can sync as the\n# device it names: keep it secret (mode 0600) and on that device only.\n"
)

// MarshalPEM encodes the credential as a PEM file: a CHARTSYNC DEVICE
// CREDENTIAL block whose headers give the cloud's URL and replica ID, the
// PKCS #8 key, the device certificate (header Use: device) and each
// server-trust certificate (Use: server-trust).
func (c *Credential) MarshalPEM() ([]byte, error) {
	if c.Key == nil || c.Cert == nil {
		return nil, errors.New("credential has no key or certificate")
	}
	var buf bytes.Buffer
	buf.WriteString(credentialComment)
	hdr := map[string]string{}
	if c.CloudURL != "" {
		hdr[hdrCloudURL] = c.CloudURL
	}
	if c.CloudReplica != "" {
		hdr[hdrCloudReplica] = c.CloudReplica
	}
	if err := pem.Encode(&buf, &pem.Block{Type: pemCredential, Headers: hdr}); err != nil {
		return nil, err
	}
	key, err := marshalKeyPEM(c.Key)
	if err != nil {
		return nil, err
	}
	buf.Write(key)
	if err := pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Headers: map[string]string{hdrUse: useDevice}, Bytes: c.Cert.Raw}); err != nil {
		return nil, err
	}
	for _, t := range c.ServerTrust {
		if err := pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Headers: map[string]string{hdrUse: useServerTrust}, Bytes: t.Raw}); err != nil {
			return nil, err
		}
	}
	return buf.Bytes(), nil
}

// ParseCredential reads a credential written by MarshalPEM. It checks that
// the key matches the certificate and that the certificate names a replica
// and a clinic; it does not check expiry (the cloud does).
func ParseCredential(data []byte) (*Credential, error) {
	c := &Credential{}
	var sawHeader bool
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		switch {
		case b.Type == pemCredential:
			sawHeader = true
			c.CloudURL = b.Headers[hdrCloudURL]
			c.CloudReplica = b.Headers[hdrCloudReplica]
		case b.Type == "PRIVATE KEY":
			k, err := parseKeyPEM(pem.EncodeToMemory(b))
			if err != nil {
				return nil, fmt.Errorf("credential key: %w", err)
			}
			c.Key = k
		case b.Type == "CERTIFICATE" && b.Headers[hdrUse] == useDevice:
			cert, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("credential device certificate: %w", err)
			}
			c.Cert = cert
		case b.Type == "CERTIFICATE" && b.Headers[hdrUse] == useServerTrust:
			cert, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("credential server certificate: %w", err)
			}
			c.ServerTrust = append(c.ServerTrust, cert)
		default:
			return nil, fmt.Errorf("credential: unexpected PEM block %q", b.Type)
		}
	}
	switch {
	case !sawHeader:
		return nil, errors.New("not a chartsync device credential (no " + pemCredential + " block)")
	case c.Key == nil:
		return nil, errors.New("credential has no private key")
	case c.Cert == nil:
		return nil, errors.New("credential has no device certificate")
	case !c.Key.Public().(ed25519.PublicKey).Equal(c.Cert.PublicKey):
		return nil, errors.New("credential key does not match its certificate")
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
	return c, nil
}

// WriteFile writes the credential to path atomically, mode 0600.
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

// ReadCredentialFile reads a credential file. It refuses a file that other
// users may read or write, as ssh does with a private key.
func ReadCredentialFile(path string) (*Credential, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("read credential: %w", err)
	}
	if fi.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("read credential: %s is open to other users (mode %v); run chmod 600 %s", path, fi.Mode().Perm(), path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read credential: %w", err)
	}
	c, err := ParseCredential(data)
	if err != nil {
		return nil, fmt.Errorf("read credential %s: %w", path, err)
	}
	return c, nil
}

// TLSConfig returns a client TLS configuration presenting the device
// certificate and verifying the cloud against ServerTrust: a CA
// certificate is a root; a non-CA certificate is pinned (the cloud must
// present exactly it). TLS 1.3 only.
func (c *Credential) TLSConfig() *tls.Config {
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{{Certificate: [][]byte{c.Cert.Raw}, PrivateKey: c.Key, Leaf: c.Cert}},
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
