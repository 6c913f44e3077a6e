package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

func TestAlarmsListAndAck(t *testing.T) {
	var mu sync.Mutex
	var acked []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/api/v1/alarms":
			w.Write([]byte(`[{"alarm_id":"spo2-low-medium/oximeter-1","priority":"medium","kind":"physiological","state":"active","text":"** SpO2 86 % at or below 90","onset":"2026-11-26T10:00:00Z"}]`))
		case r.Method == http.MethodPost && strings.HasPrefix(r.URL.Path, "/api/v1/alarms/ack/"):
			mu.Lock()
			acked = append(acked, strings.TrimPrefix(r.URL.Path, "/api/v1/alarms/ack/")+" by "+r.URL.Query().Get("by"))
			mu.Unlock()
			if strings.Contains(r.URL.Path, "unknown") {
				w.WriteHeader(http.StatusNotFound)
				w.Write([]byte(`{"ok":false,"error":"unknown alarm"}`))
				return
			}
			w.Write([]byte(`{"ok":true}`))
		case r.Method == http.MethodGet && r.URL.Path == "/api/v1/alarms/pause":
			w.Write([]byte(`{"ok":true,"paused":true,"until":"2026-11-26T10:02:00Z"}`))
		case r.Method == http.MethodPost && (r.URL.Path == "/api/v1/alarms/pause" || r.URL.Path == "/api/v1/alarms/resume"):
			mu.Lock()
			acked = append(acked, r.URL.Path+"?"+r.URL.RawQuery)
			mu.Unlock()
			if strings.HasSuffix(r.URL.Path, "resume") {
				w.Write([]byte(`{"ok":true,"paused":false,"until":null}`))
				return
			}
			w.Write([]byte(`{"ok":true,"paused":true,"until":"2026-11-26T10:02:00Z"}`))
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}))
	defer srv.Close()

	out, errOut, code := vigil(t, "alarms", "list", "--addr", srv.URL)
	if code != 0 || !strings.Contains(out, "spo2-low-medium/oximeter-1") || !strings.Contains(out, "medium") || !strings.Contains(out, "** SpO2 86") {
		t.Errorf("list: exit %d, %q %q", code, out, errOut)
	}
	if !strings.Contains(out, "Notifications paused until") {
		t.Errorf("list does not show the pause: %q", out)
	}
	out, errOut, code = vigil(t, "alarms", "ack", "spo2-low-medium/oximeter-1", "--by", "nurse a", "--addr", srv.URL)
	if code != 0 || !strings.Contains(out, "acknowledged by nurse a") {
		t.Errorf("ack: exit %d, %q %q", code, out, errOut)
	}
	mu.Lock()
	if len(acked) != 1 || acked[0] != "spo2-low-medium/oximeter-1 by nurse a" {
		t.Errorf("agent saw %q", acked)
	}
	mu.Unlock()
	_, errOut, code = vigil(t, "alarms", "ack", "unknown/x", "--by", "nurse-a", "--addr", srv.URL)
	if code != 1 || !strings.Contains(errOut, "unknown alarm") {
		t.Errorf("unknown alarm: exit %d, %q", code, errOut)
	}
	_, errOut, code = vigil(t, "alarms", "ack", "spo2-low-medium/oximeter-1", "--addr", srv.URL)
	if code != 1 || !strings.Contains(errOut, "--by") {
		t.Errorf("without --by: exit %d, %q", code, errOut)
	}

	out, errOut, code = vigil(t, "alarms", "pause", "--for", "90s", "--by", "nurse-a", "--addr", srv.URL)
	if code != 0 || !strings.Contains(out, "Notifications paused until") {
		t.Errorf("pause: exit %d, %q %q", code, out, errOut)
	}
	out, errOut, code = vigil(t, "alarms", "resume", "--by", "nurse-a", "--addr", srv.URL)
	if code != 0 || !strings.Contains(out, "not paused") {
		t.Errorf("resume: exit %d, %q %q", code, out, errOut)
	}
	_, errOut, code = vigil(t, "alarms", "pause", "--addr", srv.URL)
	if code != 1 || !strings.Contains(errOut, "--by") {
		t.Errorf("pause without --by: exit %d, %q", code, errOut)
	}
	mu.Lock()
	defer mu.Unlock()
	if n := len(acked); n != 4 || acked[2] != "/api/v1/alarms/pause?by=nurse-a&for=1m30s" || acked[3] != "/api/v1/alarms/resume?by=nurse-a" {
		t.Errorf("agent saw %q", acked)
	}
}
