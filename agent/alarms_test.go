package agent_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-monitor/vigil/agent/config"
)

// webhookEvent is the part of the webhook payload the test checks.
type webhookEvent struct {
	AlarmID  string   `json:"alarm_id"`
	Phase    string   `json:"phase"`
	State    string   `json:"state"`
	Priority string   `json:"priority"`
	Metric   string   `json:"metric"`
	Value    *float64 `json:"value"`
	Limit    *float64 `json:"limit"`
	Text     string   `json:"text"`
	Device   string   `json:"device"`
	EventID  string   `json:"event_id"`
	AckURL   string   `json:"ack_url"`
}

// TestDesaturationAlarmEndToEnd: a desaturation read from the oximeter
// raises the SpO2 alarm, which is published on MQTT and delivered to the
// configured webhook; acknowledging it through the HTTP API and the recovery
// end it, and the end is delivered too.
func TestDesaturationAlarmEndToEnd(t *testing.T) {
	var mu sync.Mutex
	var got []webhookEvent
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var ev webhookEvent
		if json.Unmarshal(b, &ev) == nil && r.Header.Get("X-Vigil-Signature") != "" {
			mu.Lock()
			got = append(got, ev)
			mu.Unlock()
		}
	}))
	defer hook.Close()
	events := func() []webhookEvent {
		mu.Lock()
		defer mu.Unlock()
		return append([]webhookEvent(nil), got...)
	}

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
alarms:
  clock_check: false
  rules:
    - name: spo2-low
      metric: spo2
      below: 90
      priority: medium
      delay: 0s
      clear_delay: 0s
notify:
  channels:
    - name: audit-webhook
      type: webhook
      url: %s/vigil
      secret_file: hook.secret
  routes:
    - priorities: [high, medium, low]
      channels: [audit-webhook]
`, ox.link, hook.URL))
	ra := startAgent(t, cfg)
	sub := subscribe(t, ra.ep.MQTT)

	ox.send(frame(97, 70, 0))
	ox.send(frame(86, 70, 0))
	waitFor(t, "the SpO2 alarm at the webhook", 15*time.Second, func() bool {
		for _, ev := range events() {
			if ev.AlarmID == "spo2-low/oximeter-1" && ev.Phase == "start" {
				return true
			}
		}
		return false
	})
	var start webhookEvent
	for _, ev := range events() {
		if ev.Phase == "start" {
			start = ev
		}
	}
	if start.Priority != "medium" || start.Metric != "spo2" || start.Value == nil || *start.Value != 86 ||
		start.Limit == nil || *start.Limit != 90 || !strings.HasPrefix(start.Text, "**") || start.Device != "oximeter-1" {
		t.Errorf("alarm start = %+v", start)
	}
	waitFor(t, "the alarm on MQTT", 10*time.Second, func() bool {
		m, ok := sub.lastOn("vigil/clinic-a/room-1/alarms/active")
		return ok && strings.Contains(string(m.payload), "spo2-low/oximeter-1")
	})
	late := subscribe(t, ra.ep.MQTT)
	waitFor(t, "the active set retained for a late subscriber", 10*time.Second, func() bool {
		m, ok := late.lastOn("vigil/clinic-a/room-1/alarms/active")
		return ok && m.retained && strings.Contains(string(m.payload), "spo2-low/oximeter-1")
	})

	waitFor(t, "the alarm in the metrics", 10*time.Second, func() bool {
		_, body := httpGet(t, ra.ep.HTTP+"/metrics")
		return strings.Contains(body, `vigil_alarm_active{alarm="spo2-low/oximeter-1",device="oximeter-1",kind="physiological",priority="medium",room="room-1",site="clinic-a"} 1`) &&
			strings.Contains(body, `vigil_notifications_total{channel="audit-webhook",result="delivered",room="room-1",site="clinic-a"} `) &&
			strings.Contains(body, `vigil_alarm_notify_latency_seconds_count{room="room-1",site="clinic-a"} `)
	})

	resp, err := http.Post(ra.ep.HTTP+"/api/v1/alarms/ack/spo2-low/oximeter-1?by=nurse-station", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("acknowledge: %d", resp.StatusCode)
	}
	ox.send(frame(97, 70, 0))
	waitFor(t, "the alarm's end at the webhook", 15*time.Second, func() bool {
		for _, ev := range events() {
			if ev.AlarmID == "spo2-low/oximeter-1" && ev.Phase == "end" {
				return true
			}
		}
		return false
	})
	_, body := httpGet(t, ra.ep.HTTP+"/api/v1/alarms")
	if strings.Contains(body, "spo2-low/oximeter-1") {
		t.Errorf("the alarm is still active after recovery: %s", body)
	}
}

// loadConfig writes yaml as dir/vigil.yaml and loads it (relative secret
// files resolve in dir).
func loadConfig(t *testing.T, dir, yaml string) *config.Config {
	t.Helper()
	path := filepath.Join(dir, "vigil.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// writeHookSecret writes the webhook channels' HMAC key as dir/hook.secret.
func writeHookSecret(t *testing.T, dir string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "hook.secret"), []byte("a-long-enough-webhook-secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}
