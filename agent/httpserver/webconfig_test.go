package httpserver

import (
	"bufio"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

const (
	testUser     = "prometheus"
	testPassword = "correct horse battery staple"
)

// testPKI is a CA and a server certificate for 127.0.0.1 it signed, written
// to a directory.
type testPKI struct {
	dir               string
	certFile, keyFile string
	pool              *x509.CertPool // the CA
	otherCAPool       *x509.CertPool // a CA that signed nothing here
	keyPEM            string         // to check it never reaches a log
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	p := &testPKI{dir: t.TempDir()}
	ca, caKey, caPEM := makeCert(t, "Vigil test CA", nil, nil)
	writeFile(t, p.dir, "ca.crt", caPEM, 0o644)
	p.pool = x509.NewCertPool()
	p.pool.AddCert(ca)
	_, serverKey, serverPEM := makeCert(t, "127.0.0.1", ca, caKey)
	p.certFile = writeFile(t, p.dir, "server.crt", serverPEM, 0o644)
	keyDER, err := x509.MarshalECPrivateKey(serverKey)
	if err != nil {
		t.Fatal(err)
	}
	p.keyPEM = string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}))
	p.keyFile = writeFile(t, p.dir, "server.key", p.keyPEM, 0o600)

	other, _, _ := makeCert(t, "Another CA", nil, nil)
	p.otherCAPool = x509.NewCertPool()
	p.otherCAPool.AddCert(other)
	return p
}

// makeCert makes a self-signed CA (parent nil) or a server certificate for
// 127.0.0.1 signed by parent.
func makeCert(t *testing.T, cn string, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, *ecdsa.PrivateKey, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
	}
	signer, signerKey := tmpl, key
	if parent == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid = true, true
		tmpl.KeyUsage |= x509.KeyUsageCertSign
	} else {
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		signer, signerKey = parent, parentKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &key.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return cert, key, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func writeFile(t *testing.T, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	return path
}

// bcryptHash hashes at the minimum cost: the tests check who gets in, not
// how slow guessing is.
func bcryptHash(t *testing.T, password string) string {
	t.Helper()
	h, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	return string(h)
}

// httpsClient trusts only pool and opens a connection per request.
func httpsClient(pool *x509.CertPool) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			DisableKeepAlives: true,
			TLSClientConfig:   &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
		},
		Timeout: waitLimit,
		// A redirect must be seen, not followed.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func get(t *testing.T, c *http.Client, url, user, password string) response {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return response{resp.StatusCode, resp.Header, string(body)}
}

// ackHandler stands in for acklink's handler: it answers with the token.
var ackHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	fmt.Fprint(w, "confirm ", r.PathValue("token"))
})

