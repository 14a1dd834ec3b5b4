// Package certs generates a throw-away PKI for tests: one ECDSA CA and any
// number of leaf certificates it signs, written as PEM files into a directory
// so that they can be handed to real binaries (collectors, kube-apiserver,
// etcd) as well as to in-process TLS configurations.
//
// Everything here is for tests only: keys are generated on the fly and never
// protected by a passphrase.
package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Validity is how long generated certificates are valid. NotBefore is set one
// hour in the past to tolerate small clock differences between processes.
const Validity = 7 * 24 * time.Hour

// Cert is a leaf certificate and its private key, in memory and on disk.
type Cert struct {
	// CommonName is the subject common name of the certificate.
	CommonName string
	// CertFile and KeyFile are the paths of the PEM encoded certificate and
	// PKCS#8 private key.
	CertFile, KeyFile string
	// CertPEM and KeyPEM are the contents of CertFile and KeyFile.
	CertPEM, KeyPEM []byte
	// X509 is the parsed certificate.
	X509 *x509.Certificate
	// TLS is the certificate ready for tls.Config.Certificates.
	TLS tls.Certificate
}

// PKI is a test certificate authority with a default server and client
// certificate.
type PKI struct {
	// Dir is the directory all PEM files are written to.
	Dir string

	// CAFile is the path of the PEM encoded CA certificate; CAKeyFile the
	// path of its private key (some binaries, e.g. kube-controller-manager,
	// need to sign certificates themselves).
	CAFile, CAKeyFile string
	// CACertPEM is the content of CAFile.
	CACertPEM []byte
	// CACert is the parsed CA certificate; CAPool a pool holding only it.
	CACert *x509.Certificate
	CAPool *x509.CertPool

	// Server is valid for 127.0.0.1, ::1 and localhost (server auth).
	Server *Cert
	// ServerCertFile and ServerKeyFile are Server.CertFile and Server.KeyFile.
	ServerCertFile, ServerKeyFile string

	// Client is a client-auth certificate with common name "test-client".
	Client *Cert
	// ClientCertFile and ClientKeyFile are Client.CertFile and Client.KeyFile.
	ClientCertFile, ClientKeyFile string

	caKey *ecdsa.PrivateKey

	mu    sync.Mutex
	names map[string]int // file base names already used
}

// Request describes a leaf certificate to issue.
type Request struct {
	// CommonName is the subject CN (for client certificates the user name
	// in Kubernetes).
	CommonName string
	// Organizations is the subject O (the groups in Kubernetes, e.g.
	// "system:masters").
	Organizations []string
	// DNSNames and IPs are the subject alternative names.
	DNSNames []string
	IPs      []net.IP
	// Server and Client select the extended key usages; both may be set.
	// If neither is set, Server is assumed.
	Server, Client bool
	// Name is the base name of the files written ("<Name>.crt", "<Name>.key").
	// Defaults to a sanitized CommonName; a numeric suffix is added when the
	// name is already taken.
	Name string
}

// New generates a PKI into dir (t.TempDir() when dir is empty) and fails the
// test on error.
func New(t testing.TB, dir string) *PKI {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	p, err := Generate(dir)
	if err != nil {
		t.Fatalf("certs: %v", err)
	}
	return p
}

