package doctor

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/vigil-monitor/vigil/agent/config"
	"github.com/vigil-monitor/vigil/agent/mqtt/testbroker"
	"github.com/vigil-monitor/vigil/agent/notify/email"
	"github.com/vigil-monitor/vigil/agent/notify/webhook"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func brokerConfig(url string) *config.Config {
	return &config.Config{Site: "clinic-a", Room: "room-1", MQTT: config.MQTT{
		URL: url, Listen: config.DefaultMQTTListen, ClientID: "vigil-clinic-a-room-1", TopicPrefix: "vigil",
	}}
}

func brokerResult(t *testing.T, cfg *config.Config) Result {
	t.Helper()
	checks := BrokerChecks(cfg, Options{})
	if len(checks) != 1 {
		t.Fatalf("%d broker checks", len(checks))
	}
	return run(t, checks[0])
}

// passwordFile writes a Mosquitto password file with one user.
func passwordFile(t *testing.T, user, password string) string {
	t.Helper()
	bin, err := exec.LookPath("mosquitto_passwd")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("mosquitto_passwd not found (required when CI is set)")
		}
		t.Skip("mosquitto_passwd not found")
	}
	file := filepath.Join(t.TempDir(), "passwd")
	if out, err := exec.Command(bin, "-c", "-b", file, user, password).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd: %v\n%s", err, out)
	}
	return file
}

func TestBrokerReachableWithCredentials(t *testing.T) {
	b := testbroker.StartMosquitto(t, testbroker.WithConfig("allow_anonymous false", "password_file "+passwordFile(t, "room-1", "right-password")))
	cfg := brokerConfig(b.URL())
	cfg.MQTT.Username, cfg.MQTT.Password = "room-1", "right-password"
	expect(t, brokerResult(t, cfg), OK, b.Addr()+" reachable over TCP", "CONNECT accepted as room-1")

	cfg.MQTT.Password = "wrong-password"
	r := brokerResult(t, cfg)
	expect(t, r, Fail, "refused user room-1: not authorised")
	if !strings.Contains(r.Fix, "mqtt.password_file") || !strings.Contains(r.Fix, "mosquitto_passwd") {
		t.Errorf("fix: %q", r.Fix)
	}
	if strings.Contains(r.Finding+r.Fix, "wrong-password") {
		t.Error("the password is shown")
	}

	cfg.MQTT.Username, cfg.MQTT.Password = "", ""
	r = brokerResult(t, cfg)
	expect(t, r, Fail, "not authorised (no user name configured)")
	if !strings.Contains(r.Fix, "mqtt.username") {
		t.Errorf("fix: %q", r.Fix)
	}
}

// TestBrokerCheckLeavesTheAgentConnected: the check's CONNECT uses its own
// client id, so the agent's connection (same id as configured) stays.
func TestBrokerCheckLeavesTheAgentConnected(t *testing.T) {
	b := testbroker.StartMosquitto(t)
	cfg := brokerConfig(b.URL())
	lost := make(chan struct{}, 1)
	agent := paho.NewClient(paho.NewClientOptions().AddBroker(b.URL()).SetClientID(cfg.MQTT.ClientID).
		SetAutoReconnect(false).SetConnectionLostHandler(func(paho.Client, error) { lost <- struct{}{} }))
	if tok := agent.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer agent.Disconnect(100)
	expect(t, brokerResult(t, cfg), OK, "CONNECT accepted anonymously")
	select {
	case <-lost:
		t.Fatal("the check took over the agent's connection")
	case <-time.After(500 * time.Millisecond):
	}
	if !agent.IsConnectionOpen() {
		t.Fatal("the agent's connection is closed")
	}
}

func TestBrokerDown(t *testing.T) {
	addr := freeAddr(t)
	r := brokerResult(t, brokerConfig("tcp://"+addr))
	expect(t, r, Fail, "nothing listens on "+addr+" (connection refused)")
	if !strings.Contains(r.Fix, "systemctl start mosquitto") {
		t.Errorf("fix: %q", r.Fix)
	}
}

