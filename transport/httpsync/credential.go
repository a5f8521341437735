package httpsync

import (
	"bytes"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
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

// pemCloud is the PEM block type of a credential file's chartsync part,
// whose body is cloudBlock as JSON.
const pemCloud = "CHARTSYNC CLOUD"

type cloudBlock struct {
	URL     string `json:"url,omitempty"`
	Replica string `json:"replica,omitempty"`
}

// MarshalPEM encodes the credential as a PEM file that curl and openssl
// read too (curl --cert FILE): the PKCS #8 key, the device certificate,
// each server-trust certificate, and last a CHARTSYNC CLOUD block holding
// the cloud's URL and replica ID as JSON.
func (c *Credential) MarshalPEM() ([]byte, error) {
	if c.Key == nil || c.Cert == nil {
		return nil, errors.New("credential has no key or certificate")
	}
	var buf bytes.Buffer
	fmt.Fprintf(&buf, "# chartsync credential of device %s, clinic %s, for the cloud at %s.\n", c.Device.Name, c.Device.Clinic, c.CloudURL)
	fmt.Fprintf(&buf, "# Anyone holding this file can sync as that device: keep it secret (mode 0600).\n")
	key, err := marshalKeyPEM(c.Key)
	if err != nil {
		return nil, err
	}
	buf.Write(key)
	for _, cert := range append([]*x509.Certificate{c.Cert}, c.ServerTrust...) {
		if err := pem.Encode(&buf, &pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}); err != nil {
			return nil, err
		}
	}
	cloud, err := json.Marshal(cloudBlock{URL: c.CloudURL, Replica: c.CloudReplica})
	if err != nil {
		return nil, err
	}
	if err := pem.Encode(&buf, &pem.Block{Type: pemCloud, Bytes: cloud}); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// ParseCredential reads a credential written by MarshalPEM: the device
// certificate is the one whose key the file holds; every other
// certificate is server trust. It checks that the certificate names a
// replica and a clinic; it does not check expiry (the cloud does).
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
		case "PRIVATE KEY":
			if c.Key != nil {
				return nil, errors.New("credential holds more than one private key")
			}
			k, err := parseKeyPEM(pem.EncodeToMemory(b))
			if err != nil {
				return nil, fmt.Errorf("credential key: %w", err)
			}
			c.Key = k
		case "CERTIFICATE":
			cert, err := x509.ParseCertificate(b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("credential certificate: %w", err)
			}
			certs = append(certs, cert)
		default:
			return nil, fmt.Errorf("credential: unexpected PEM block %q", b.Type)
		}
	}
	switch {
	case !sawHeader:
		return nil, errors.New("not a chartsync device credential (no " + pemCloud + " block)")
	case c.Key == nil:
		return nil, errors.New("credential has no private key")
	}
	for _, cert := range certs {
		if c.Cert == nil && c.Key.Public().(ed25519.PublicKey).Equal(cert.PublicKey) {
			c.Cert = cert
		} else {
			c.ServerTrust = append(c.ServerTrust, cert)
		}
	}
	if c.Cert == nil {
		return nil, errors.New("credential has no certificate for its key")
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
