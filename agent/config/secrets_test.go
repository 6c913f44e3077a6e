package config

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	yaml "go.yaml.in/yaml/v3"
)

const secretPassword = "pw-Zq8r!never-print-me"

// writeConfig writes a config and the given extra files into a fresh
// directory and returns the config's path.
func writeConfig(t *testing.T, mqtt string, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, "vigil.yaml")
	if err := os.WriteFile(path, []byte(minimal+"mqtt:\n"+mqtt), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func loadProblems(t *testing.T, path string) Problems {
	t.Helper()
	_, err := Load(path)
	var ps Problems
	if !errors.As(err, &ps) {
		t.Fatalf("Load = %v, want Problems", err)
	}
	return ps
}

func TestPasswordReadAndTrimmed(t *testing.T) {
	for _, c := range []struct{ content, want string }{
		{secretPassword + "\n", secretPassword},
		{secretPassword + "\r\n", secretPassword},
		{secretPassword, secretPassword},
		{"  spaces count  \n\n", "  spaces count  "},
	} {
		path := writeConfig(t, "  username: vigil\n  password_file: mqtt.pass\n", map[string]string{"mqtt.pass": c.content})
		cfg, err := Load(path)
		if err != nil {
			t.Fatalf("Load: %v", err)
		}
		if cfg.MQTT.Password != c.want {
			t.Errorf("password from %q = %q, want %q", c.content, cfg.MQTT.Password, c.want)
		}
		// The relative path is taken from the config's directory and kept
		// resolved, so later readers open the same file.
		if want := filepath.Join(filepath.Dir(path), "mqtt.pass"); cfg.MQTT.PasswordFile != want {
			t.Errorf("password_file = %q, want %q", cfg.MQTT.PasswordFile, want)
		}
	}
}

func TestPasswordFileProblems(t *testing.T) {
	for _, c := range []struct {
		name, mqtt, content string
		line                int
		msg                 string
	}{
		{"missing", "  username: u\n  password_file: nope.pass\n", "", 9, "nope.pass: file does not exist"},
		{"empty", "  username: u\n  password_file: mqtt.pass\n", "\n", 9, "mqtt.pass is empty"},
		{"two lines", "  username: u\n  password_file: mqtt.pass\n", "Zq8r\nsecond\n", 9, "has more than one line"},
		{"too large", "  username: u\n  password_file: mqtt.pass\n", strings.Repeat("x", maxPasswordSize+1), 9, "is larger than 4096 bytes"},
		{"no username", "  password_file: mqtt.pass\n", "Zq8r\n", 8, "needs username as well"},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := writeConfig(t, c.mqtt, map[string]string{"mqtt.pass": c.content})
			ps := loadProblems(t, path)
			if len(ps) != 1 {
				t.Fatalf("want 1 problem, got %v", ps)
			}
			p := ps[0]
			if p.Key != "mqtt.password_file" || p.Line != c.line || !strings.Contains(p.Msg, c.msg) || p.File != path {
				t.Errorf("got %v; want line %d mqtt.password_file containing %q", p, c.line, c.msg)
			}
			if strings.Contains(ps.Error(), "Zq8r") {
				t.Errorf("message shows the file's content: %v", ps)
			}
		})
	}
}

// A password file that cannot be read (here a directory, which fails for
// root too, unlike a chmod 000 file) is a problem at its key.
func TestPasswordFileUnreadable(t *testing.T) {
	path := writeConfig(t, "  username: u\n  password_file: mqtt.pass\n", nil)
	if err := os.Mkdir(filepath.Join(filepath.Dir(path), "mqtt.pass"), 0o700); err != nil {
		t.Fatal(err)
	}
	ps := loadProblems(t, path)
	if len(ps) != 1 || ps[0].Key != "mqtt.password_file" || ps[0].Line != 9 || !strings.Contains(ps[0].Msg, "not a regular file") {
		t.Errorf("got %v", ps)
	}
}

