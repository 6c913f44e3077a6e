package mqtt

// The publisher against Mosquitto configured as configs/mosquitto/ ships it:
// a TLS listener requiring client certificates, a password file and the ACL
// file itself (configs/mosquitto/acl, read as is). Site "clinic-a" and the
// user names below are the ACL's.

import (
	"bytes"
	"context"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/vigil-monitor/vigil/agent/mqtt/testbroker"
	"github.com/vigil-monitor/vigil/drivers"
)

const (
	aclSite      = "clinic-a"
	room1User    = "vigil-clinic-a-room-1" // readwrite vigil/clinic-a/room-1/#
	viewerUser   = "dashboard-clinic-a"    // read vigil/clinic-a/#
	shippedDir   = "../../configs/mosquitto"
	passwdBinary = "mosquitto_passwd"
)

// passwords of the test's users; each is checked never to reach a log.
var aclPasswords = map[string]string{
	room1User:  "room1-Secret-4f2a",
	viewerUser: "viewer-Secret-77b0",
}

// securedBroker is Mosquitto with the shipped vigil.conf and acl.
type securedBroker struct {
	mosq *testbroker.Mosquitto
	url  string // ssl://127.0.0.1:port
	// TLS material: the CA and one client certificate every client uses
	// (the ACL is keyed by user name, not by certificate).
	caFile, certFile, keyFile string
	clientTLS                 *tls.Config
}

func findPasswd(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath(passwdBinary)
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s not found (Debian package mosquitto), required when CI is set: %v", passwdBinary, err)
		}
		t.Skipf("%s not found (Debian package mosquitto): %v", passwdBinary, err)
	}
	return p
}