// Generate creates dir if needed and writes a new CA (ca.crt, ca.key), a
// server certificate (server.crt, server.key) for 127.0.0.1, ::1 and
// localhost, and a client certificate (client.crt, client.key) into it.
func Generate(dir string) (*PKI, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "kube-otel-bridge test CA", Organization: []string{"kube-otel-bridge tests"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(Validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	caCert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	p := &PKI{
		Dir:       dir,
		CAFile:    filepath.Join(dir, "ca.crt"),
		CAKeyFile: filepath.Join(dir, "ca.key"),
		CACertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		CACert:    caCert,
		CAPool:    x509.NewCertPool(),
		caKey:     key,
		names:     map[string]int{"ca": 1},
	}
	p.CAPool.AddCert(caCert)
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(p.CAFile, p.CACertPEM, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(p.CAKeyFile, keyPEM, 0o600); err != nil {
		return nil, err
	}

	p.Server, err = p.IssueRequest(Request{
		CommonName: "localhost",
		DNSNames:   []string{"localhost"},
		IPs:        []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		Server:     true,
		Name:       "server",
	})
	if err != nil {
		return nil, err
	}
	p.ServerCertFile, p.ServerKeyFile = p.Server.CertFile, p.Server.KeyFile

	p.Client, err = p.IssueRequest(Request{CommonName: "test-client", Client: true, Name: "client"})
	if err != nil {
		return nil, err
	}
	p.ClientCertFile, p.ClientKeyFile = p.Client.CertFile, p.Client.KeyFile
	return p, nil
}

// Issue signs a new certificate for commonName with the given subject
// alternative names, for client authentication if client is true and for
// server authentication otherwise, and writes it into the PKI directory.
func (p *PKI) Issue(commonName string, dnsNames []string, ips []net.IP, client bool) (*Cert, error) {
	return p.IssueRequest(Request{
		CommonName: commonName,
		DNSNames:   dnsNames,
		IPs:        ips,
		Server:     !client,
		Client:     client,
	})
}

// IssueRequest signs a certificate described by req and writes it into the
// PKI directory.
func (p *PKI) IssueRequest(req Request) (*Cert, error) {
	if req.CommonName == "" && len(req.DNSNames) == 0 && len(req.IPs) == 0 {
		return nil, errors.New("certs: request needs a common name or a subject alternative name")
	}
	if !req.Server && !req.Client {
		req.Server = true
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	var usages []x509.ExtKeyUsage
	if req.Server {
		usages = append(usages, x509.ExtKeyUsageServerAuth)
	}
	if req.Client {
		usages = append(usages, x509.ExtKeyUsageClientAuth)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: req.CommonName, Organization: req.Organizations},
		DNSNames:              req.DNSNames,
		IPAddresses:           req.IPs,
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(Validity),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           usages,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.CACert, &key.PublicKey, p.caKey)
	if err != nil {
		return nil, err
	}
	parsed, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	c := &Cert{
		CommonName: req.CommonName,
		CertPEM:    pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		X509:       parsed,
	}
	if c.KeyPEM, err = encodeKey(key); err != nil {
		return nil, err
	}
	if c.TLS, err = tls.X509KeyPair(c.CertPEM, c.KeyPEM); err != nil {
		return nil, err
	}
	base := p.fileBase(req)
	c.CertFile = filepath.Join(p.Dir, base+".crt")
	c.KeyFile = filepath.Join(p.Dir, base+".key")
	if err := os.WriteFile(c.CertFile, c.CertPEM, 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(c.KeyFile, c.KeyPEM, 0o600); err != nil {
		return nil, err
	}
	return c, nil
}

// ServerTLSConfig returns a server configuration presenting the default
// server certificate. With requireClientCert, clients must present a
// certificate signed by the CA (mutual TLS).
func (p *PKI) ServerTLSConfig(requireClientCert bool) *tls.Config {
	return p.ServerTLSConfigFor(p.Server, requireClientCert)
}

// ServerTLSConfigFor is ServerTLSConfig for another server certificate.
func (p *PKI) ServerTLSConfigFor(c *Cert, requireClientCert bool) *tls.Config {
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{c.TLS},
		ClientCAs:    p.CAPool,
		ClientAuth:   tls.VerifyClientCertIfGiven,
	}
	if requireClientCert {
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return cfg
}

// ClientTLSConfig returns a client configuration trusting the CA and, with
// withClientCert, presenting the default client certificate.
func (p *PKI) ClientTLSConfig(withClientCert bool) *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: p.CAPool}
	if withClientCert {
		cfg.Certificates = []tls.Certificate{p.Client.TLS}
	}
	return cfg
}

func (p *PKI) fileBase(req Request) string {
	base := req.Name
	if base == "" {
		base = req.CommonName
		if base == "" && len(req.DNSNames) > 0 {
			base = req.DNSNames[0]
		}
		if base == "" {
			base = "ip-" + req.IPs[0].String()
		}
	}
	base = sanitize(base)
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.names[base]
	p.names[base] = n + 1
	if n > 0 {
		base = fmt.Sprintf("%s-%d", base, n+1)
	}
	return base
}

func sanitize(s string) string {
	s = strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, s)
	if s == "" || s == "." || s == ".." {
		s = "cert"
	}
	return s
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

var serialLimit = new(big.Int).Lsh(big.NewInt(1), 127)

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, serialLimit)
	if err != nil {
		panic(err)
	}
	return n.Add(n, big.NewInt(1))
}
