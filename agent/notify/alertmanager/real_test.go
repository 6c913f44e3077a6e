package alertmanager

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/vigil-monitor/vigil/agent/alarm"
	"github.com/vigil-monitor/vigil/agent/notify"
	"github.com/vigil-monitor/vigil/agent/notify/alertmanager/amtest"
)

// startAlertmanager runs a real Alertmanager (amtest).
func startAlertmanager(t *testing.T) string { return amtest.Start(t) }

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