func startSecuredBroker(t *testing.T) *securedBroker {
	t.Helper()
	passwd := findPasswd(t)
	dir := t.TempDir()
	caFile, _, ca, caKey := issue(t, dir, "ca", nil, nil)
	serverCert, serverKey, _, _ := issue(t, dir, "server", ca, caKey)
	clientCert, clientKey, _, _ := issue(t, dir, "client", ca, caKey)

	// The password file, made as README.md says.
	passwdFile := filepath.Join(dir, "passwd")
	first := true
	for _, user := range []string{room1User, viewerUser} {
		args := []string{"-b", passwdFile, user, aclPasswords[user]}
		if first {
			args = append([]string{"-c"}, args...)
			first = false
		}
		if out, err := exec.Command(passwd, args...).CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v\n%s", passwdBinary, user, err, out)
		}
	}
	aclFile, err := filepath.Abs(filepath.Join(shippedDir, "acl"))
	if err != nil {
		t.Fatal(err)
	}

	// vigil.conf as shipped, with the test's files and a free port.
	shipped, err := os.ReadFile(filepath.Join(shippedDir, "vigil.conf"))
	if err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	files := map[string]string{
		"/etc/mosquitto/vigil/ca.crt":     caFile,
		"/etc/mosquitto/vigil/server.crt": serverCert,
		"/etc/mosquitto/vigil/server.key": serverKey,
		"/etc/mosquitto/vigil/passwd":     passwdFile,
		"/etc/mosquitto/vigil/acl":        aclFile,
	}
	var lines []string
	for _, line := range strings.Split(string(shipped), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if line == "listener 8883" {
			line = "listener " + strconv.Itoa(port) + " 127.0.0.1"
		}
		fields := strings.Fields(line)
		if len(fields) == 2 && strings.HasPrefix(fields[1], "/etc/") {
			local, ok := files[fields[1]]
			if !ok {
				t.Fatalf("vigil.conf names %s, which this test does not provide", fields[1])
			}
			line = fields[0] + " " + local
		}
		lines = append(lines, line)
	}
	// Denied publishes are logged at debug level only.
	lines = append(lines, "log_type debug")
	mosq := testbroker.StartMosquitto(t, testbroker.WithConfig(lines...))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("broker log:\n%s", mosq.Log())
		}
	})

	pool := x509.NewCertPool()
	pool.AddCert(ca)
	cert, err := tls.LoadX509KeyPair(clientCert, clientKey)
	if err != nil {
		t.Fatal(err)
	}
	b := &securedBroker{
		mosq: mosq, url: "ssl://127.0.0.1:" + strconv.Itoa(port),
		caFile: caFile, certFile: clientCert, keyFile: clientKey,
		clientTLS: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12},
	}
	// testbroker only knows its plain listener is up; wait for ours.
	deadline := time.Now().Add(waitLimit)
	for {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), time.Second)
		if err == nil {
			c.Close()
			return b
		}
		if time.Now().After(deadline) {
			t.Fatalf("TLS listener not accepting: %v; broker log:\n%s", err, mosq.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// client connects a plain paho client over TLS as user; it fails the test
// when the broker refuses it.
func (b *securedBroker) client(t *testing.T, user, clientID string) paho.Client {
	t.Helper()
	c := paho.NewClient(paho.NewClientOptions().AddBroker(b.url).SetClientID(clientID).
		SetUsername(user).SetPassword(aclPasswords[user]).SetTLSConfig(b.clientTLS).
		SetConnectTimeout(5 * time.Second).SetAutoReconnect(false))
	if tok := c.Connect(); !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
		t.Fatalf("%s connect: %v; broker log:\n%s", user, tok.Error(), b.mosq.Log())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	return c
}

// subscribeAs subscribes a TLS client logged in as user to filter and
// records what it receives, like subscribe does on a plain listener.
func (b *securedBroker) subscribeAs(t *testing.T, user, filter string) *subscriber {
	t.Helper()
	s := &subscriber{changed: make(chan struct{}, 1)}
	s.client = b.client(t, user, "test-"+user+"-"+strconv.FormatInt(time.Now().UnixNano(), 36))
	tok := s.client.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) {
		s.mu.Lock()
		s.msgs = append(s.msgs, message{Topic: m.Topic(), Payload: string(m.Payload()), Retained: m.Retained()})
		s.mu.Unlock()
		select {
		case s.changed <- struct{}{}:
		default:
		}
	})
	if !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
		t.Fatalf("subscribe %s: %v", filter, tok.Error())
	}
	if code := tok.(*paho.SubscribeToken).Result()[filter]; code != 1 {
		t.Fatalf("%s subscribing to %s: SUBACK code %#x, want QoS 1", user, filter, code)
	}
	return s
}

// publishAs publishes at QoS 1 and returns once the broker acknowledged.
func publishAs(t *testing.T, c paho.Client, topic, payload string) {
	t.Helper()
	if tok := c.Publish(topic, 1, false, payload); !tok.WaitTimeout(waitLimit) || tok.Error() != nil {
		t.Fatalf("publish %s: %v", topic, tok.Error())
	}
}

