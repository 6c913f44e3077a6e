package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/vigil-monitor/vigil/agent/mqtt/testbroker"
	"github.com/vigil-monitor/vigil/agent/notify/webhook"
	"github.com/vigil-monitor/vigil/agent/session"
	"github.com/vigil-monitor/vigil/agent/store"
)

// privacyRef is the clinic reference (a medical record number) given at the
// start of the session: it may be kept in the agent's local store, and
// must leave the agent by no other way.
const privacyRef = "MRN-PRIVACY-9931"

// privacyNeedles are what the scan looks for: the reference, and its
// distinctive tail should a component shorten or reformat it.
var privacyNeedles = []string{privacyRef, "PRIVACY-9931", strings.ToLower(privacyRef)}

// privacyCapture collects everything the agent let out, by kind.
type privacyCapture struct {
	mu    sync.Mutex
	kinds map[string][]string
}

func (c *privacyCapture) add(kind, text string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.kinds == nil {
		c.kinds = map[string][]string{}
	}
	c.kinds[kind] = append(c.kinds[kind], text)
}

func (c *privacyCapture) get(kind string) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.kinds[kind])
}

func (c *privacyCapture) count(kind string, substrings ...string) int {
	n := 0
	for _, text := range c.get(kind) {
		if !slices.ContainsFunc(substrings, func(s string) bool { return !strings.Contains(text, s) }) {
			n++
		}
	}
	return n
}

// startDebugAgent is startRunConfig with --log-level debug: the most the
// agent ever logs is what is scanned.
func startDebugAgent(t *testing.T, cfgPath string) *runningProcess {
	t.Helper()
	p := &runningProcess{Cmd: exec.Command(vigilBin, "run", "--config", cfgPath, "--log-format", "json", "--log-level", "debug")}
	p.Stdout, p.Stderr = p, p
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if p.ProcessState == nil {
			p.Process.Kill()
			p.Wait()
		}
		if t.Failed() {
			t.Logf("vigil run output:\n%s", p.logs())
		}
	})
	return p
}

// privacyHTTP does one request to the agent and captures the answer.
func privacyHTTP(t *testing.T, c *privacyCapture, kind, method, url, body string) string {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	var headers bytes.Buffer
	resp.Header.Write(&headers)
	c.add(kind, headers.String()+"\n"+string(data))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("%s %s: HTTP %d: %s", method, url, resp.StatusCode, data)
	}
	return string(data)
}

