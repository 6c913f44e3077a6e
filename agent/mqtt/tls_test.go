package mqtt

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/vigil-monitor/vigil/agent/mqtt/testbroker"
)

// writePEM writes one PEM block to dir/name and returns the path.
func writePEM(t *testing.T, dir, name, blockType string, der []byte) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: blockType, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// issue makes a certificate for 127.0.0.1 signed by ca, or a self-signed CA
// when ca is nil, and writes dir/name.crt and dir/name.key.
func issue(t *testing.T, dir, name string, ca *x509.Certificate, caKey *ecdsa.PrivateKey) (certFile, keyFile string, cert *x509.Certificate, key *ecdsa.PrivateKey) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	parent, parentKey := tmpl, key
	if ca == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	} else {
		parent, parentKey = ca, caKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err = x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile = writePEM(t, dir, name+".crt", "CERTIFICATE", der)
	keyFile = writePEM(t, dir, name+".key", "EC PRIVATE KEY", keyDER)
	return certFile, keyFile, cert, key
}

// The publisher reaches a TLS listener that requires a client certificate,
// trusting only the CA file it was given.
func TestPublisherTLS(t *testing.T) {
	dir := t.TempDir()
	caFile, _, ca, caKey := issue(t, dir, "ca", nil, nil)
	serverCert, serverKey, _, _ := issue(t, dir, "server", ca, caKey)
	clientCert, clientKey, _, _ := issue(t, dir, "client", ca, caKey)

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tlsPort := l.Addr().(*net.TCPAddr).Port
	l.Close()
	mosq := testbroker.StartMosquitto(t, testbroker.WithConfig(
		"listener "+strconv.Itoa(tlsPort)+" 127.0.0.1",
		"cafile "+caFile,
		"certfile "+serverCert,
		"keyfile "+serverKey,
		"require_certificate true",
	))
	sub := subscribe(t, mosq.URL(), readingsOnly, "") // plain listener
	log := newConnectionLog()
	p, err := New(Options{
		URL: "ssl://127.0.0.1:" + strconv.Itoa(tlsPort), Site: testSite, Room: testRoom,
		CAFile: caFile, CertFile: clientCert, KeyFile: clientKey,
		Logger: testLogger(t), OnConnectionChange: log.change, OnPublishError: log.publishError,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	consume(p, 1, 20)
	msgs := sub.waitFor(t, "readings over TLS", func(m []message) bool { return len(m) >= 20 })
	checkExactlyInOrder(t, msgs, 1, 20)
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	log.waitChanges(t, []bool{true, false})
}
