package agent_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/vigil-monitor/vigil/agent/audit"
	"github.com/vigil-monitor/vigil/agent/config"
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
	os.WriteFile(filepath.Join(dir, "hook.secret"), []byte("a-long-enough-webhook-secret\n"), 0o600)
	auditPath := filepath.Join(dir, "audit.jsonl")
	path := filepath.Join(dir, "vigil.yaml")
	os.WriteFile(path, []byte(fmt.Sprintf(`site: clinic-a
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
`, ox.link, auditPath, nurses.srv.URL, physician.srv.URL)), 0o600)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
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
