package alertmanager

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/vigil-monitor/vigil/agent/alarm"
	"github.com/vigil-monitor/vigil/agent/notify"
)

// alertmanagerBinary is Debian's package path (scripts/test.sh installs it
// in CI).
const alertmanagerBinary = "/usr/bin/prometheus-alertmanager"

// minimalConfig routes everything to a receiver with no integrations: the
// test looks at the alert store, not at notifications.
const minimalConfig = `route:
  receiver: "null"
receivers:
  - name: "null"
`

// lockedBuffer collects the process output for the failure log.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// startAlertmanager runs a real Alertmanager on a free loopback port and
// returns its base URL; cleanup kills and reaps it.
func startAlertmanager(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat(alertmanagerBinary); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI is set and %s is missing: install prometheus-alertmanager (scripts/test.sh does)", alertmanagerBinary)
		}
		t.Skipf("%s not installed", alertmanagerBinary)
	}
	dir := t.TempDir()
	conf := filepath.Join(dir, "alertmanager.yml")
	if err := os.WriteFile(conf, []byte(minimalConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()

	output := &lockedBuffer{}
	cmd := exec.Command(alertmanagerBinary,
		"--config.file="+conf,
		"--storage.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr,
		"--cluster.listen-address=", // no gossip: a lone test instance
	)
	cmd.Stdout, cmd.Stderr = output, output
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting alertmanager: %v", err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("alertmanager output:\n%s", output.String())
		}
	})

	base := "http://" + addr
	deadline := time.Now().Add(30 * time.Second)
	for {
		select {
		case err := <-exited:
			exited <- err // for the cleanup
			t.Fatalf("alertmanager exited early (%v):\n%s", err, output.String())
		default:
		}
		resp, err := http.Get(base + "/-/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return base
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("alertmanager not ready after 30 s:\n%s", output.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// gettableAlert is the part of GET /api/v2/alerts the test reads.
type gettableAlert struct {
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
	StartsAt    time.Time         `json:"startsAt"`
	Status      struct {
		State string `json:"state"`
	} `json:"status"`
}

func listAlerts(t *testing.T, base string) []gettableAlert {
	t.Helper()
	resp, err := http.Get(base + "/api/v2/alerts")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /api/v2/alerts: HTTP %d", resp.StatusCode)
	}
	var alerts []gettableAlert
	if err := json.NewDecoder(resp.Body).Decode(&alerts); err != nil {
		t.Fatal(err)
	}
	return alerts
}

// waitFor polls the alert list until check accepts it.
func waitFor(t *testing.T, base, what string, check func([]gettableAlert) bool) []gettableAlert {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		alerts := listAlerts(t, base)
		if check(alerts) {
			return alerts
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 30 s, %s; alerts: %+v", what, alerts)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestRealAlertmanagerFiresAndResolves(t *testing.T) {
	base := startAlertmanager(t)
	n, err := New(Config{Name: "am", URL: base}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ev := spo2Event(alarm.PhaseStart)
	// Onset in the recent past on the real clock, so Alertmanager keeps it.
	ev.Onset = time.Now().Add(-20 * time.Second).Truncate(time.Millisecond)
	ev.Sent = time.Now()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if res := n.Notify(ctx, ev); res.Verdict != notify.Delivered {
		t.Fatalf("start: %v %v", res.Verdict, res.Err)
	}
	wantLabels := map[string]string{
		"alertname": "VigilSpo2LowMedium", "alarm_id": "spo2-low-medium/oximeter-1",
		"site": "clinic-a", "room": "room-2", "device": "oximeter-1",
		"metric": "spo2", "priority": "medium", "kind": "physiological",
	}
	alerts := waitFor(t, base, "no active Vigil alert", func(as []gettableAlert) bool {
		return len(as) == 1 && as[0].Status.State == "active"
	})
	got := alerts[0]
	if fmt.Sprint(got.Labels) != fmt.Sprint(wantLabels) {
		t.Errorf("labels\n got %v\nwant %v", got.Labels, wantLabels)
	}
	if got.Annotations["summary"] != ev.Text || got.Annotations["value"] != "88" || got.Annotations["limit"] != "90" {
		t.Errorf("annotations = %v", got.Annotations)
	}
	if !got.StartsAt.Equal(ev.Onset) {
		t.Errorf("startsAt = %v, want the onset %v", got.StartsAt, ev.Onset)
	}

	end := spo2Event(alarm.PhaseEnd)
	end.Onset, end.Sent, end.State = ev.Onset, time.Now(), alarm.Resolved
	if res := n.Notify(ctx, end); res.Verdict != notify.Delivered {
		t.Fatalf("end: %v %v", res.Verdict, res.Err)
	}
	// The v2 API lists only alerts whose endsAt is still ahead: a resolved
	// alert drops out of the list.
	waitFor(t, base, "the alert is still listed after its end", func(as []gettableAlert) bool {
		return len(as) == 0
	})
}

func TestRealAlertmanagerAcceptsResend(t *testing.T) {
	base := startAlertmanager(t)
	n, err := New(Config{Name: "am", URL: base, ResendEvery: 20 * time.Millisecond}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); n.RunResend(ctx) }()
	defer func() { cancel(); <-done }()

	ev := spo2Event(alarm.PhaseStart)
	ev.Onset = time.Now().Add(-time.Minute).Truncate(time.Millisecond)
	if res := n.Notify(ctx, ev); res.Verdict != notify.Delivered {
		t.Fatalf("start: %v %v", res.Verdict, res.Err)
	}
	waitFor(t, base, "no active alert", func(as []gettableAlert) bool {
		return len(as) == 1 && as[0].Status.State == "active"
	})
	// Re-posts keep one alert, with its first onset, active.
	time.Sleep(200 * time.Millisecond)
	alerts := waitFor(t, base, "not exactly one active alert", func(as []gettableAlert) bool {
		return len(as) == 1 && as[0].Status.State == "active"
	})
	if !alerts[0].StartsAt.Equal(ev.Onset) {
		t.Errorf("startsAt = %v after re-posts, want %v", alerts[0].StartsAt, ev.Onset)
	}
	end := spo2Event(alarm.PhaseEnd)
	end.Onset = ev.Onset
	if res := n.Notify(ctx, end); res.Verdict != notify.Delivered {
		t.Fatalf("end: %v %v", res.Verdict, res.Err)
	}
	waitFor(t, base, "the alert is still listed after its end", func(as []gettableAlert) bool { return len(as) == 0 })
	// No re-post brings it back.
	time.Sleep(200 * time.Millisecond)
	if as := listAlerts(t, base); len(as) != 0 {
		t.Errorf("ended alert came back: %+v", as)
	}
}
