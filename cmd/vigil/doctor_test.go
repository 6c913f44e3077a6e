package main

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-monitor/vigil/agent/mqtt/testbroker"
)

// doctorFreeAddr is a loopback address whose port was free a moment ago.
func doctorFreeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// doctorPasswordBroker is a Mosquitto that lets in only user with password.
func doctorPasswordBroker(t *testing.T, user, password string) *testbroker.Mosquitto {
	t.Helper()
	bin, err := exec.LookPath("mosquitto_passwd")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("mosquitto_passwd not found (required when CI is set)")
		}
		t.Skip("mosquitto_passwd not found")
	}
	file := filepath.Join(t.TempDir(), "passwd")
	if out, err := exec.Command(bin, "-c", "-b", file, user, password).CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_passwd: %v\n%s", err, out)
	}
	return testbroker.StartMosquitto(t, testbroker.WithConfig("allow_anonymous false", "password_file "+file))
}

// checklistItem is one check of vigil doctor's output: its status line and
// the indented lines under it.
type checklistItem struct {
	mark, name, finding string
	under               []string
}

func (c checklistItem) fix() string {
	for _, l := range c.under {
		if f, ok := strings.CutPrefix(l, "fix: "); ok {
			return f
		}
	}
	return ""
}

// parseChecklist reads the plain-ASCII checklist (stdout is a pipe here).
func parseChecklist(t *testing.T, out string) map[string]checklistItem {
	t.Helper()
	items := map[string]checklistItem{}
	var last string
	for _, line := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(line, "[ok]  "), strings.HasPrefix(line, "[warn]"), strings.HasPrefix(line, "[FAIL]"):
			mark, rest := strings.Trim(line[:6], "[] "), line[7:]
			name, finding, ok := strings.Cut(rest, ": ")
			if !ok {
				t.Fatalf("checklist line without a name: %q", line)
			}
			items[name] = checklistItem{mark: mark, name: name, finding: finding}
			last = name
		case strings.HasPrefix(line, "       ") && last != "":
			it := items[last]
			it.under = append(it.under, strings.TrimSpace(line))
			items[last] = it
		case strings.ContainsAny(line, "✔✘"):
			t.Fatalf("terminal marks on a pipe: %q", line)
		}
	}
	return items
}

func writeSecret(t *testing.T, dir, name, content string) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestDoctorHealthySetup(t *testing.T) {
	broker := doctorPasswordBroker(t, "room-1", "agent-password")
	port := startSimulator(t, "normal")
	var hooks atomic.Int64
	receiver := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hooks.Add(1) }))
	defer receiver.Close()

	dir := t.TempDir()
	writeSecret(t, dir, "mqtt.pass", "agent-password\n")
	writeSecret(t, dir, "webhook.secret", "0123456789abcdef0123456789abcdef\n")
	listen := doctorFreeAddr(t)
	yaml := fmt.Sprintf(`site: clinic-a
room: room-1
devices:
  - id: oximeter-1
    driver: masimo-ascii
    port: %s
mqtt:
  url: %s
  username: room-1
  password_file: %s
http:
  listen: %s
store:
  path: %s
alarms:
  audit_log: %s
  clock_check: false
notify:
  channels:
    - name: audit-webhook
      type: webhook
      url: %s/hook
      secret_file: %s
  routes:
    - priorities: [high]
      channels: [audit-webhook]
`, port, broker.URL(), filepath.Join(dir, "mqtt.pass"), listen, filepath.Join(dir, "vigil.db"),
		filepath.Join(dir, "audit.jsonl"), receiver.URL, filepath.Join(dir, "webhook.secret"))
	cfg := writeSecret(t, dir, "vigil.yaml", yaml)
	startRunConfig(t, yaml)
	// Ready: listening, and connected to the broker with its credentials.
	waitUntil(t, "the agent ready", 30*time.Second, func() bool {
		resp, err := http.Get("http://" + listen + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})

	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	out, errOut, code := vigil(t, "doctor", "--config", cfg, "--user", me.Username)
	t.Logf("vigil doctor took %s:\n%s", time.Since(start).Round(time.Millisecond), out)
	if code != 0 {
		t.Errorf("exit %d on a healthy setup; stderr %s", code, errOut)
	}
	items := parseChecklist(t, out)
	want := []string{"config", "device oximeter-1", "broker", "http", "channel audit-webhook", "clock", "store disk"}
	if len(items) != len(want) {
		t.Errorf("%d checks, want %d (%v)", len(items), len(want), want)
	}
	for _, name := range want {
		it, ok := items[name]
		switch {
		case !ok:
			t.Errorf("no %q check", name)
		case name == "clock" && it.mark == "warn":
			// This machine need not run an NTP client.
		case it.mark != "ok":
			t.Errorf("%s: [%s] %s %v", name, it.mark, it.finding, it.under)
		}
	}
	for name, wantIn := range map[string]string{
		"device oximeter-1":     port + " -> /dev/pts/",
		"broker":                "CONNECT accepted as room-1",
		"http":                  "the agent answers on http://" + listen,
		"channel audit-webhook": "nothing sent",
		"store disk":            "free of",
	} {
		if !strings.Contains(items[name].finding, wantIn) {
			t.Errorf("%s: %q lacks %q", name, items[name].finding, wantIn)
		}
	}
	if strings.Contains(out, "agent-password") {
		t.Error("the output shows the MQTT password")
	}
	// The agent has nothing to notify (a normal patient, no clock alarm,
	// high priority only), and the doctor sends nothing.
	if n := hooks.Load(); n != 0 {
		t.Errorf("the webhook receiver got %d requests", n)
	}
}

