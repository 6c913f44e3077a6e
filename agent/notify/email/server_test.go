package email

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	gosmtp "github.com/emersion/go-smtp"

	"github.com/vigil-monitor/vigil/agent/notify"
)

// This file runs a real SMTP server in the test process
// (github.com/emersion/go-smtp) and records what each connection did.

// serverOptions shape the test server's behaviour.
type serverOptions struct {
	// startTLS offers STARTTLS on a plain listener; implicitTLS speaks TLS
	// from the first byte. Neither: plain SMTP, no STARTTLS.
	startTLS    bool
	implicitTLS bool
	// username and password, when set, are the only credentials AUTH
	// PLAIN accepts, and MAIL needs them.
	username, password string
	// authReply replaces the answer to a wrong login (default 535).
	authReply *gosmtp.SMTPError
	// mailReply, rcptReplies (by address) and dataReply refuse those steps.
	mailReply   *gosmtp.SMTPError
	rcptReplies map[string]*gosmtp.SMTPError
	dataReply   *gosmtp.SMTPError
	// hangInData makes Data block until the test ends, without answering.
	hangInData bool
}

// transcript is what one connection did, in order.
type transcript struct {
	Hello    string
	Steps    []string // "auth", "mail", "rcpt", "data"
	AuthTLS  bool     // the connection was TLS when AUTH came
	AuthUser string
	AuthPass string
	From     string
	Rcpts    []string
	DataTLS  bool
	Data     []byte
}

// testServer is a go-smtp server on a loopback port.
type testServer struct {
	addr   string
	caFile string // PEM of the certificate the server presents
	opts   serverOptions

	mu          sync.Mutex
	transcripts []*transcript
	// byConn finds a connection's transcript: go-smtp starts a new
	// session after STARTTLS, on the same connection.
	byConn  map[*gosmtp.Conn]*transcript
	release chan struct{}
}

func startServer(t *testing.T, opts serverOptions) *testServer {
	t.Helper()
	cert, caFile := testCertificate(t)
	ts := &testServer{opts: opts, caFile: caFile, release: make(chan struct{}), byConn: map[*gosmtp.Conn]*transcript{}}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tlsConfig := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	s := gosmtp.NewServer(gosmtp.BackendFunc(ts.newSession))
	s.Domain = "mx.test.example"
	s.ReadTimeout = 10 * time.Second
	s.WriteTimeout = 10 * time.Second
	s.ErrorLog = log.New(io.Discard, "", 0)
	if opts.startTLS {
		s.TLSConfig = tlsConfig
	}
	if opts.implicitTLS {
		ln = tls.NewListener(ln, tlsConfig)
	}
	ts.addr = ln.Addr().String()
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	t.Cleanup(func() {
		close(ts.release)
		s.Close()
		<-served
	})
	return ts
}

// sessions returns a copy of every connection's transcript so far.
func (ts *testServer) sessions() []transcript {
	ts.mu.Lock()
	defer ts.mu.Unlock()
	out := make([]transcript, len(ts.transcripts))
	for i, tr := range ts.transcripts {
		out[i] = *tr
		out[i].Steps = append([]string(nil), tr.Steps...)
		out[i].Rcpts = append([]string(nil), tr.Rcpts...)
	}
	return out
}

func (ts *testServer) newSession(c *gosmtp.Conn) (gosmtp.Session, error) {
	ts.mu.Lock()
	tr, ok := ts.byConn[c]
	if !ok {
		tr = &transcript{}
		ts.byConn[c] = tr
		ts.transcripts = append(ts.transcripts, tr)
	}
	tr.Hello = c.Hostname()
	ts.mu.Unlock()
	return &testSession{server: ts, conn: c, tr: tr}, nil
}

// testSession implements gosmtp.Session and gosmtp.AuthSession.
type testSession struct {
	server *testServer
	conn   *gosmtp.Conn
	tr     *transcript
	authed bool
}

func (s *testSession) record(f func(tr *transcript)) {
	s.server.mu.Lock()
	defer s.server.mu.Unlock()
	f(s.tr)
}

func (s *testSession) AuthMechanisms() []string {
	if s.server.opts.username == "" {
		return nil
	}
	return []string{sasl.Plain}
}

func (s *testSession) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, username, password string) error {
		_, isTLS := s.conn.TLSConnectionState()
		s.record(func(tr *transcript) {
			tr.Steps = append(tr.Steps, "auth")
			tr.AuthTLS, tr.AuthUser, tr.AuthPass = isTLS, username, password
		})
		if identity != "" || username != s.server.opts.username || password != s.server.opts.password {
			if s.server.opts.authReply != nil {
				return s.server.opts.authReply
			}
			return gosmtp.ErrAuthFailed
		}
		s.authed = true
		return nil
	}), nil
}

func (s *testSession) Mail(from string, _ *gosmtp.MailOptions) error {
	s.record(func(tr *transcript) { tr.Steps = append(tr.Steps, "mail"); tr.From = from })
	if s.server.opts.username != "" && !s.authed {
		return gosmtp.ErrAuthRequired
	}
	if r := s.server.opts.mailReply; r != nil {
		return r
	}
	return nil
}

func (s *testSession) Rcpt(to string, _ *gosmtp.RcptOptions) error {
	if r := s.server.opts.rcptReplies[to]; r != nil {
		return r
	}
	s.record(func(tr *transcript) { tr.Steps = append(tr.Steps, "rcpt"); tr.Rcpts = append(tr.Rcpts, to) })
	return nil
}

func (s *testSession) Data(r io.Reader) error {
	if s.server.opts.hangInData {
		<-s.server.release
		return errors.New("test over")
	}
	data, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	_, isTLS := s.conn.TLSConnectionState()
	s.record(func(tr *transcript) { tr.Steps = append(tr.Steps, "data"); tr.Data = data; tr.DataTLS = isTLS })
	if r := s.server.opts.dataReply; r != nil {
		return r
	}
	return nil
}

func (s *testSession) Reset()        {}
func (s *testSession) Logout() error { return nil }

// testCertificate makes a self-signed certificate for 127.0.0.1 and
// localhost, and writes it as PEM to a file for Config.CAFile.
func testCertificate(t *testing.T) (tls.Certificate, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "vigil test smtp"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, caFile
}

// writeSecret writes content to a file in a temporary directory.
func writeSecret(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "password")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// hangingListener accepts connections and never says a word, like a
// server that is stuck or a firewall that swallows the session.
func hangingListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// secretFree fails the test when res.Err holds a secret.
func secretFree(t *testing.T, res notify.Result, secrets ...string) {
	t.Helper()
	if res.Err == nil {
		return
	}
	for _, s := range secrets {
		if s != "" && strings.Contains(res.Err.Error(), s) {
			t.Fatalf("error leaks a secret: %v", res.Err)
		}
	}
}