func TestBrokerURLsForFailover(t *testing.T) {
	b := testbroker.StartMosquitto(t)
	down := freeAddr(t)
	cfg := brokerConfig(b.URL())
	cfg.MQTT.FailoverURLs = []string{"tcp://" + down}
	checks := BrokerChecks(cfg, Options{})
	results := RunChecks(context.Background(), checks, 10*time.Second)
	if len(results) != 2 {
		t.Fatalf("%d results for two brokers", len(results))
	}
	expect(t, results[0], OK, b.Addr())
	expect(t, results[1], Fail, "connection refused")
	if results[1].Name != "broker tcp://"+down {
		t.Errorf("name %q", results[1].Name)
	}
}

// testPKI is a CA and a server certificate for localhost only.
type testPKI struct {
	caFile, certFile, keyFile string
}

func newTestPKI(t *testing.T) testPKI {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Vigil test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	p := testPKI{caFile: filepath.Join(dir, "ca.pem"), certFile: filepath.Join(dir, "server.pem"), keyFile: filepath.Join(dir, "server.key")}
	writeFile(t, p.caFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})), 0o644)
	writeFile(t, p.certFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})), 0o644)
	writeFile(t, p.keyFile, string(pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})), 0o600)
	return p
}

func TestBrokerTLS(t *testing.T) {
	pki := newTestPKI(t)
	_, port, _ := net.SplitHostPort(freeAddr(t))
	testbroker.StartMosquitto(t, testbroker.WithConfig(
		"listener "+port+" 127.0.0.1", "cafile "+pki.caFile, "certfile "+pki.certFile, "keyfile "+pki.keyFile))
	// Mosquitto's readiness probe is on its plain listener; wait for TLS.
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.Dial("tcp", "127.0.0.1:"+port)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("TLS listener: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	cfg := brokerConfig("ssl://localhost:" + port)
	cfg.MQTT.CAFile = pki.caFile
	expect(t, brokerResult(t, cfg), OK, "reachable over TLS 1.", "CONNECT accepted")

	cfg.MQTT.CAFile = ""
	r := brokerResult(t, cfg)
	expect(t, r, Fail, "signed by an authority this machine does not trust")
	if !strings.Contains(r.Fix, "mqtt.ca_file") {
		t.Errorf("fix: %q", r.Fix)
	}

	cfg = brokerConfig("ssl://127.0.0.1:" + port)
	cfg.MQTT.CAFile = pki.caFile
	r = brokerResult(t, cfg)
	expect(t, r, Fail, "not for 127.0.0.1 (it names localhost)")

	// TLS expected where the broker speaks plain MQTT.
	plain := testbroker.StartMosquitto(t)
	cfg = brokerConfig("ssl://" + plain.Addr())
	expect(t, brokerResult(t, cfg), Fail, "TLS handshake", "may not speak TLS on this port")
}

func TestEmbeddedBroker(t *testing.T) {
	cfg := brokerConfig(config.DefaultMQTTURL)
	cfg.MQTT.Listen = freeAddr(t)
	expect(t, brokerResult(t, cfg), OK, "is free")

	// Another program on the port.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	})
	cfg.MQTT.Listen = l.Addr().String()
	r := brokerResult(t, cfg)
	l.Close()
	wg.Wait()
	expect(t, r, Fail, "taken by another program")
	if !strings.Contains(r.Fix, "ss -ltnp") {
		t.Errorf("fix: %q", r.Fix)
	}

	// The running agent's broker: its room status is retained there.
	b := testbroker.StartMosquitto(t)
	pub := paho.NewClient(paho.NewClientOptions().AddBroker(b.URL()).SetClientID("fake-agent"))
	if tok := pub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	tok := pub.Publish("vigil/clinic-a/room-1/status", 1, true, `{"state":"online","version":"dev","since":"2026-11-26T10:00:00Z"}`)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	pub.Disconnect(100)
	cfg.MQTT.Listen = b.Addr()
	expect(t, brokerResult(t, cfg), OK, "running agent's embedded broker")

	// Another room's agent is not this one.
	cfg.Room = "room-2"
	expect(t, brokerResult(t, cfg), Fail, "not this room's agent")
}

func TestHTTP(t *testing.T) {
	agent := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			fmt.Fprintln(w, "ok")
			return
		}
		http.NotFound(w, r)
	}))
	defer agent.Close()
	expect(t, run(t, HTTPCheck(agent.Listener.Addr().String())), OK, "the agent answers")

	auth := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("WWW-Authenticate", `Basic realm="vigil"`)
		http.Error(w, "Unauthorized", http.StatusUnauthorized)
	}))
	defer auth.Close()
	expect(t, run(t, HTTPCheck(auth.Listener.Addr().String())), OK, "authentication required")

	other := httptest.NewServer(http.NotFoundHandler())
	defer other.Close()
	r := run(t, HTTPCheck(other.Listener.Addr().String()))
	expect(t, r, Fail, "something other than the agent", "HTTP 404")

	free := freeAddr(t)
	r = run(t, HTTPCheck(free))
	expect(t, r, Warn, "the agent is not running")
	if !strings.Contains(r.Fix, "systemctl start vigil") {
		t.Errorf("fix: %q", r.Fix)
	}

	// 0.0.0.0 is reached on this machine.
	_, port, _ := net.SplitHostPort(agent.Listener.Addr().String())
	expect(t, run(t, HTTPCheck("0.0.0.0:"+port)), OK, "127.0.0.1:"+port)
}