// syncLog is a log sink for the publisher's goroutines.
type syncLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *syncLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *syncLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// waitLog waits until the log matches re.
func (l *syncLog) waitLog(t *testing.T, what string, re *regexp.Regexp) string {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for {
		s := l.String()
		if re.MatchString(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s in the log:\n%s", what, s)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startRoomAgent starts a publisher for room logged in as user with
// password, over the broker's TLS listener, logging to the returned log.
func (b *securedBroker) startRoomAgent(t *testing.T, room, user, password string, o Options) (*Publisher, *syncLog, *connectionLog) {
	t.Helper()
	logs := &syncLog{}
	conn := newConnectionLog()
	o.URL, o.Site, o.Room = b.url, aclSite, room
	o.Username, o.Password = user, password
	o.CAFile, o.CertFile, o.KeyFile = b.caFile, b.certFile, b.keyFile
	o.KeepAlive = 2 * time.Second
	o.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	o.OnConnectionChange, o.OnPublishError = conn.change, conn.publishError
	p, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = p.Close(ctx)
		for _, pw := range aclPasswords {
			if strings.Contains(logs.String(), pw) {
				t.Errorf("a password appears in the publisher's log:\n%s", logs)
			}
		}
	})
	return p, logs, conn
}

func roomReading(seq uint64) *drivers.Reading {
	return &drivers.Reading{Device: "ox1", Seq: seq, Metric: drivers.SpO2, Value: 97, Valid: true,
		Received: time.Date(2025, 3, 1, 10, 0, 0, int(seq)*1000, time.UTC)}
}

// readingSeqs returns the seq of every reading of room's ox1 in msgs.
func readingSeqs(t *testing.T, msgs []message, room string) []uint64 {
	t.Helper()
	var seqs []uint64
	for _, m := range msgs {
		if m.Topic == "vigil/"+aclSite+"/"+room+"/ox1/"+drivers.SpO2.String() {
			seqs = append(seqs, seqOf(t, m))
		}
	}
	return seqs
}

// A room's agent connects over TLS with its certificate, user and password;
// its readings reach the dashboard user, and its command subscription is
// granted. The dashboard may read but not command.
func TestACLRoomAgentOverTLS(t *testing.T) {
	b := startSecuredBroker(t)
	dashboard := b.subscribeAs(t, viewerUser, "vigil/"+aclSite+"/#")

	commands := make(chan string, 8)
	p, logs, conn := b.startRoomAgent(t, "room-1", room1User, aclPasswords[room1User], Options{
		OnCommand: func(device, command string) error {
			commands <- device + " " + command
			return nil
		},
	})
	conn.waitChanges(t, []bool{true})
	logs.waitLog(t, "the command subscription", regexp.MustCompile(`subscribed to commands`))
	for seq := uint64(1); seq <= 20; seq++ {
		p.Consume(roomReading(seq))
	}
	msgs := dashboard.waitFor(t, "room-1's readings", func(m []message) bool { return len(readingSeqs(t, m, "room-1")) >= 20 })
	for i, seq := range readingSeqs(t, msgs, "room-1") {
		if seq != uint64(i+1) {
			t.Fatalf("readings out of order or duplicated: %v", readingSeqs(t, msgs, "room-1"))
		}
	}

	// The dashboard's command is acknowledged by the broker (MQTT 3.1.1) but
	// dropped; an engineer logged in as the room's user then sends one that
	// is delivered. Mosquitto routes each publish before it acknowledges it,
	// so had the first been delivered it would have arrived before the second.
	publishAs(t, dashboard.client, "vigil/"+aclSite+"/room-1/ox1/cmd", `{"command":"from_dashboard"}`)
	engineer := b.client(t, room1User, "test-engineer")
	publishAs(t, engineer, "vigil/"+aclSite+"/room-1/ox1/cmd", `{"command":"from_engineer"}`)
	select {
	case got := <-commands:
		if got != "ox1 from_engineer" {
			t.Fatalf("first command handled: %q, want the engineer's (the dashboard may not command)", got)
		}
	case <-time.After(waitLimit):
		t.Fatalf("the engineer's command never arrived; log:\n%s", logs)
	}
	if !strings.Contains(b.mosq.Log(), "Denied PUBLISH from test-"+viewerUser) {
		t.Errorf("broker did not log the dashboard's denied publish:\n%s", b.mosq.Log())
	}
	if _, errs := conn.snapshot(); len(errs) != 0 {
		t.Errorf("publish errors: %v", errs)
	}
}

// A wrong password never connects, and the publisher says why in words.
func TestACLWrongPassword(t *testing.T) {
	b := startSecuredBroker(t)
	const wrong = "not-the-Password-31"
	p, logs, conn := b.startRoomAgent(t, "room-1", room1User, wrong, Options{})
	out := logs.waitLog(t, "the refused connection", regexp.MustCompile(`connection attempt failed`))
	// The reason is paho's text of the CONNACK code, not the number:
	// "not Authorized" (code 5) or "bad user name or password" (code 4).
	failure := regexp.MustCompile(`(?i)error="?[^"\n]*(not authori[sz]ed|bad user name or password)`)
	if !failure.MatchString(out) {
		t.Errorf("the failure does not say the login was refused:\n%s", out)
	}
	if regexp.MustCompile(`(?i)(code|rc)[ =:]*[45]\b`).MatchString(out) {
		t.Errorf("the failure is a raw return code:\n%s", out)
	}
	if strings.Contains(out, wrong) {
		t.Errorf("the wrong password is logged:\n%s", out)
	}
	if p.Connected() {
		t.Error("connected with a wrong password")
	}
	if got, _ := conn.snapshot(); len(got) != 0 {
		t.Errorf("connection changes %v with a wrong password", got)
	}
	if !regexp.MustCompile(`(?i)not authori[sz]ed`).MatchString(b.mosq.Log()) {
		t.Errorf("broker log does not show the refusal:\n%s", b.mosq.Log())
	}
}

// An agent configured with another room's name (here: the credentials of
// room 1, the topics of room 2) is outside its ACL. What Mosquitto does with
// the acl_file (2.0.x, the Debian package):
//   - its command subscription is granted (SUBACK QoS 1): the default ACL
//     check filters at delivery, never at SUBSCRIBE, so nothing tells the
//     agent that commands cannot arrive (TestDynsecCommandSubscriptionRefused
//     shows the plugin that does refuse);
//   - a denied QoS 1 PUBLISH gets a PUBACK and then the connection is
//     closed (MQTT 3.1.1 section 3.3.5 allows either; Mosquitto does both,
//     eclipse-mosquitto/mosquitto#2579). There is no negative PUBACK in
//     MQTT 3.1.1, so no publish error is reported: the agent sees its
//     connection flap ("connection lost; reconnecting" every few seconds),
//     and the data never reaches anyone; after three quick losses the
//     publisher logs an error naming the likely cause, the broker's ACL
//     (TestQuickConnectionLossesNameTheACL).
func TestACLOutsideTheRoom(t *testing.T) {
	b := startSecuredBroker(t)
	dashboard := b.subscribeAs(t, viewerUser, "vigil/"+aclSite+"/#")

	misconfigured, logs, conn := b.startRoomAgent(t, "room-2", room1User, aclPasswords[room1User], Options{
		OnCommand: func(string, string) error { return nil },
	})
	for seq := uint64(1); seq <= 5; seq++ {
		misconfigured.Consume(roomReading(seq))
	}
	// The first denied publish (the retained "online" status after every
	// connect) ends the connection; wait for the second loss to show the
	// agent keeps trying and keeps failing.
	out := logs.waitLog(t, "the connection flapping", regexp.MustCompile(`(?s)connection lost; reconnecting.*connection lost; reconnecting`))
	t.Logf("the misconfigured agent's log:\n%s", out)
	// Whether paho sees the PUBACK before the connection closes is a race:
	// when it does not, it reports the publish as failed and sends the same
	// reading again (DUP) after reconnecting, where it is denied again. The
	// agent is stuck on its oldest reading; the outbox keeps the rest.
	if _, errs := conn.snapshot(); len(errs) != 0 {
		t.Logf("publish errors reported: %v", errs)
	}

	// A marker on the same user's allowed topics, published after: once it
	// is seen, anything routed before it would have been seen too.
	engineer := b.client(t, room1User, "test-engineer")
	publishAs(t, engineer, "vigil/"+aclSite+"/room-1/marker", "after")
	msgs := dashboard.waitFor(t, "the marker", func(m []message) bool {
		for _, x := range m {
			if x.Topic == "vigil/"+aclSite+"/room-1/marker" {
				return true
			}
		}
		return false
	})
	for _, m := range msgs {
		if strings.HasPrefix(m.Topic, "vigil/"+aclSite+"/room-2/") {
			t.Errorf("a publish outside the ACL was delivered: %s %s", m.Topic, m.Payload)
		}
	}
	if !strings.Contains(b.mosq.Log(), "Denied PUBLISH from vigil-"+aclSite+"-room-2") {
		t.Errorf("broker log lacks the denied publishes:\n%s", b.mosq.Log())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	t.Logf("Close: %v", misconfigured.Close(ctx))
}

// dynsecPlugin is where Debian's mosquitto package puts the dynamic
// security plugin.
const dynsecPlugin = "/usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so"

// With Mosquitto's dynamic security plugin, unlike the acl_file, a
// subscription outside the client's roles is refused in the SUBACK (0x80),
// and the publisher logs it as an error; the readings still go out. Here a
// room's role allows publishing but no subscription: the operator forgot
// the command topics.
func TestDynsecCommandSubscriptionRefused(t *testing.T) {
	plugin := dynsecPlugin
	if _, err := os.Stat(plugin); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s missing (Debian package mosquitto), required when CI is set: %v", plugin, err)
		}
		t.Skipf("%s missing: %v", plugin, err)
	}
	dir := t.TempDir()
	caFile, _, ca, caKey := issue(t, dir, "ca", nil, nil)
	serverCert, serverKey, _, _ := issue(t, dir, "server", ca, caKey)
	clientCert, clientKey, _, _ := issue(t, dir, "client", ca, caKey)

	password := aclPasswords[room1User]
	salt := make([]byte, 12)
	if _, err := rand.Read(salt); err != nil {
		t.Fatal(err)
	}
	// The plugin's password format: PBKDF2-SHA512, 64 bytes, base64.
	const iterations = 101
	hash, err := pbkdf2.Key(sha512.New, password, salt, iterations, 64)
	if err != nil {
		t.Fatal(err)
	}
	dynsec := map[string]any{
		"defaultACLAccess": map[string]bool{"publishClientSend": false, "publishClientReceive": true, "subscribe": false, "unsubscribe": true},
		"clients": []map[string]any{{
			"username": room1User, "iterations": iterations,
			"password": base64.StdEncoding.EncodeToString(hash), "salt": base64.StdEncoding.EncodeToString(salt),
			"roles": []map[string]string{{"rolename": "room-1-publish-only"}},
		}},
		"roles": []map[string]any{{
			"rolename": "room-1-publish-only",
			"acls":     []map[string]any{{"acltype": "publishClientSend", "topic": "vigil/" + aclSite + "/room-1/#", "allow": true}},
		}},
	}
	raw, err := json.Marshal(dynsec)
	if err != nil {
		t.Fatal(err)
	}
	dynsecFile := filepath.Join(dir, "dynamic-security.json")
	if err := os.WriteFile(dynsecFile, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	mosq := testbroker.StartMosquitto(t, testbroker.WithConfig(
		"plugin "+plugin,
		"plugin_opt_config_file "+dynsecFile,
		"listener "+strconv.Itoa(port)+" 127.0.0.1",
		"cafile "+caFile, "certfile "+serverCert, "keyfile "+serverKey,
		"require_certificate true",
		"allow_anonymous false",
		"log_type debug",
	))
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("broker log:\n%s", mosq.Log())
		}
	})
	b := &securedBroker{mosq: mosq, url: "ssl://127.0.0.1:" + strconv.Itoa(port), caFile: caFile, certFile: clientCert, keyFile: clientKey}

	p, logs, conn := b.startRoomAgent(t, "room-1", room1User, password, Options{
		OnCommand: func(string, string) error { return nil },
	})
	conn.waitChanges(t, []bool{true})
	out := logs.waitLog(t, "the refused subscription",
		regexp.MustCompile(`level=ERROR msg="broker refused the command subscription; commands will not be received" component=mqtt topic=vigil/clinic-a/room-1/\+/cmd`))
	if strings.Contains(out, "subscribed to commands") {
		t.Errorf("a refused subscription logged as granted:\n%s", out)
	}
	// The readings are unaffected: every one is acknowledged.
	for seq := uint64(1); seq <= 5; seq++ {
		p.Consume(roomReading(seq))
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	if err := p.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if strings.Contains(logs.String(), "connection lost") {
		t.Errorf("the connection dropped:\n%s", logs)
	}
}
