package certs

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestGenerateWritesFiles(t *testing.T) {
	p := New(t, "")
	for _, f := range []string{p.CAFile, p.CAKeyFile, p.ServerCertFile, p.ServerKeyFile, p.ClientCertFile, p.ClientKeyFile} {
		if filepath.Dir(f) != p.Dir {
			t.Errorf("%s not in %s", f, p.Dir)
		}
		if _, err := os.Stat(f); err != nil {
			t.Errorf("stat: %v", err)
		}
	}
	st, err := os.Stat(p.ServerKeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o600 {
		t.Errorf("key mode = %v, want 0600", st.Mode().Perm())
	}
	// The files load like any other PEM pair.
	if _, err := tls.LoadX509KeyPair(p.ServerCertFile, p.ServerKeyFile); err != nil {
		t.Fatal(err)
	}
	if _, err := tls.LoadX509KeyPair(p.ClientCertFile, p.ClientKeyFile); err != nil {
		t.Fatal(err)
	}
	ca, err := os.ReadFile(p.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		t.Fatal("CA file holds no certificate")
	}
	for _, host := range []string{"127.0.0.1", "::1", "localhost"} {
		if _, err := p.Server.X509.Verify(x509.VerifyOptions{Roots: pool, DNSName: host}); err != nil {
			t.Errorf("server cert for %s: %v", host, err)
		}
	}
	if _, err := p.Client.X509.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client cert: %v", err)
	}
	if _, err := p.Server.X509.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("server cert must not be usable for client auth")
	}
}

func TestIssue(t *testing.T) {
	p := New(t, t.TempDir())
	c, err := p.Issue("kube-apiserver", []string{"kubernetes.default.svc"}, []net.IP{net.ParseIP("10.0.0.1")}, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.X509.Verify(x509.VerifyOptions{Roots: p.CAPool, DNSName: "kubernetes.default.svc"}); err != nil {
		t.Error(err)
	}
	if _, err := c.X509.Verify(x509.VerifyOptions{Roots: p.CAPool, DNSName: "10.0.0.1"}); err != nil {
		t.Error(err)
	}
	// The same name twice gets distinct files.
	c2, err := p.Issue("kube-apiserver", nil, []net.IP{net.ParseIP("10.0.0.1")}, false)
	if err != nil {
		t.Fatal(err)
	}
	if c2.CertFile == c.CertFile {
		t.Errorf("second certificate overwrote %s", c.CertFile)
	}
	admin, err := p.IssueRequest(Request{CommonName: "admin", Organizations: []string{"system:masters"}, Client: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := admin.X509.Subject.Organization; len(got) != 1 || got[0] != "system:masters" {
		t.Errorf("organizations = %v", got)
	}
	if _, err := p.IssueRequest(Request{}); err == nil {
		t.Error("empty request accepted")
	}
}

func TestMutualTLSHandshake(t *testing.T) {
	p := New(t, "")
	ln, err := tls.Listen("tcp", "127.0.0.1:0", p.ServerTLSConfig(true))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(5 * time.Second))
				if err := c.(*tls.Conn).Handshake(); err != nil {
					return
				}
				_, _ = c.Write([]byte("ok"))
			}()
		}
	}()

	dial := func(cfg *tls.Config) error {
		d := &net.Dialer{Timeout: 5 * time.Second}
		c, err := tls.DialWithDialer(d, "tcp", ln.Addr().String(), cfg)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		// With TLS 1.3 the server verifies the client certificate after the
		// client finished its handshake, so read to see the outcome.
		b, err := io.ReadAll(c)
		if err != nil {
			return err
		}
		if string(b) != "ok" {
			return io.ErrUnexpectedEOF
		}
		return nil
	}
	if err := dial(p.ClientTLSConfig(true)); err != nil {
		t.Fatalf("mTLS with client cert: %v", err)
	}
	if err := dial(p.ClientTLSConfig(false)); err == nil {
		t.Fatal("handshake without client certificate succeeded")
	}
	cfg := p.ClientTLSConfig(true)
	cfg.ServerName = "example.com"
	if err := dial(cfg); err == nil {
		t.Fatal("server certificate accepted for a name it does not cover")
	}
}