func TestWebConfigTLSAndBasicAuth(t *testing.T) {
	pki := newTestPKI(t)
	hash := bcryptHash(t, testPassword)
	webConfig := writeFile(t, pki.dir, "web-config.yml", fmt.Sprintf(`tls_server_config:
  cert_file: server.crt
  key_file: server.key
http_server_config:
  headers:
    X-Frame-Options: deny
basic_auth_users:
  %s: %s
`, testUser, hash), 0o640)

	logs := &lockedBuffer{}
	s := newServer(t, Options{WebConfigFile: webConfig, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	s.HandlePublic("GET /ack/{token}", ackHandler)
	s.Handle("GET /api/v1/alarms", http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, "[]")
	}))
	start(t, s)

	if !s.TLS() || !strings.HasPrefix(s.URL(), "https://127.0.0.1:") {
		t.Fatalf("TLS %v, URL %q", s.TLS(), s.URL())
	}
	c := httpsClient(pki.pool)

	r := get(t, c, s.URL()+"/metrics", "", "")
	if r.status != http.StatusUnauthorized || strings.Contains(r.body, "vigil_test_value") {
		t.Fatalf("/metrics without credentials: %d\n%s", r.status, r.body)
	}
	if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Basic ") {
		t.Errorf("401 without a Basic challenge: %q", r.header.Get("WWW-Authenticate"))
	}
	r = get(t, c, s.URL()+"/metrics", testUser, testPassword)
	if r.status != http.StatusOK || !strings.Contains(r.body, "vigil_test_value 42\n") {
		t.Fatalf("/metrics with credentials: %d\n%s", r.status, r.body)
	}
	if got := r.header.Get("X-Frame-Options"); got != "deny" {
		t.Errorf("configured header X-Frame-Options = %q, want deny", got)
	}
	// Again: the cached outcome must give the same answer.
	if r := get(t, c, s.URL()+"/metrics", testUser, testPassword); r.status != http.StatusOK {
		t.Fatalf("second scrape with credentials: %d", r.status)
	}
	for _, tc := range []struct{ name, user, password string }{
		{"wrong password", testUser, testPassword + "!"},
		{"empty password", testUser, ""},
		{"unknown user", "grafana", testPassword},
		{"hash as password", testUser, hash},
	} {
		if r := get(t, c, s.URL()+"/metrics", tc.user, tc.password); r.status != http.StatusUnauthorized {
			t.Errorf("%s: %d, want 401", tc.name, r.status)
		}
	}
	// The API, the probes, the index and unknown paths are all behind auth.
	for _, path := range []string{"/api/v1/alarms", "/healthz", "/readyz", "/", "/no-such-page"} {
		if r := get(t, c, s.URL()+path, "", ""); r.status != http.StatusUnauthorized {
			t.Errorf("%s without credentials: %d, want 401", path, r.status)
		}
	}
	if r := get(t, c, s.URL()+"/api/v1/alarms", testUser, testPassword); r.status != http.StatusOK || r.body != "[]" {
		t.Errorf("/api/v1/alarms with credentials: %d %q", r.status, r.body)
	}

	// The acknowledge link opens without credentials, over TLS.
	r = get(t, c, s.URL()+"/ack/tok3n", "", "")
	if r.status != http.StatusOK || r.body != "confirm tok3n" {
		t.Fatalf("/ack/ without credentials: %d %q", r.status, r.body)
	}
	// A path that only looks public is cleaned by the mux into a redirect,
	// which is not the public route: no way round auth through /ack/.
	for _, path := range []string{"/ack/../metrics", "/ack/x/../../metrics", "/ack//../metrics"} {
		r := rawGet(t, pki.pool, s.Addr(), path)
		if strings.Contains(r, "vigil_test_value") || !strings.HasPrefix(r, "HTTP/1.1 401") {
			t.Errorf("GET %s without credentials:\n%s", path, r)
		}
	}

	// HTTPS only: plain HTTP on the same port gets nothing served.
	if r := get(t, &http.Client{Timeout: waitLimit, Transport: &http.Transport{DisableKeepAlives: true}},
		"http://"+s.Addr()+"/ack/tok3n", "", ""); r.status == http.StatusOK || strings.Contains(r.body, "confirm") {
		t.Errorf("plain HTTP to the TLS port: %d %q", r.status, r.body)
	}
	// A client that does not trust the CA is refused by its own TLS check.
	if _, err := httpsClient(pki.otherCAPool).Get(s.URL() + "/ack/tok3n"); err == nil {
		t.Error("a client trusting another CA connected")
	} else {
		var unknownAuthority x509.UnknownAuthorityError
		if !errors.As(err, &unknownAuthority) {
			t.Errorf("untrusted server certificate: %v, want x509.UnknownAuthorityError", err)
		}
	}

	checkNoSecrets(t, logs.String(), testPassword, hash, pki.keyPEM)
	if !strings.Contains(logs.String(), "tls=true") || !strings.Contains(logs.String(), "basic_auth=true") {
		t.Errorf("start not logged with tls and basic_auth:\n%s", logs)
	}
}