func webhookChannel(url string) *config.Channel {
	return &config.Channel{Name: "audit-webhook", Type: "webhook", Webhook: &webhook.Config{Name: "audit-webhook", URL: url}}
}

func TestWebChannelsReachedWithoutSending(t *testing.T) {
	var requests atomic.Int64
	receiver := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { requests.Add(1) }))
	defer receiver.Close()
	r := run(t, ChannelCheck(webhookChannel(receiver.URL+"/hook?token=SECRET-TOKEN")))
	expect(t, r, OK, receiver.URL, "nothing sent")
	if strings.Contains(r.Finding, "SECRET-TOKEN") {
		t.Errorf("the url's token is shown: %q", r.Finding)
	}
	if n := requests.Load(); n != 0 {
		t.Errorf("the receiver got %d requests", n)
	}
	if r.Name != "channel audit-webhook" {
		t.Errorf("name %q", r.Name)
	}

	// httptest's certificate is trusted by no system.
	tlsReceiver := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { requests.Add(1) }))
	tlsReceiver.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshake is the point
	tlsReceiver.StartTLS()
	defer tlsReceiver.Close()
	r = run(t, ChannelCheck(webhookChannel(tlsReceiver.URL+"/hook")))
	expect(t, r, Fail, "TLS handshake", "authority this machine does not trust")
	if n := requests.Load(); n != 0 {
		t.Errorf("the receivers got %d requests", n)
	}

	down := freeAddr(t)
	r = run(t, ChannelCheck(webhookChannel("http://"+down+"/hook")))
	expect(t, r, Fail, "nothing listens on "+down)

	r = run(t, ChannelCheck(webhookChannel("https://no-such-host.invalid/hook")))
	expect(t, r, Fail, "no-such-host.invalid")
}

// smtpServer is a minimal SMTP server: it greets, answers EHLO (offering
// STARTTLS only when told to lie about it), and records every command.
type smtpServer struct {
	l        net.Listener
	wg       sync.WaitGroup
	mu       sync.Mutex
	commands []string
}

func startSMTP(t *testing.T) *smtpServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &smtpServer{l: l}
	s.wg.Go(func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			s.wg.Go(func() { s.serve(c) })
		}
	})
	t.Cleanup(func() { l.Close(); s.wg.Wait() })
	return s
}

func (s *smtpServer) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprint(c, "220 mail.test ESMTP\r\n")
	sc := bufio.NewScanner(c)
	for sc.Scan() {
		line := sc.Text()
		s.mu.Lock()
		s.commands = append(s.commands, line)
		s.mu.Unlock()
		switch verb := strings.ToUpper(strings.Fields(line + " x")[0]); verb {
		case "EHLO":
			fmt.Fprint(c, "250-mail.test\r\n250-AUTH PLAIN\r\n250 8BITMIME\r\n")
		case "QUIT":
			fmt.Fprint(c, "221 bye\r\n")
			return
		default:
			fmt.Fprint(c, "250 ok\r\n")
		}
	}
}

func (s *smtpServer) seen() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.commands, "\n")
}

