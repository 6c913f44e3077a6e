package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// TestNotifyTest: `vigil notify test` sends a marked test message through
// each channel, ends it, and reports each channel's verdict; a failing
// channel makes the exit status 1.
func TestNotifyTest(t *testing.T) {
	var mu sync.Mutex
	var hooks []string
	webhookSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		hooks = append(hooks, string(b))
		mu.Unlock()
		if r.Header.Get("X-Vigil-Signature") == "" {
			w.WriteHeader(http.StatusBadRequest)
		}
	}))
	defer webhookSrv.Close()
	ntfySrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer ntfySrv.Close()

	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "webhook.secret"), []byte("0123456789abcdef0123\n"), 0o600)
	cfg := filepath.Join(dir, "vigil.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`site: clinic-a
room: room-1
devices:
  - id: ox
    driver: masimo-ascii
    port: /dev/ttyUSB0
notify:
  channels:
    - name: audit-webhook
      type: webhook
      url: %s/vigil
      secret_file: webhook.secret
    - name: nurses-ntfy
      type: ntfy
      url: %s/room-1
`, webhookSrv.URL, ntfySrv.URL)), 0o600)

	out, errOut, code := vigil(t, "notify", "test", "--config", cfg, "--channel", "audit-webhook")
	if code != 0 || !strings.Contains(out, "audit-webhook") || !strings.Contains(out, "delivered") {
		t.Errorf("webhook only: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	mu.Lock()
	if len(hooks) != 2 || !strings.Contains(hooks[0], "TEST") || !strings.Contains(hooks[0], `"phase":"start"`) || !strings.Contains(hooks[1], `"phase":"end"`) {
		t.Errorf("webhook received %q, want a TEST start and its end", hooks)
	}
	mu.Unlock()

	out, errOut, code = vigil(t, "notify", "test", "--config", cfg)
	if code != 1 || !strings.Contains(out, "nurses-ntfy") || !strings.Contains(out, "retry") || !strings.Contains(errOut, "1 of 2 channel(s) did not deliver") {
		t.Errorf("all channels: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	_, errOut, code = vigil(t, "notify", "test", "--config", cfg, "--channel", "nope")
	if code != 1 || !strings.Contains(errOut, `no channel named "nope"`) {
		t.Errorf("unknown channel: exit %d, %q", code, errOut)
	}
}