// TestPrivacyClinicReferenceStaysInTheStore runs a real agent through a
// dosing session whose start carries a clinic reference, with alarms that
// notify a webhook during the session, and scans everything that leaves
// the agent: every MQTT topic and payload, every metric and label, the
// whole debug log, every webhook body and header, the session's exports and
// report, the API's answers and the audit log. The reference must appear in
// none of them, and only in the local store's session row.
func TestPrivacyClinicReferenceStaysInTheStore(t *testing.T) {
	start := time.Now()
	var c privacyCapture

	broker := testbroker.StartMosquitto(t)
	sub := paho.NewClient(paho.NewClientOptions().AddBroker(broker.URL()).SetClientID("privacy-recorder"))
	if tok := sub.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("recorder connect: %v", tok.Error())
	}
	defer sub.Disconnect(100)
	if tok := sub.Subscribe("vigil/#", 1, func(_ paho.Client, m paho.Message) {
		c.add("mqtt", m.Topic()+" "+string(m.Payload()))
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("recorder subscribe: %v", tok.Error())
	}

	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var headers bytes.Buffer
		r.Header.Write(&headers)
		c.add("webhook", r.Method+" "+r.URL.String()+"\n"+headers.String()+"\n"+string(body))
	}))
	defer receiver.Close()

	// SpO2 97.5 % for 20 s, then falling: the alarm starts during the
	// session, so its notifications carry the session.
	port := startSimulator(t, "desaturation")
	dir := t.TempDir()
	listen := doctorFreeAddr(t)
	dbPath := filepath.Join(dir, "vigil.db")
	auditPath := filepath.Join(dir, "audit.jsonl")
	writeSecret(t, dir, "webhook.secret", "privacy-test-webhook-key-0123456789\n")
	cfgPath := writeSecret(t, dir, "vigil.yaml", fmt.Sprintf(`site: clinic-a
room: room-1
devices:
  - id: oximeter-1
    driver: masimo-ascii
    port: %s
mqtt:
  url: %s
  keep_alive: 2s
http:
  listen: %s
store:
  path: %s
alarms:
  audit_log: %s
  clock_check: false
  rules:
    - name: spo2-below-97
      metric: spo2
      below: 97
      priority: medium
      delay: 0s
    - name: pulse-above-76
      metric: pulse_rate
      above: 76
      priority: low
      delay: 0s
notify:
  channels:
    - name: privacy-webhook
      type: webhook
      url: %s/hook
      secret_file: webhook.secret
  routes:
    - priorities: [high, medium, low]
      channels: [privacy-webhook]
session:
  min_observation: 3s
`, port, broker.URL(), listen, dbPath, auditPath, receiver.URL))
	agent := startDebugAgent(t, cfgPath)
	base := "http://" + listen
	waitUntil(t, "the agent ready", 30*time.Second, func() bool {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	answer := privacyHTTP(t, &c, "api", "POST", base+"/api/v1/session/start",
		`{"route":"iv","clinic_ref":"`+privacyRef+`","by":"tester"}`)
	var started struct {
		Session struct {
			ID string `json:"id"`
		} `json:"session"`
	}
	if err := json.Unmarshal([]byte(answer), &started); err != nil || !session.ValidID(started.Session.ID) {
		t.Fatalf("session start answered %s", answer)
	}
	id := started.Session.ID
	tagged := `"session":"` + id + `"`
	waitUntil(t, "readings carrying the session id", 30*time.Second, func() bool {
		return c.count("mqtt", "/oximeter-1/spo2 ", tagged) >= 3
	})
	privacyHTTP(t, &c, "api", "POST", base+"/api/v1/session/dose", `{"by":"tester"}`)

	// The desaturation begins 20 s after the simulator started.
	waitUntil(t, "a notification of an alarm of the session", 60*time.Second, func() bool {
		return c.count("webhook", id) >= 1
	})
	waitUntil(t, "an alarm event of the session on MQTT", 10*time.Second, func() bool {
		return c.count("mqtt", "vigil/clinic-a/room-1/alarms ", id) >= 1
	})
	privacyHTTP(t, &c, "api", "GET", base+"/api/v1/alarms", "")
	privacyHTTP(t, &c, "api", "GET", base+"/api/v1/session", "")
	privacyHTTP(t, &c, "api", "POST", base+"/api/v1/session/end", `{"by":"tester"}`)
	privacyHTTP(t, &c, "api", "GET", base+"/api/v1/sessions", "")
	privacyHTTP(t, &c, "api", "GET", base+"/api/v1/sessions/"+id, "")
	for _, format := range []string{"csv", "json", "fhir"} {
		privacyHTTP(t, &c, "export", "GET", base+"/api/v1/sessions/"+id+"/export?format="+format, "")
	}
	privacyHTTP(t, &c, "report", "GET", base+"/api/v1/sessions/"+id+"/report", "")
	privacyHTTP(t, &c, "metrics", "GET", base+"/metrics", "")

	// Stop the agent: its last words (the offline status, the stop in the
	// audit log) are scanned too.
	agent.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- agent.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("agent exit: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the agent did not stop within 30s of SIGTERM")
	}
	waitUntil(t, "the offline status", 10*time.Second, func() bool {
		return c.count("mqtt", "vigil/clinic-a/room-1/status ", `"offline"`) >= 1
	})
	c.add("log", agent.logs())
	auditFile, err := os.ReadFile(auditPath)
	if err != nil {
		t.Fatalf("audit log: %v", err)
	}
	c.add("audit", string(auditFile))

	// The store: the session row keeps the reference (the clinic's link from
	// the record to the patient, on this machine only); nothing else does.
	st, err := store.Open(dbPath, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	row, err := st.Session(id)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(row.Data), privacyRef) {
		t.Errorf("the stored session does not keep the clinic reference: %s", row.Data)
	}
	if rows, err := st.Sessions("", 10); err != nil || len(rows) != 1 || !strings.Contains(string(rows[0].Data), privacyRef) {
		t.Errorf("Sessions: %d rows (%v), the reference kept: %t", len(rows), err, len(rows) == 1 && strings.Contains(string(rows[0].Data), privacyRef))
	}
	entries, err := st.AuditEntries(time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		c.add("store audit", fmt.Sprintf("%+v", e))
	}
	events, err := st.AlarmEvents(time.Time{}, time.Time{}, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events {
		data, _ := json.Marshal(e)
		c.add("store alarm events", string(data))
	}
	readings, err := st.Readings(store.ReadingQuery{Session: id})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range readings {
		c.add("store readings", fmt.Sprintf("%+v", r))
	}

	// Proof that the scan looked at real output of every kind.
	log := strings.Join(c.get("log"), "")
	for _, check := range []struct {
		what string
		ok   bool
	}{
		{"MQTT messages", len(c.get("mqtt")) >= 20},
		{"the session id on MQTT readings", c.count("mqtt", "/oximeter-1/spo2 ", tagged) >= 3},
		{"the session id on the session topic", c.count("mqtt", "vigil/clinic-a/room-1/session ", id) >= 1},
		{"webhook notifications", len(c.get("webhook")) >= 1},
		{"a webhook signature header", c.count("webhook", http.CanonicalHeaderKey(webhook.SignatureHeader)+": ") >= 1},
		{"debug log lines", strings.Contains(log, `"level":"DEBUG"`)},
		{"the session in the log", strings.Contains(log, id)},
		{"vital-sign metrics", c.count("metrics", "vigil_spo2_ratio{") == 1},
		{"alarm metrics", c.count("metrics", "vigil_alarm_events_total{") == 1},
		{"notification metrics", c.count("metrics", `vigil_notifications_total{channel="privacy-webhook"`) == 1},
		{"the CSV, JSON and FHIR exports with the session id", c.count("export", id) == 3},
		{"the report with the session id", c.count("report", id) == 1},
		{"audit log lines", strings.Count(string(auditFile), "\n") >= 3},
		{"a session in the audit log", strings.Contains(string(auditFile), id)},
		{"stored audit entries", len(c.get("store audit")) >= 3},
		{"stored alarm events of the session", c.count("store alarm events", id) >= 1},
		{"stored readings of the session", len(readings) >= 5},
	} {
		if !check.ok {
			t.Errorf("the scan saw no %s", check.what)
		}
	}

	c.mu.Lock()
	defer c.mu.Unlock()
	kinds := slices.Sorted(func(yield func(string) bool) {
		for k := range c.kinds {
			if !yield(k) {
				return
			}
		}
	})
	for _, kind := range kinds {
		size := 0
		for _, text := range c.kinds[kind] {
			size += len(text)
			for _, needle := range privacyNeedles {
				if i := strings.Index(text, needle); i >= 0 {
					t.Errorf("the clinic reference appears in the %s: ...%s...", kind, text[max(0, i-200):min(len(text), i+100)])
					break
				}
			}
		}
		t.Logf("scanned %s: %d items, %d bytes", kind, len(c.kinds[kind]), size)
	}
	t.Logf("took %s", time.Since(start).Round(time.Millisecond))
}
