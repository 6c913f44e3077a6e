package agent_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/vigil-monitor/vigil/agent/mqtt/testbroker"
	"github.com/vigil-monitor/vigil/drivers/suntech"
)

// TestSessionOverMQTTWithScheduledNIBP: a dosing session driven over the
// room's MQTT session topic: the start is retained on the session topic
// and every reading carries the session id; the baseline blood pressure
// taken before the dose is recorded; after the dose the agent starts the
// scheduled measurement on the NIBP module itself; the end records the
// check, and the export holds the session's readings.
func TestSessionOverMQTTWithScheduledNIBP(t *testing.T) {
	b := testbroker.StartMosquitto(t)
	nibp := startEmulatedNIBP(t, suntech.Result{Systolic: 128, Diastolic: 84, Mean: 99, HeartRate: 71})
	ox := newFakeOximeter(t)
	dir := t.TempDir()
	cfg := loadConfig(t, dir, fmt.Sprintf(`site: clinic-a
room: room-1
devices:
  - id: oximeter-1
    driver: masimo-ascii
    port: %s
  - id: nibp-1
    driver: suntech-advantage
    port: %s
mqtt:
  url: %s
http:
  listen: 127.0.0.1:0
store:
  path: %s/vigil.db
alarms:
  clock_check: false
session:
  first_nibp_after_dose: 3s
  nibp_interval: 1h
  nibp_grace: 1s
  min_observation: 1s
`, ox.link, nibp.link, b.URL(), dir))
	ra := startAgent(t, cfg)
	sub := subscribe(t, b.URL())
	waitFor(t, "the NIBP module connected", 10*time.Second, func() bool {
		m, ok := sub.lastOn("vigil/clinic-a/room-1/nibp-1/status")
		return ok && strings.Contains(string(m.payload), `"connected"`)
	})
	cmd := paho.NewClient(paho.NewClientOptions().AddBroker(b.URL()).SetClientID("session-test"))
	if tok := cmd.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	defer cmd.Disconnect(100)
	send := func(payload, id string) {
		t.Helper()
		cmd.Publish("vigil/clinic-a/room-1/session/cmd", 1, false, payload).Wait()
		waitFor(t, "the result of "+id, 10*time.Second, func() bool {
			m, ok := sub.lastOn("vigil/clinic-a/room-1/session/cmd/result")
			return ok && strings.Contains(string(m.payload), `"id":"`+id+`","ok":true`)
		})
	}
	send(`{"command":"start","route":"iv","by":"RN Kim","id":"s1"}`, "s1")
	var state struct {
		Active  bool `json:"active"`
		Session struct {
			ID string `json:"id"`
		} `json:"session"`
	}
	waitFor(t, "the session on MQTT", 10*time.Second, func() bool {
		m, ok := sub.lastOn("vigil/clinic-a/room-1/session")
		return ok && json.Unmarshal(m.payload, &state) == nil && state.Active && state.Session.ID != ""
	})
	id := state.Session.ID
	late := subscribe(t, b.URL())
	waitFor(t, "the session retained for a late subscriber", 10*time.Second, func() bool {
		m, ok := late.lastOn("vigil/clinic-a/room-1/session")
		return ok && m.retained && strings.Contains(string(m.payload), id)
	})
	late.client.Disconnect(100)

	// Baseline: SpO2 and pulse from the oximeter, blood pressure on demand.
	ox.send(frame(97, 70, 0))
	resp, err := http.Post(ra.ep.HTTP+"/api/v1/devices/nibp-1/commands/nibp_start", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	waitFor(t, "the baseline blood pressure", 20*time.Second, func() bool { return len(sub.readings("nibp_systolic")) == 1 })
	for _, r := range sub.readings("spo2") {
		if r.Session == nil || *r.Session != id {
			t.Errorf("SpO2 reading without the session id: %+v", r.Session)
		}
	}
	send(`{"command":"dose","by":"RN Kim","id":"d1"}`, "d1")
	// The scheduled measurement 3 s after the dose, started by the agent.
	waitFor(t, "the scheduled blood pressure", 30*time.Second, func() bool { return len(sub.readings("nibp_systolic")) == 2 })
	ox.send(frame(96, 72, 0))
	time.Sleep(1200 * time.Millisecond) // the minimum observation (1 s)
	send(`{"command":"end","by":"RN Kim","id":"e1"}`, "e1")

	resp, err = http.Get(ra.ep.HTTP + "/api/v1/sessions/" + id)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Session struct {
			Baseline map[string]struct{ Value float64 } `json:"baseline"`
			Check    *struct {
				Pass bool `json:"pass"`
			} `json:"check"`
		} `json:"session"`
	}
	json.NewDecoder(resp.Body).Decode(&got)
	resp.Body.Close()
	if got.Session.Baseline["nibp_systolic"].Value != 128 || got.Session.Baseline["spo2"].Value != 97 {
		t.Errorf("baseline %+v", got.Session.Baseline)
	}
	if got.Session.Check == nil || !got.Session.Check.Pass {
		t.Errorf("end-of-session check %+v", got.Session.Check)
	}
	resp, err = http.Get(ra.ep.HTTP + "/api/v1/sessions/" + id + "/export?format=csv")
	if err != nil {
		t.Fatal(err)
	}
	csv, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if n := strings.Count(string(csv), id); n < 6 || !strings.Contains(string(csv), "nibp_systolic") {
		t.Errorf("export has %d rows of the session:\n%s", n, csv)
	}
	waitFor(t, "the retained session ended", 10*time.Second, func() bool {
		m, ok := sub.lastOn("vigil/clinic-a/room-1/session")
		return ok && strings.Contains(string(m.payload), `"active":false`)
	})
	sub.client.Disconnect(100)
}

// TestScheduledBloodPressureReminder: without an NIBP device that takes
// commands, a scheduled blood pressure that falls due reaches the nurses'
// channel as a medium advisory, and a late one as "missed".
func TestScheduledBloodPressureReminder(t *testing.T) {
	hook := newReceiver(t)
	ox := newFakeOximeter(t)
	dir := t.TempDir()
	writeHookSecret(t, dir)
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
session:
  first_nibp_after_dose: 3s
  nibp_interval: 1m
  nibp_grace: 2s
notify:
  channels:
    - name: nurses
      type: webhook
      url: %s/nurses
      secret_file: hook.secret
  routes:
    - priorities: [high, medium]
      channels: [nurses]
`, ox.link, dir, hook.srv.URL))
	ra := startAgent(t, cfg)
	post := func(action string) {
		t.Helper()
		resp, err := http.Post(ra.ep.HTTP+"/api/v1/session/"+action, "application/json", strings.NewReader(`{"by":"RN Kim"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: HTTP %d", action, resp.StatusCode)
		}
	}
	post("start")
	ox.send(frame(97, 70, 0))
	post("dose")
	waitFor(t, "the reminder at the nurses' channel", 15*time.Second, func() bool { return hook.has("nibp-due", "start", "") })
	waitFor(t, "the missed reading at the nurses' channel", 15*time.Second, func() bool { return hook.has("nibp-missed", "start", "") })
	hook.mu.Lock()
	for _, ev := range hook.got {
		if ev.AlarmID == "nibp-due" && ev.Priority != "medium" {
			t.Errorf("reminder priority %q, want medium", ev.Priority)
		}
	}
	hook.mu.Unlock()
}
