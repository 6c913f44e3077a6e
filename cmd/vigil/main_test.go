package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/vigil-monitor/vigil/agent/mqtt/testbroker"
)

// vigilBin is the binary under test, built once: signals, exit codes and the
// MQTT Last Will are properties of a real process.
var vigilBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "vigil-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	// Agents started by the tests keep their audit log in the default
	// place, $STATE_DIRECTORY/audit.jsonl, here inside this run's directory.
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o750); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	os.Setenv("STATE_DIRECTORY", state)
	// A race-built binary waits a second at every exit by default; the
	// tests run it hundreds of times.
	os.Setenv("GORACE", "atexit_sleep_ms=0")
	vigilBin = filepath.Join(dir, "vigil")
	build := exec.Command("go", "build", "-race", "-o", vigilBin, ".")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building vigil:", err)
		os.Exit(2)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func vigil(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command(vigilBin, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = ee.ExitCode()
	default:
		t.Fatalf("vigil %v: %v", args, err)
	}
	return out.String(), errb.String(), code
}

func TestHelpForEveryCommand(t *testing.T) {
	for _, args := range [][]string{
		{"--help"}, {"run", "--help"}, {"demo", "--help"}, {"config", "check", "--help"},
		{"simulate", "--help"}, {"devices", "--help"}, {"version", "--help"}, {"completion", "bash"},
		{"doctor", "--help"}, {"session", "--help"}, {"session", "start", "--help"}, {"alarms", "pause", "--help"},
	} {
		out, errOut, code := vigil(t, args...)
		if code != 0 || len(out) < 100 {
			t.Errorf("vigil %v: exit %d, %d bytes of help; stderr %s", args, code, len(out), errOut)
		}
	}
	out, _, _ := vigil(t, "simulate", "--help")
	if !strings.Contains(out, "masimo-ascii") || !strings.Contains(out, "desaturation") {
		t.Errorf("simulate --help does not list drivers and scenarios:\n%s", out)
	}
}

func TestVersion(t *testing.T) {
	out, _, code := vigil(t, "version")
	if code != 0 || !strings.HasPrefix(out, "vigil dev (revision ") {
		t.Errorf("version: exit %d, %q", code, out)
	}
}

func TestLogFlagsRejectNonsense(t *testing.T) {
	_, errOut, code := vigil(t, "--log-level", "loud", "version")
	if code != 1 || !strings.Contains(errOut, "--log-level") {
		t.Errorf("bad --log-level: exit %d, %q", code, errOut)
	}
	_, errOut, code = vigil(t, "--log-format", "xml", "version")
	if code != 1 || !strings.Contains(errOut, "--log-format") {
		t.Errorf("bad --log-format: exit %d, %q", code, errOut)
	}
}

func TestConfigCheck(t *testing.T) {
	out, errOut, code := vigil(t, "config", "check", "../../configs/vigil.yaml")
	if code != 0 || !strings.Contains(out, "OK") {
		t.Errorf("example config: exit %d, stdout %q, stderr %q", code, out, errOut)
	}

	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("site: clinic-a\nroom: Room 1\ndevices:\n  - id: ox\n    driver: nonin-df9\n    port: /dev/ttyUSB0\n  - id: ox-2\n    driver: masimo-ascii\n    port: /dev/ttyUSB1\n    colour: red\n"), 0o600)
	_, errOut, code = vigil(t, "config", "check", bad)
	if code != 1 {
		t.Errorf("bad config: exit %d, want 1", code)
	}
	for _, want := range []string{
		bad + ":2: room:",
		bad + ":5: devices[0].driver: unknown driver \"nonin-df9\"",
		bad + ":10: devices[1].colour:",
		"problem(s) found",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("config check output lacks %q:\n%s", want, errOut)
		}
	}

	_, errOut, code = vigil(t, "config", "check", filepath.Join(t.TempDir(), "missing.yaml"))
	if code != 1 || !strings.Contains(errOut, "missing.yaml") {
		t.Errorf("missing file: exit %d, %q", code, errOut)
	}
	_, errOut, code = vigil(t, "run")
	if code != 1 || !strings.Contains(errOut, "--config") {
		t.Errorf("run without --config: exit %d, %q", code, errOut)
	}
}

// lineReader hands out a process's stdout line by line.
func lineReader(t *testing.T, cmd *exec.Cmd) <-chan string {
	t.Helper()
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 100)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(pipe)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	return lines
}

// simulatorDriver is the driver startSimulator plays.
var simulatorDriver = "masimo-ascii"

