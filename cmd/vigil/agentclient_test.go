package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// selfSigned writes a self-signed certificate for localhost and its key.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "room-1.clinic.lan"},
		DNSNames: []string{"room-1.clinic.lan"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	return certFile, keyFile
}

// TestCLIReachesAnAgentBehindTLSAndBasicAuth: with http.web_config_file the
// agent serves HTTPS and asks for a password; the CLI, given the config,
// pins the agent's certificate and sends the credentials; without them it
// says what is missing; /metrics refuses an anonymous scrape.
func TestCLIReachesAnAgentBehindTLSAndBasicAuth(t *testing.T) {
	dir := t.TempDir()
	cert, key := selfSigned(t, dir)
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret-nurse-station"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	web := filepath.Join(dir, "web-config.yml")
	os.WriteFile(web, []byte(fmt.Sprintf("tls_server_config:\n  cert_file: %s\n  key_file: %s\nbasic_auth_users:\n  station: %s\n", cert, key, hash)), 0o600)
	pw := filepath.Join(dir, "password")
	os.WriteFile(pw, []byte("s3cret-nurse-station\n"), 0o600)
	port := startSimulator(t, "normal")
	yaml := fmt.Sprintf(`site: clinic-a
room: room-1
devices:
  - id: oximeter-1
    driver: masimo-ascii
    port: %s
mqtt:
  url: embedded
  listen: 127.0.0.1:0
http:
  listen: 127.0.0.1:0
  web_config_file: %s
store:
  path: %s
alarms:
  clock_check: false
`, port, web, filepath.Join(dir, "vigil.db"))
	p := startRunConfig(t, yaml)
	addr := waitHTTPAddr(t, p)
	addr = strings.TrimPrefix(strings.TrimPrefix(addr, "http://"), "https://")
	// The CLI reads http.listen from a config: write one with the real port.
	cfgPath := filepath.Join(dir, "cli.yaml")
	os.WriteFile(cfgPath, []byte(strings.Replace(yaml, "listen: 127.0.0.1:0\n  web_config_file", "listen: "+addr+"\n  web_config_file", 1)), 0o600)

	out, errOut, code := vigil(t, "alarms", "list", "--config", cfgPath, "--username", "station", "--password-file", pw)
	if code != 0 {
		t.Fatalf("alarms list over TLS with credentials: exit %d\n%s%s", code, out, errOut)
	}
	_, errOut, code = vigil(t, "alarms", "list", "--config", cfgPath)
	if code != 1 || !strings.Contains(errOut, "requires basic auth") {
		t.Errorf("without credentials: exit %d, %q", code, errOut)
	}
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	resp, err := client.Get("https://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("anonymous /metrics: HTTP %d, want 401", resp.StatusCode)
	}
	if strings.Contains(p.logs(), "s3cret-nurse-station") || strings.Contains(p.logs(), string(hash)) {
		t.Error("the password or its hash is in the agent's log")
	}
}
