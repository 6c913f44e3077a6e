package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

func TestNIBPStartCommand(t *testing.T) {
	var (
		mu                 sync.Mutex
		gotPath, gotMethod string
		busy               atomic.Bool
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		gotPath, gotMethod = r.URL.Path, r.Method
		mu.Unlock()
		if busy.Load() {
			w.WriteHeader(http.StatusConflict)
			w.Write([]byte(`{"device":"nibp-1","command":"nibp_start","ok":false,"error":"suntech: a measurement is running"}`))
			return
		}
		w.Write([]byte(`{"device":"nibp-1","command":"nibp_start","ok":true}`))
	}))
	defer srv.Close()

	out, errOut, code := vigil(t, "nibp", "start", "--device", "nibp-1", "--addr", srv.URL)
	mu.Lock()
	method, path := gotMethod, gotPath
	mu.Unlock()
	if code != 0 || method != http.MethodPost || path != "/api/v1/devices/nibp-1/commands/nibp_start" ||
		!strings.Contains(out, "nibp_start sent to nibp-1") {
		t.Errorf("exit %d, %s %s, stdout %q, stderr %q", code, method, path, out, errOut)
	}

	busy.Store(true)
	_, errOut, code = vigil(t, "nibp", "start", "--device", "nibp-1", "--addr", strings.TrimPrefix(srv.URL, "http://"))
	if code != 1 || !strings.Contains(errOut, "a measurement is running") {
		t.Errorf("busy: exit %d, stderr %q", code, errOut)
	}

	// The agent's address comes from its config file.
	cfg := filepath.Join(t.TempDir(), "vigil.yaml")
	os.WriteFile(cfg, []byte("site: a\nroom: b\ndevices:\n  - id: nibp-1\n    driver: suntech-advantage\n    port: /dev/ttyUSB0\nhttp:\n  listen: "+strings.TrimPrefix(srv.URL, "http://")+"\n"), 0o600)
	busy.Store(false)
	_, errOut, code = vigil(t, "nibp", "start", "--device", "nibp-1", "--config", cfg)
	if code != 0 {
		t.Errorf("via --config: exit %d, stderr %q", code, errOut)
	}

	_, errOut, code = vigil(t, "nibp", "start", "--addr", srv.URL)
	if code != 1 || !strings.Contains(errOut, "--device") {
		t.Errorf("without --device: exit %d, %q", code, errOut)
	}
	srv.Close()
	_, errOut, code = vigil(t, "nibp", "start", "--device", "nibp-1", "--addr", srv.URL)
	if code != 1 || !strings.Contains(errOut, "cannot reach the agent") {
		t.Errorf("agent down: exit %d, %q", code, errOut)
	}
}