// startSimulator runs `vigil simulate` and returns the path it prints first.
func startSimulator(t *testing.T, scenario string) string {
	t.Helper()
	link := filepath.Join(t.TempDir(), "oximeter")
	cmd := exec.Command(vigilBin, "simulate", simulatorDriver, "--scenario", scenario, "--link", link)
	cmd.Stderr = &bytes.Buffer{}
	lines := lineReader(t, cmd)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	select {
	case first := <-lines:
		if !strings.HasPrefix(first, "/dev/pts/") {
			t.Fatalf("simulate's first line = %q, want a /dev/pts path", first)
		}
		if target, err := os.Readlink(link); err != nil || target != first {
			t.Fatalf("--link %s -> %q (%v), want %s", link, target, err, first)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("simulate printed nothing")
	}
	return link
}

type statusWatcher struct {
	mu   sync.Mutex
	msgs []string
}

func (w *statusWatcher) last() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.msgs) == 0 {
		return ""
	}
	return w.msgs[len(w.msgs)-1]
}

func watchStatus(t *testing.T, url, topic string) *statusWatcher {
	t.Helper()
	w := &statusWatcher{}
	c := paho.NewClient(paho.NewClientOptions().AddBroker(url).SetClientID("status-watcher").SetOrderMatters(true))
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("watcher connect: %v", tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(100) })
	tok := c.Subscribe(topic, 1, func(_ paho.Client, m paho.Message) {
		w.mu.Lock()
		w.msgs = append(w.msgs, string(m.Payload()))
		w.mu.Unlock()
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	return w
}

func waitUntil(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s", timeout, what)
}

// runningProcess is a `vigil run` under test, with its combined output.
type runningProcess struct {
	*exec.Cmd
	mu  sync.Mutex
	out bytes.Buffer
}

func (p *runningProcess) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *runningProcess) logs() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

func startRun(t *testing.T, port, brokerURL string) *runningProcess {
	t.Helper()
	return startRunConfig(t, fmt.Sprintf(`site: clinic-a
room: room-1
devices:
  - id: oximeter-1
    driver: masimo-ascii
    port: %s
mqtt:
  url: %s
  keep_alive: 1s
http:
  listen: 127.0.0.1:0
`, port, brokerURL))
}

func startRunConfig(t *testing.T, yaml string) *runningProcess {
	t.Helper()
	cfg := filepath.Join(t.TempDir(), "vigil.yaml")
	os.WriteFile(cfg, []byte(yaml), 0o600)
	p := &runningProcess{Cmd: exec.Command(vigilBin, "run", "--config", cfg, "--log-format", "json")}
	p.Stdout, p.Stderr = p, p
	if err := p.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if p.ProcessState == nil {
			p.Process.Kill()
			p.Wait()
		}
		if t.Failed() {
			t.Logf("vigil run output:\n%s", p.logs())
		}
	})
	return p
}

// TestRunStopsCleanlyOnSIGTERM: the daemon closes its devices, sets the room
// offline on MQTT and exits 0.
func TestRunStopsCleanlyOnSIGTERM(t *testing.T) {
	b := testbroker.StartMosquitto(t)
	port := startSimulator(t, "normal")
	status := watchStatus(t, b.URL(), "vigil/clinic-a/room-1/status")
	cmd := startRun(t, port, b.URL())
	waitUntil(t, "online status", 20*time.Second, func() bool { return strings.Contains(status.last(), `"online"`) })

	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("vigil run after SIGTERM: %v, want exit 0", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("vigil run did not stop within 20s of SIGTERM")
	}
	waitUntil(t, "offline status", 10*time.Second, func() bool { return strings.Contains(status.last(), `"offline"`) })
}

// TestLastWillWhenKilled: an agent that dies without a word (SIGKILL, power
// cut) is reported offline by the broker, through the MQTT Last Will, once
// its keep-alive (1 s here) runs out.
func TestLastWillWhenKilled(t *testing.T) {
	b := testbroker.StartMosquitto(t)
	port := startSimulator(t, "normal")
	status := watchStatus(t, b.URL(), "vigil/clinic-a/room-1/status")
	cmd := startRun(t, port, b.URL())
	waitUntil(t, "online status", 20*time.Second, func() bool { return strings.Contains(status.last(), `"online"`) })

	cmd.Process.Kill()
	cmd.Wait()
	waitUntil(t, "Last Will offline status", 20*time.Second, func() bool { return strings.Contains(status.last(), `"offline"`) })
}