func TestDoctorBrokenSetup(t *testing.T) {
	dir := t.TempDir()
	writeSecret(t, dir, "webhook.secret", "0123456789abcdef0123456789abcdef\n")
	missingPort := filepath.Join(dir, "ttyUSB0")
	brokerAddr := doctorFreeAddr(t)
	hookAddr := doctorFreeAddr(t)
	cfg := writeSecret(t, dir, "vigil.yaml", fmt.Sprintf(`site: clinic-a
room: room-1
devices:
  - id: oximeter-1
    driver: masimo-ascii
    port: %s
mqtt:
  url: tcp://%s
http:
  listen: %s
store:
  path: %s
notify:
  channels:
    - name: audit-webhook
      type: webhook
      url: http://%s/hook
      secret_file: %s
  routes:
    - priorities: [high, medium, low]
      channels: [audit-webhook]
`, missingPort, brokerAddr, doctorFreeAddr(t), filepath.Join(dir, "vigil.db"), hookAddr, filepath.Join(dir, "webhook.secret")))

	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	out, _, code := vigil(t, "doctor", "--config", cfg, "--user", me.Username)
	t.Logf("\n%s", out)
	if code != 1 {
		t.Errorf("exit %d on a broken setup, want 1", code)
	}
	items := parseChecklist(t, out)
	for name, c := range map[string]struct{ finding, fix string }{
		"device oximeter-1":     {missingPort + " does not exist", "vigil devices"},
		"broker":                {"nothing listens on " + brokerAddr + " (connection refused)", "systemctl start mosquitto"},
		"channel audit-webhook": {"nothing listens on " + hookAddr, "start the receiving service on " + hookAddr},
	} {
		it := items[name]
		if it.mark != "FAIL" || !strings.Contains(it.finding, c.finding) || !strings.Contains(it.fix(), c.fix) {
			t.Errorf("%s: [%s] %q, fix %q; want FAIL %q with a fix naming %q", name, it.mark, it.finding, it.fix(), c.finding, c.fix)
		}
	}
	// The agent is not running: a warning, not a failure.
	if it := items["http"]; it.mark != "warn" || !strings.Contains(it.finding, "not running") {
		t.Errorf("http: [%s] %s", it.mark, it.finding)
	}
	if !strings.Contains(out, "3 failures") {
		t.Errorf("the count line lacks 3 failures:\n%s", out)
	}

	// A password-protected broker and the wrong password.
	broker := doctorPasswordBroker(t, "room-1", "right-password")
	writeSecret(t, dir, "mqtt.pass", "wrong-password\n")
	cfg = writeSecret(t, dir, "bad-credentials.yaml", fmt.Sprintf(`site: clinic-a
room: room-1
devices:
  - id: oximeter-1
    driver: masimo-ascii
    port: %s
mqtt:
  url: %s
  username: room-1
  password_file: mqtt.pass
store:
  path: %s
`, missingPort, broker.URL(), filepath.Join(dir, "vigil.db")))
	out, _, code = vigil(t, "doctor", "--config", cfg, "--user", me.Username)
	t.Logf("\n%s", out)
	if code != 1 {
		t.Errorf("exit %d with a wrong password, want 1", code)
	}
	it := parseChecklist(t, out)["broker"]
	if it.mark != "FAIL" || !strings.Contains(it.finding, "refused user room-1: not authorised") || !strings.Contains(it.fix(), "mqtt.password_file") {
		t.Errorf("broker: [%s] %q, fix %q", it.mark, it.finding, it.fix())
	}
	if strings.Contains(out, "wrong-password") {
		t.Error("the output shows the password")
	}

	// An invalid config: every problem, and the clock still checked.
	bad := writeSecret(t, dir, "bad.yaml", "site: clinic-a\nroom: Room 1\ndevices:\n  - id: ox\n    driver: nonin-df9\n    port: /dev/ttyUSB0\n")
	out, _, code = vigil(t, "doctor", "--config", bad)
	if code != 1 || !strings.Contains(out, "[FAIL] config: "+bad+" is not valid") ||
		!strings.Contains(out, bad+":2: room:") || !strings.Contains(out, bad+":5: devices[0].driver:") ||
		!strings.Contains(out, "clock: ") {
		t.Errorf("invalid config: exit %d\n%s", code, out)
	}

	_, errOut, code := vigil(t, "doctor")
	if code != 1 || !strings.Contains(errOut, "--config") {
		t.Errorf("doctor without --config: exit %d, %q", code, errOut)
	}
}