// rawGet sends path as written (Go's client would keep it too, but this
// makes the request line explicit) and returns the raw response head.
func rawGet(t *testing.T, pool *x509.CertPool, addr, path string) string {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(waitLimit)); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, addr)
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return fmt.Sprintf("%s %s\n%s", resp.Proto, resp.Status, body)
}

func checkNoSecrets(t *testing.T, text string, secrets ...string) {
	t.Helper()
	for _, s := range secrets {
		if s != "" && strings.Contains(text, s) {
			t.Errorf("a secret (%d bytes) appears in:\n%s", len(s), text)
		}
	}
	for _, marker := range []string{"PRIVATE KEY", "$2a$", "$2y$", "$2b$"} {
		if strings.Contains(text, marker) {
			t.Errorf("%q appears in:\n%s", marker, text)
		}
	}
}

// Without TLS the same auth applies (a warning says passwords go in clear);
// without users TLS alone works and nothing asks for credentials.
func TestWebConfigAuthWithoutTLSAndTLSWithoutAuth(t *testing.T) {
	dir := t.TempDir()
	authOnly := writeFile(t, dir, "auth.yml", "basic_auth_users:\n  "+testUser+": "+bcryptHash(t, testPassword)+"\n", 0o640)
	logs := &lockedBuffer{}
	s := newServer(t, Options{WebConfigFile: authOnly, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	s.HandlePublic("/ack/", ackHandler)
	start(t, s)
	if s.TLS() || !strings.HasPrefix(s.URL(), "http://") {
		t.Fatalf("TLS %v, URL %q", s.TLS(), s.URL())
	}
	if r := get(t, client, s.URL()+"/metrics", "", ""); r.status != http.StatusUnauthorized {
		t.Errorf("/metrics without credentials: %d", r.status)
	}
	if r := get(t, client, s.URL()+"/metrics", testUser, testPassword); r.status != http.StatusOK {
		t.Errorf("/metrics with credentials: %d", r.status)
	}
	// A prefix pattern ("/ack/", as the agent mounts acklink) is public too.
	if r := get(t, client, s.URL()+"/ack/abc", "", ""); r.status != http.StatusOK {
		t.Errorf("/ack/abc without credentials: %d %q", r.status, r.body)
	}
	if !strings.Contains(logs.String(), "basic auth without TLS") {
		t.Errorf("no warning about passwords in clear:\n%s", logs)
	}

	pki := newTestPKI(t)
	tlsOnly := writeFile(t, pki.dir, "tls.yml", "tls_server_config:\n  cert_file: "+pki.certFile+"\n  key_file: "+pki.keyFile+"\nhttp_server_config:\n  http2: false\n", 0o640)
	s2 := newServer(t, Options{WebConfigFile: tlsOnly})
	start(t, s2)
	c := httpsClient(pki.pool)
	c.Transport.(*http.Transport).ForceAttemptHTTP2 = true
	req, err := http.NewRequest(http.MethodGet, s2.URL()+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("/metrics over TLS without users: %d", resp.StatusCode)
	}
	if resp.ProtoMajor != 1 {
		t.Errorf("http2: false, but the response came over %s", resp.Proto)
	}
}

func TestWebConfigRateLimit(t *testing.T) {
	dir := t.TempDir()
	// One request, then one an hour: the second is refused, whatever the
	// speed of the machine.
	cfg := writeFile(t, dir, "web.yml", "rate_limit:\n  interval: 1h\n  burst: 1\n", 0o640)
	s := newServer(t, Options{WebConfigFile: cfg})
	start(t, s)
	if r := get(t, client, s.URL()+"/healthz", "", ""); r.status != http.StatusOK {
		t.Fatalf("first request: %d", r.status)
	}
	if r := get(t, client, s.URL()+"/healthz", "", ""); r.status != http.StatusTooManyRequests {
		t.Fatalf("second request: %d, want 429", r.status)
	}
}

// A web config that cannot be used fails New with a *WebConfigError that
// names the file but none of its secrets, and leaves no port bound.
func TestWebConfigErrors(t *testing.T) {
	pki := newTestPKI(t)
	hash := bcryptHash(t, testPassword)
	tlsBlock := "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n"
	cases := []struct {
		name, content string
		wantIs        error
		secrets       []string
	}{
		{name: "missing file", wantIs: fs.ErrNotExist},
		{name: "plain password", content: "basic_auth_users:\n  alice: " + testPassword + "\n", secrets: []string{testPassword}},
		{name: "unknown key", content: "basic_auth_user:\n  alice: " + hash + "\n", secrets: []string{hash}},
		{name: "hash in a number", content: "basic_auth_users:\n  alice: " + hash + "\nrate_limit:\n  burst: " + hash + "\n", secrets: []string{hash}},
		{name: "missing key file", content: "tls_server_config:\n  cert_file: server.crt\n  key_file: nowhere.key\n"},
		{name: "key without cert", content: "tls_server_config:\n  key_file: server.key\n"},
		{name: "key not matching cert", content: "tls_server_config:\n  cert_file: ca.crt\n  key_file: server.key\n"},
		{name: "client CA without policy", content: tlsBlock + "  client_ca_file: ca.crt\n"},
		{name: "header not allowed", content: tlsBlock + "http_server_config:\n  headers:\n    Server: vigil\n"},
		{name: "inline key malformed", content: "tls_server_config:\n  cert_file: server.crt\n  key: \"not-a-key-but-secret-text\"\n", secrets: []string{"not-a-key-but-secret-text"}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(pki.dir, fmt.Sprintf("bad-%d.yml", i))
			if tc.content != "" {
				writeFile(t, pki.dir, filepath.Base(path), tc.content, 0o640)
			}
			probe, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			addr := probe.Addr().String()
			probe.Close()

			s, err := New(Options{Listen: addr, Registry: testRegistry(), WebConfigFile: path})
			if err == nil {
				s.Close()
				t.Fatal("New accepted the web config")
			}
			t.Logf("New: %v", err)
			var wce *WebConfigError
			if !errors.As(err, &wce) || wce.Path != path {
				t.Fatalf("New: %v, want *WebConfigError for %s", err, path)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("New: %v, want it to wrap %v", err, tc.wantIs)
			}
			if !strings.Contains(err.Error(), path) {
				t.Errorf("error does not name the file: %v", err)
			}
			checkNoSecrets(t, err.Error(), tc.secrets...)
			if l, err := net.Listen("tcp", addr); err != nil {
				t.Errorf("port still bound after a failed New: %v", err)
			} else {
				l.Close()
			}
		})
	}
}

// The example shipped in configs/ loads once its certificate exists, and
// locks /metrics until its hash is replaced.
func TestShippedWebConfigExample(t *testing.T) {
	example, err := os.ReadFile(filepath.Join("..", "..", "configs", "web-config.yml"))
	if err != nil {
		t.Fatal(err)
	}
	pki := newTestPKI(t)
	if err := os.Mkdir(filepath.Join(pki.dir, "tls"), 0o750); err != nil {
		t.Fatal(err)
	}
	for from, to := range map[string]string{pki.certFile: "tls/vigil.crt", pki.keyFile: "tls/vigil.key"} {
		if err := os.Rename(from, filepath.Join(pki.dir, to)); err != nil {
			t.Fatal(err)
		}
	}
	path := writeFile(t, pki.dir, "web-config.yml", string(example), 0o640)
	s := newServer(t, Options{WebConfigFile: path})
	s.HandlePublic("/ack/", ackHandler)
	start(t, s)
	if !s.TLS() {
		t.Fatal("the example does not turn TLS on")
	}
	c := httpsClient(pki.pool)
	if r := get(t, c, s.URL()+"/metrics", "prometheus", "changeme"); r.status != http.StatusUnauthorized {
		t.Errorf("/metrics with a guessed password: %d, want 401", r.status)
	}
	if r := get(t, c, s.URL()+"/ack/t", "", ""); r.status != http.StatusOK {
		t.Errorf("/ack/t: %d", r.status)
	}
}
