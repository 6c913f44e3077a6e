package agent

import (
	"encoding/json"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-monitor/vigil/agent/alarm"
	"github.com/vigil-monitor/vigil/agent/audit"
	"github.com/vigil-monitor/vigil/agent/clocksync"
	"github.com/vigil-monitor/vigil/agent/config"
)

// recordingPublisher keeps what the alarm path publishes.
type recordingPublisher struct {
	mu     sync.Mutex
	events []map[string]any
}

func (p *recordingPublisher) PublishAlarmEvent(b []byte) {
	var ev map[string]any
	json.Unmarshal(b, &ev)
	p.mu.Lock()
	p.events = append(p.events, ev)
	p.mu.Unlock()
}

func (p *recordingPublisher) PublishActiveAlarms([]byte) {}

// started reports the alarm ids started so far.
func (p *recordingPublisher) started() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var ids []string
	for _, ev := range p.events {
		if ev["phase"] == "start" {
			ids = append(ids, ev["alarm_id"].(string)+" "+ev["priority"].(string))
		}
	}
	return ids
}

func newTestAlarms(t *testing.T, auditLog string) (*alarms, *recordingPublisher) {
	t.Helper()
	cfg, err := config.Parse("test.yaml", []byte(`site: clinic-a
room: room-1
devices:
  - id: oximeter-1
    driver: masimo-ascii
    port: /dev/null
alarms:
  audit_log: `+auditLog+`
`))
	if err != nil {
		t.Fatal(err)
	}
	pub := &recordingPublisher{}
	a, err := newAlarms(cfg, pub, prometheus.NewRegistry(), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.closeAudit)
	return a, pub
}

// TestAgentTechnicalAlarms: the agent's own faults are technical alarms:
// the broker unreachable for longer than its delay, the clock not
// synchronised, the audit log not writable (a full disk: /dev/full).
func TestAgentTechnicalAlarms(t *testing.T) {
	a, pub := newTestAlarms(t, filepath.Join(t.TempDir(), "audit.jsonl"))

	a.mqttConnection(false)
	a.handle(a.engine.Tick(time.Now().Add(29 * time.Second)))
	if got := pub.started(); len(got) != 0 {
		t.Errorf("alarm before the 30 s delay: %v", got)
	}
	a.handle(a.engine.Tick(time.Now().Add(31 * time.Second)))
	a.checkClock(func() (clocksync.Status, error) { return clocksync.Status{Synchronised: false}, nil })
	want := "mqtt-disconnected medium,clock-unsynchronised low"
	if got := strings.Join(pub.started(), ","); got != want {
		t.Errorf("started %q, want %q", got, want)
	}
	a.mqttConnection(true)
	a.checkClock(func() (clocksync.Status, error) { return clocksync.Status{Synchronised: true}, nil })
	for _, ev := range a.engine.Active() {
		if ev.Kind == alarm.Technical {
			t.Errorf("still active after recovery: %s", ev.AlarmID)
		}
	}

	full, pub := newTestAlarms(t, "/dev/full")
	full.record(audit.AgentEntry("started", time.Now()))
	if got := strings.Join(pub.started(), ","); got != "storage-failing medium" {
		t.Errorf("audit log on a full disk: started %q", got)
	}
}