func TestEmailChannel(t *testing.T) {
	srv := startSMTP(t)
	addr := srv.l.Addr().String()
	ch := &config.Channel{Name: "charge-nurse", Type: "email", Email: &email.Config{
		Smarthost: addr, From: "vigil@clinic.example", To: []string{"nurse@clinic.example"}, TLS: email.TLSNone, Hello: "room-1.clinic.example",
	}}
	expect(t, run(t, ChannelCheck(ch)), OK, addr+" answers plain SMTP", "nothing sent")
	seen := srv.seen()
	if !strings.Contains(seen, "EHLO room-1.clinic.example") || !strings.Contains(seen, "QUIT") {
		t.Errorf("commands seen:\n%s", seen)
	}
	for _, verb := range []string{"MAIL", "RCPT", "DATA"} {
		if strings.Contains(seen, verb) {
			t.Errorf("the check sent %s:\n%s", verb, seen)
		}
	}

	ch.Email.TLS = email.TLSStartTLS
	r := run(t, ChannelCheck(ch))
	expect(t, r, Fail, "does not offer STARTTLS")

	ch.Email.Smarthost = freeAddr(t)
	expect(t, run(t, ChannelCheck(ch)), Fail, "connection refused")
}

// mountTmpfs mounts a tmpfs of size bytes: a real file system whose free
// space the test chooses.
func mountTmpfs(t *testing.T, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs needs root")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+strconv.FormatInt(size, 10), "tmpfs", dir).CombinedOutput(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("mount a tmpfs as root (needed in CI): %v %s", err, out)
		}
		t.Skipf("cannot mount a tmpfs here: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	return dir
}

func TestDiskSpace(t *testing.T) {
	dir := t.TempDir()
	r := run(t, DiskCheck(filepath.Join(dir, "vigil.db"), asMe(t)))
	if r.Status == Fail {
		t.Errorf("the test machine's disk fails: %s", r.Finding)
	}
	expect(t, r, r.Status, "free of", "under "+dir, "create the database in "+dir)

	writeFile(t, filepath.Join(dir, "vigil.db"), "", 0o600)
	expect(t, run(t, DiskCheck(filepath.Join(dir, "vigil.db"), asMe(t))), r.Status, "write the database")

	r = run(t, DiskCheck(filepath.Join(dir, "missing", "vigil.db"), asMe(t)))
	expect(t, r, Fail, "does not exist")
	if !strings.Contains(r.Fix, "StateDirectory=vigil") {
		t.Errorf("fix: %q", r.Fix)
	}

	small := mountTmpfs(t, 50<<20)
	r = run(t, DiskCheck(filepath.Join(small, "vigil.db"), asMe(t)))
	expect(t, r, Fail, "the store is about to stop recording", "50 MiB free of 50 MiB")
	if !strings.Contains(r.Fix, "store.retention") {
		t.Errorf("fix: %q", r.Fix)
	}
	medium := mountTmpfs(t, 600<<20)
	expect(t, run(t, DiskCheck(filepath.Join(medium, "vigil.db"), asMe(t))), Warn, "low on space: 600 MiB free")
	large := mountTmpfs(t, 4<<30)
	expect(t, run(t, DiskCheck(filepath.Join(large, "vigil.db"), asMe(t))), OK, "4.0 GiB free of 4.0 GiB (100%)")

}

// TestDiskLimits: the percentage rule, which a tmpfs cannot show without
// filling gigabytes of memory.
func TestDiskLimits(t *testing.T) {
	for _, c := range []struct {
		free, total uint64
		want        Status
	}{
		{99 << 20, 500 << 30, Fail},
		{100 << 20, 200 << 20, Warn},
		{(1 << 30) - 1, 2 << 30, Warn},
		{20 << 30, 250 << 30, Warn}, // 8 %
		{30 << 30, 250 << 30, OK},   // 12 %
		{1 << 30, 1 << 30, OK},
	} {
		if got := diskStatus(c.free, c.total); got != c.want {
			t.Errorf("diskStatus(%d, %d) = %s, want %s", c.free, c.total, got, c.want)
		}
	}
}

func TestDiskWritableByTheServiceUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("judging another user's access needs files owned by root")
	}
	dir := t.TempDir() // root's, 0700
	r := run(t, DiskCheck(filepath.Join(dir, "vigil.db"), Options{ServiceUser: "nobody"}))
	expect(t, r, Fail, "nobody cannot create the database in "+dir)
	if !strings.Contains(r.Fix, "chown nobody "+dir) {
		t.Errorf("fix: %q", r.Fix)
	}
}
