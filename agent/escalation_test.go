package agent_test

import (
	"encoding/json"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/vigil-monitor/vigil/agent/audit"
	"github.com/vigil-monitor/vigil/agent/notify/alertmanager/amtest"
)

// receiver is a webhook endpoint that records the alarm events it gets.
type receiver struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []webhookEvent
}

func newReceiver(t *testing.T) *receiver {
	r := &receiver{}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		var ev webhookEvent
		if json.Unmarshal(b, &ev) == nil && req.Header.Get("X-Vigil-Signature") != "" {
			r.mu.Lock()
			r.got = append(r.got, ev)
			r.mu.Unlock()
		}
	}))
	t.Cleanup(r.srv.Close)
	return r
}

// has reports whether an event of alarm in phase (and, if given, state)
// arrived.
func (r *receiver) has(alarm, phase, state string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ev := range r.got {
		if ev.AlarmID == alarm && ev.Phase == phase && (state == "" || ev.State == state) {
			return true
		}
	}
	return false
}

func (r *receiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

// TestEscalationPauseAndMQTTAcknowledgeEndToEnd runs the alarm path of a
// real agent with two notification tiers: a desaturation reaches the
// nurses' channel; nobody acknowledges, so after escalate_after it reaches
// the physician's; an acknowledgement published on the room's MQTT alarm
// command topic stops it; a pause set over HTTP holds back the paused
// alarm's updates but not a new alarm; recovery ends the alarm on both
// tiers; and the audit log records each step with who and how.
func TestEscalationPauseAndMQTTAcknowledgeEndToEnd(t *testing.T) {
	nurses, physician := newReceiver(t), newReceiver(t)
	ox := newFakeOximeter(t)
	dir := t.TempDir()
	writeHookSecret(t, dir)
	auditPath := filepath.Join(dir, "audit.jsonl")
	cfg := loadConfig(t, dir, fmt.Sprintf(`site: clinic-a
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
alarms:
  audit_log: %s
  clock_check: false
  rules:
    - name: spo2-low
      metric: spo2
      below: 90
      priority: medium
      delay: 0s
      clear_delay: 0s
    - name: pulse-high
      metric: pulse_rate
      above: 130
      priority: medium
      delay: 0s
      clear_delay: 0s
notify:
  channels:
    - name: nurses
      type: webhook
      url: %s/nurses
      secret_file: hook.secret
    - name: physician
      type: webhook
      url: %s/physician
      secret_file: hook.secret
  routes:
    - priorities: [high, medium]
      channels: [nurses]
      escalate_after: 2s
      then: physician
    - name: physician
      channels: [physician]
`, ox.link, auditPath, nurses.srv.URL, physician.srv.URL))
	ra := startAgent(t, cfg)
	results := subscribe(t, ra.ep.MQTT)

	const spo2Alarm = "spo2-low/oximeter-1"
	ox.send(frame(97, 70, 0))
	ox.send(frame(86, 70, 0))
	waitFor(t, "the SpO2 alarm at the nurses' channel", 15*time.Second, func() bool { return nurses.has(spo2Alarm, "start", "") })
	if physician.has(spo2Alarm, "start", "") {
		t.Error("the physician got the alarm before escalate_after")
	}
	waitFor(t, "the escalation to the physician", 15*time.Second, func() bool { return physician.count() > 0 })

	// Acknowledge on MQTT, as a dashboard button would.
	cmd := paho.NewClient(paho.NewClientOptions().AddBroker(ra.ep.MQTT).SetClientID("test-ack"))
	if tok := cmd.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer cmd.Disconnect(100)
	publish := func(payload string) {
		t.Helper()
		if tok := cmd.Publish("vigil/clinic-a/room-1/alarms/cmd", 1, false, payload); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	publish(`{"command":"ack","alarm":"` + spo2Alarm + `","by":"RN Kim","id":"a1"}`)
	waitFor(t, "the acknowledgement's result on MQTT", 10*time.Second, func() bool {
		m, ok := results.lastOn("vigil/clinic-a/room-1/alarms/cmd/result")
		return ok && strings.Contains(string(m.payload), `"id":"a1","ok":true`)
	})
	waitFor(t, "the acknowledged state at the nurses' channel", 10*time.Second, func() bool {
		return nurses.has(spo2Alarm, "update", "acknowledged")
	})

	// Pause over HTTP: the acknowledged SpO2 alarm is paused; a NEW alarm
	// (pulse high) still notifies.
	resp, err := http.Post(ra.ep.HTTP+"/api/v1/alarms/pause?by=RN+Kim&for=1m", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	var pause struct {
		OK, Paused bool
		Until      *time.Time
	}
	json.NewDecoder(resp.Body).Decode(&pause)
	resp.Body.Close()
	if !pause.OK || !pause.Paused || pause.Until == nil || time.Until(*pause.Until) > time.Minute {
		t.Errorf("pause answer %+v", pause)
	}
	ox.send(frame(86, 140, 0))
	waitFor(t, "a new alarm notifying during the pause", 15*time.Second, func() bool {
		return nurses.has("pulse-high/oximeter-1", "start", "")
	})
	publish(`{"command":"resume","by":"RN Kim","id":"r1"}`)
	waitFor(t, "the resume's result on MQTT", 10*time.Second, func() bool {
		m, ok := results.lastOn("vigil/clinic-a/room-1/alarms/cmd/result")
		return ok && strings.Contains(string(m.payload), `"id":"r1","ok":true`)
	})

	ox.send(frame(97, 70, 0))
	waitFor(t, "the end at both tiers", 15*time.Second, func() bool {
		return nurses.has(spo2Alarm, "end", "") && physician.has(spo2Alarm, "end", "")
	})

	// The agent stops (its embedded broker with it) to write "stopped":
	// the test's clients leave first.
	cmd.Disconnect(100)
	results.client.Disconnect(100)
	ra.stop(t)
	f, err := os.Open(auditPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	entries, err := audit.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	// Notification results are written by the channels' workers, so they
	// interleave with the rest by timing: checked apart.
	var trail, notified []string
	for _, e := range entries {
		switch e.Type {
		case audit.TypeAgent:
			trail = append(trail, "agent "+e.What)
		case audit.TypeAcknowledge:
			trail = append(trail, "ack "+e.AlarmID+" by "+e.By+" via "+e.Via)
		case audit.TypePause:
			trail = append(trail, "pause by "+e.By+" via "+e.Via)
		case audit.TypeAlarm:
			if e.AlarmID == spo2Alarm {
				trail = append(trail, "alarm "+string(e.Phase)+" "+string(e.State))
			}
		case audit.TypeNotification:
			if e.AlarmID == spo2Alarm {
				notified = append(notified, e.Channel+" "+string(e.Phase)+" "+e.Result)
			}
		}
	}
	want := []string{
		"agent started",
		"alarm start active",
		"ack " + spo2Alarm + " by RN Kim via mqtt",
		"alarm update acknowledged",
		"pause by RN Kim via http",
		"pause by RN Kim via mqtt",
		"alarm end resolved",
		"agent stopped",
	}
	if strings.Join(trail, "\n") != strings.Join(want, "\n") {
		t.Errorf("audit trail:\n%s\nwant:\n%s", strings.Join(trail, "\n"), strings.Join(want, "\n"))
	}
	if len(notified) < 3 || notified[0] != "nurses start delivered" || !strings.HasPrefix(notified[1], "physician ") ||
		!strings.HasSuffix(notified[1], " delivered") || !slices.Contains(notified, "physician end delivered") {
		t.Errorf("notifications in the audit log: %q", notified)
	}
}

// TestAckLinkEndToEnd: with alarms.ack_links, the notification carries a
// signed link to the agent; opening it shows the alarm and changes
// nothing; the page's button acknowledges it (escalation stops), with the
// name given, recorded as "phone link"; the link then works no more; the
// MQTT event does not carry the link.
func TestAckLinkEndToEnd(t *testing.T) {
	nurses := newReceiver(t)
	ox := newFakeOximeter(t)
	dir := t.TempDir()
	writeHookSecret(t, dir)
	os.WriteFile(filepath.Join(dir, "ack.key"), []byte("an-ack-link-key-of-at-least-32-bytes-0123456789\n"), 0o600)
	// The agent's port is only known once it listens, so the base URL is
	// a name resolved to it by the test's HTTP client: the link is checked
	// for the configured base, then fetched on the agent.
	cfg := loadConfig(t, dir, fmt.Sprintf(`site: clinic-a
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
alarms:
  audit_log: %s/audit.jsonl
  clock_check: false
  ack_links:
    base_url: http://room-1.clinic.lan:9817
    key_file: ack.key
  rules:
    - name: spo2-low
      metric: spo2
      below: 90
      priority: medium
      delay: 0s
notify:
  channels:
    - name: nurses
      type: webhook
      url: %s/nurses
      secret_file: hook.secret
  routes:
    - priorities: [high, medium]
      channels: [nurses]
`, ox.link, dir, nurses.srv.URL))
	ra := startAgent(t, cfg)
	sub := subscribe(t, ra.ep.MQTT)
	ox.send(frame(97, 70, 0))
	ox.send(frame(86, 70, 0))
	waitFor(t, "the alarm at the nurses' channel", 15*time.Second, func() bool { return nurses.has("spo2-low/oximeter-1", "start", "") })
	nurses.mu.Lock()
	link := nurses.got[0].AckURL
	nurses.mu.Unlock()
	const base = "http://room-1.clinic.lan:9817/ack/"
	if !strings.HasPrefix(link, base) || len(link) < len(base)+40 {
		t.Fatalf("ack_url %q", link)
	}
	for _, m := range sub.snapshot() {
		if strings.Contains(string(m.payload), "/ack/") {
			t.Errorf("the link was published on MQTT (%s)", m.topic)
		}
	}
	page, post := openAckLink(t, ra.ep.HTTP, link)
	if !strings.Contains(page, "spo2") {
		t.Fatalf("the confirm page does not show the alarm:\n%s", page)
	}
	if nurses.has("spo2-low/oximeter-1", "update", "acknowledged") {
		t.Fatal("opening the link acknowledged")
	}
	if code := post("RN Kim"); code != http.StatusOK {
		t.Fatalf("POST link: %d", code)
	}
	waitFor(t, "the acknowledgement at the nurses' channel", 10*time.Second, func() bool {
		return nurses.has("spo2-low/oximeter-1", "update", "acknowledged")
	})
	if code := post("RN Kim"); code != http.StatusConflict {
		t.Errorf("second POST of the link: %d, want 409", code)
	}
	sub.client.Disconnect(100)
	ra.stop(t)
	data, err := os.ReadFile(filepath.Join(dir, "audit.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(data), `"type":"acknowledge","alarm_id":"spo2-low/oximeter-1"`) ||
		!strings.Contains(string(data), `"by":"RN Kim","via":"phone link"`) || strings.Contains(string(data), "/ack/") {
		t.Errorf("audit log:\n%s", data)
	}
}

// ntfyRequest is what the fake ntfy server saw of one publish.
type ntfyRequest struct {
	Title, Priority, Tags, Actions, Click, Body string
}

// TestAlarmChainEndToEnd is the alarm issue's "done when", through a
// running agent: a simulated desaturation becomes an alarm delivered to
// ntfy (priority header, the acknowledge action), a signed webhook and a
// real Alertmanager; nobody acknowledges, so it escalates to the second
// tier; the nurse acknowledges from the phone link (escalation stops, no
// repeat reaches the physician); the recovery resolves it everywhere,
// Alertmanager included.
func TestAlarmChainEndToEnd(t *testing.T) {
	am := amtest.Start(t)
	var (
		ntfyMu sync.Mutex
		ntfy   []ntfyRequest
	)
	ntfySrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Method != http.MethodPost || r.URL.Path != "/room-1" || r.Header.Get("Authorization") != "Bearer tk_ntfy_test_token" {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		ntfyMu.Lock()
		title, _ := new(mime.WordDecoder).DecodeHeader(r.Header.Get("Title"))
		ntfy = append(ntfy, ntfyRequest{Title: title, Priority: r.Header.Get("X-Priority"), Tags: r.Header.Get("Tags"),
			Actions: r.Header.Get("Actions"), Click: r.Header.Get("Click"), Body: string(b)})
		ntfyMu.Unlock()
	}))
	defer ntfySrv.Close()
	nurses, physician := newReceiver(t), newReceiver(t)
	ox := newFakeOximeter(t)
	dir := t.TempDir()
	writeHookSecret(t, dir)
	os.WriteFile(filepath.Join(dir, "ntfy.token"), []byte("tk_ntfy_test_token\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "ack.key"), []byte("an-ack-link-key-of-at-least-32-bytes-0123456789\n"), 0o600)
	cfg := loadConfig(t, dir, fmt.Sprintf(`site: clinic-a
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
store:
  path: %s/vigil.db
alarms:
  clock_check: false
  ack_links:
    base_url: http://room-1.clinic.lan:9817
    key_file: ack.key
  rules:
    - name: spo2-low
      metric: spo2
      below: 90
      priority: medium
      delay: 0s
      clear_delay: 0s
notify:
  channels:
    - name: nurses-ntfy
      type: ntfy
      url: %s/room-1
      token_file: ntfy.token
    - name: nurses-webhook
      type: webhook
      url: %s/nurses
      secret_file: hook.secret
    - name: alertmanager
      type: alertmanager
      url: %s
    - name: physician
      type: webhook
      url: %s/physician
      secret_file: hook.secret
  routes:
    - priorities: [high, medium]
      channels: [nurses-ntfy, nurses-webhook, alertmanager]
      escalate_after: 2s
      then: physician
    - name: physician
      channels: [physician]
      repeat_interval: 2s
`, ox.link, dir, ntfySrv.URL, nurses.srv.URL, am, physician.srv.URL))
	ra := startAgent(t, cfg)
	const id = "spo2-low/oximeter-1"

	ox.send(frame(97, 70, 0))
	ox.send(frame(85, 70, 0))
	waitFor(t, "the alarm at ntfy", 15*time.Second, func() bool {
		ntfyMu.Lock()
		defer ntfyMu.Unlock()
		return len(ntfy) > 0
	})
	ntfyMu.Lock()
	first := ntfy[0]
	ntfyMu.Unlock()
	if !strings.HasPrefix(first.Title, "**") || first.Priority != "4" || !strings.Contains(first.Actions, "http://room-1.clinic.lan:9817/ack/") {
		t.Errorf("ntfy message %+v", first)
	}
	waitFor(t, "the alarm at the nurses' webhook", 10*time.Second, func() bool { return nurses.has(id, "start", "") })
	activeAt := func(state string) bool {
		resp, err := http.Get(am + "/api/v2/alerts")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var alerts []struct {
			Labels map[string]string `json:"labels"`
			Status struct {
				State string `json:"state"`
			} `json:"status"`
		}
		json.NewDecoder(resp.Body).Decode(&alerts)
		for _, a := range alerts {
			if a.Labels["alarm_id"] == id && a.Status.State == state {
				return true
			}
		}
		return false
	}
	waitFor(t, "the alert active in Alertmanager", 15*time.Second, func() bool { return activeAt("active") })
	waitFor(t, "the escalation to the physician", 15*time.Second, func() bool { return physician.count() > 0 })

	// The nurse taps the link on her phone.
	nurses.mu.Lock()
	link := nurses.got[0].AckURL
	nurses.mu.Unlock()
	_, press := openAckLink(t, ra.ep.HTTP, link)
	if code := press("RN Kim"); code != http.StatusOK {
		t.Fatalf("acknowledge through the link: HTTP %d", code)
	}
	waitFor(t, "the acknowledgement at the nurses' webhook", 10*time.Second, func() bool { return nurses.has(id, "update", "acknowledged") })
	// Escalation and repeats stop: the physician's count settles (their
	// repeat_interval is 2 s) while the alarm stays acknowledged.
	settled := physician.count()
	time.Sleep(3 * time.Second)
	if n := physician.count(); n > settled+1 { // at most the acknowledged update itself
		t.Errorf("the physician got %d more messages after the acknowledgement", n-settled)
	}

	ox.send(frame(97, 70, 0))
	waitFor(t, "the end everywhere", 15*time.Second, func() bool {
		return nurses.has(id, "end", "") && physician.has(id, "end", "") && !activeAt("active")
	})
	ntfyMu.Lock()
	last := ntfy[len(ntfy)-1]
	ntfyMu.Unlock()
	if !strings.Contains(strings.ToLower(last.Title), "resolved") || last.Actions != "" {
		t.Errorf("ntfy's last message should be the resolution without an action: %+v", last)
	}
}

// openAckLink opens an acknowledge link as the phone would, sending the
// request to the agent's real address with the link's host: it returns the
// confirm page and a function that presses its button (with the name) and
// returns the HTTP status.
func openAckLink(t *testing.T, agentHTTP, link string) (page string, press func(by string) int) {
	t.Helper()
	u, err := url.Parse(link)
	if err != nil {
		t.Fatal(err)
	}
	local := agentHTTP + u.Path
	req, _ := http.NewRequest(http.MethodGet, local, nil)
	req.Host = u.Host
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET link: %d\n%s", resp.StatusCode, body)
	}
	_, after, ok := strings.Cut(string(body), `name="confirm" value="`)
	confirm, _, _ := strings.Cut(after, `"`)
	if !ok || confirm == "" {
		t.Fatalf("no confirm value on the page:\n%s", body)
	}
	return string(body), func(by string) int {
		t.Helper()
		form := url.Values{"confirm": {confirm}, "by": {by}}
		req, _ := http.NewRequest(http.MethodPost, local, strings.NewReader(form.Encode()))
		req.Host = u.Host
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Origin", u.Scheme+"://"+u.Host)
		req.Header.Set("Sec-Fetch-Site", "same-origin")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
}