// Every way a config might end up printed or logged leaves the password out.
func TestPasswordNeverPrinted(t *testing.T) {
	path := writeConfig(t, "  username: vigil\n  password_file: mqtt.pass\n", map[string]string{"mqtt.pass": secretPassword + "\n"})
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.MQTT.Password != secretPassword {
		t.Fatalf("password not read")
	}
	var outputs []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s"} {
		outputs = append(outputs, fmt.Sprintf(verb, cfg), fmt.Sprintf(verb, *cfg), fmt.Sprintf(verb, cfg.MQTT), fmt.Sprintf(verb, &cfg.MQTT))
	}
	var logs bytes.Buffer
	slog.New(slog.NewTextHandler(&logs, nil)).Info("config", "mqtt", cfg.MQTT, "cfg", cfg, "cfgv", *cfg)
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("config", "mqtt", cfg.MQTT, "cfg", cfg, "cfgv", *cfg)
	outputs = append(outputs, logs.String())
	js, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ym, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	outputs = append(outputs, string(js), string(ym))
	for _, out := range outputs {
		if strings.Contains(out, secretPassword) {
			t.Errorf("password printed in:\n%s", out)
		}
	}
	if !strings.Contains(fmt.Sprint(cfg.MQTT), "password_set:true") || !strings.Contains(logs.String(), "mqtt.password_set=true") {
		t.Errorf("the output should say a password is set:\n%v\n%s", cfg.MQTT, logs.String())
	}
}

// pemFiles holds a CA certificate, a client certificate it signed, the
// client's key, and an unrelated key.
type pemFiles struct{ ca, cert, key, otherKey string }

func makePEM(t *testing.T) pemFiles {
	t.Helper()
	newKey := func() (*ecdsa.PrivateKey, string) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		der, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return k, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
	}
	caKey, _ := newKey()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test ca"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	clientKey, clientKeyPEM := newKey()
	clientTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "vigil"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	clientDER, err := x509.CreateCertificate(rand.Reader, clientTmpl, caTmpl, &clientKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	_, otherKeyPEM := newKey()
	return pemFiles{
		ca:       string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})),
		cert:     string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: clientDER})),
		key:      clientKeyPEM,
		otherKey: otherKeyPEM,
	}
}

func TestTLSFiles(t *testing.T) {
	p := makePEM(t)
	const tlsMQTT = "  url: mqtts://broker.example:8883\n  ca_file: ca.pem\n  cert_file: client.pem\n  key_file: client.key\n"

	path := writeConfig(t, tlsMQTT, map[string]string{"ca.pem": p.ca, "client.pem": p.cert, "client.key": p.key})
	cfg, err := Load(path)
	if err != nil {
		t.Fatalf("valid TLS config: %v", err)
	}
	dir := filepath.Dir(path)
	if cfg.MQTT.CAFile != filepath.Join(dir, "ca.pem") || cfg.MQTT.CertFile != filepath.Join(dir, "client.pem") || cfg.MQTT.KeyFile != filepath.Join(dir, "client.key") {
		t.Errorf("TLS paths not resolved against the config dir: %v", cfg.MQTT)
	}

	for _, c := range []struct {
		name  string
		mqtt  string
		files map[string]string
		line  int
		key   string
		msg   string
	}{
		{"ca not PEM", tlsMQTT, map[string]string{"ca.pem": "not a certificate\n", "client.pem": p.cert, "client.key": p.key}, 9, "mqtt.ca_file", "ca.pem holds no PEM certificate"},
		{"key does not match", tlsMQTT, map[string]string{"ca.pem": p.ca, "client.pem": p.cert, "client.key": p.otherKey}, 10, "mqtt.cert_file", "not a usable pair"},
		{"missing key file", tlsMQTT, map[string]string{"ca.pem": p.ca, "client.pem": p.cert}, 11, "mqtt.key_file", "client.key: file does not exist"},
		{"cert without key", "  url: ssl://b:8883\n  cert_file: client.pem\n", map[string]string{"client.pem": p.cert}, 9, "mqtt.cert_file", "needs key_file as well"},
		{"key without cert", "  url: tls://b:8883\n  key_file: client.key\n", map[string]string{"client.key": p.key}, 9, "mqtt.key_file", "needs cert_file as well"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ps := loadProblems(t, writeConfig(t, c.mqtt, c.files))
			if len(ps) != 1 || ps[0].Line != c.line || ps[0].Key != c.key || !strings.Contains(ps[0].Msg, c.msg) {
				t.Errorf("got %v\nwant line %d key %s containing %q", ps, c.line, c.key, c.msg)
			}
			if strings.Contains(ps.Error(), "PRIVATE KEY") {
				t.Errorf("message shows key material: %v", ps)
			}
		})
	}
}
