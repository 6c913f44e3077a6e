package exec

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/vigil-monitor/vigil/agent/alarm"
	"github.com/vigil-monitor/vigil/agent/notify"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func ptr(v float64) *float64 { return &v }

func spo2Event() alarm.Event {
	session := "s-1"
	return alarm.Event{
		AlarmID: "spo2-low-high/oximeter-1", EventID: "ev-9", Phase: alarm.PhaseStart,
		Kind: alarm.Physiological, Priority: alarm.High, State: alarm.Active,
		Metric: "spo2", Value: ptr(84.5), Unit: "%", Limit: ptr(85), Condition: "below",
		Text: "*** SpO2 84.5 % below 85 %", Site: "clinic-a", Room: "room-2", Device: "oximeter-1",
		Session: &session,
		Onset:   time.Date(2025, 3, 4, 10, 15, 30, 0, time.UTC),
		Sent:    time.Date(2025, 3, 4, 10, 15, 45, 250_000_000, time.UTC),
		AckURL:  "https://vigil.local/ack/abc",
	}
}

// script writes body as a /bin/sh script in a temp dir and returns its
// path.
func script(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "notify.sh")
	if err := os.WriteFile(p, []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func newNotifier(t *testing.T, timeout time.Duration, argv ...string) *Notifier {
	t.Helper()
	n, err := New(Config{Name: "speaker", Command: argv, Timeout: timeout}, nil)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	return n
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestEnvironmentIsExact(t *testing.T) {
	t.Setenv("VIGIL_TEST_SECRET", "must-not-leak")
	t.Setenv("XDG_RUNTIME_DIR", "/run/user/1000")
	out := filepath.Join(t.TempDir(), "env")
	n := newNotifier(t, 0, "/bin/sh", script(t, `exec /usr/bin/env -0 > "$1"`), out)
	ev := spo2Event()
	ev.Text = "*** SpO2 84.5 % below 85 %\x00"
	if res := n.Notify(context.Background(), ev); res.Verdict != notify.Delivered {
		t.Fatalf("result %v %v", res.Verdict, res.Err)
	}
	got := map[string]string{}
	for _, kv := range strings.Split(strings.TrimSuffix(readFile(t, out), "\x00"), "\x00") {
		k, v, _ := strings.Cut(kv, "=")
		got[k] = v
	}
	// dash exports PWD itself; it is not ours to check.
	delete(got, "PWD")
	want := map[string]string{
		"VIGIL_ALARM_ID": "spo2-low-high/oximeter-1", "VIGIL_EVENT_ID": "ev-9", "VIGIL_PHASE": "start",
		"VIGIL_PRIORITY": "high", "VIGIL_MARKER": "***", "VIGIL_KIND": "physiological", "VIGIL_STATE": "active",
		"VIGIL_TEXT": "*** SpO2 84.5 % below 85 %", "VIGIL_SITE": "clinic-a", "VIGIL_ROOM": "room-2",
		"VIGIL_DEVICE": "oximeter-1", "VIGIL_METRIC": "spo2", "VIGIL_VALUE": "84.5", "VIGIL_LIMIT": "85",
		"VIGIL_UNIT": "%", "VIGIL_CONDITION": "below", "VIGIL_ONSET": "2025-03-04T10:15:30Z",
		"VIGIL_ACK_URL": "https://vigil.local/ack/abc",
	}
	for _, name := range passedEnv {
		if v, ok := os.LookupEnv(name); ok {
			want[name] = v
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d variables, want %d:\n got %v\nwant %v", len(got), len(want), got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if _, ok := got["VIGIL_TEST_SECRET"]; ok {
		t.Error("the agent's environment leaked into the command")
	}
}

func TestTechnicalEventHasEmptyValueVariables(t *testing.T) {
	out := filepath.Join(t.TempDir(), "env")
	n := newNotifier(t, 0, "/bin/sh", script(t, `printf '%s|%s|%s|%s' "$VIGIL_VALUE" "$VIGIL_LIMIT" "$VIGIL_DEVICE" "${VIGIL_METRIC-unset}" > "$1"`), out)
	ev := alarm.Event{AlarmID: "broker-down", EventID: "ev-1", Phase: alarm.PhaseEnd, Kind: alarm.Technical,
		Priority: alarm.Medium, State: alarm.Resolved, Text: "** broker reachable again", Room: "room-2"}
	if res := n.Notify(context.Background(), ev); res.Verdict != notify.Delivered {
		t.Fatalf("result %v %v", res.Verdict, res.Err)
	}
	if got := readFile(t, out); got != "|||" {
		t.Errorf("got %q, want empty value, limit, device and a set but empty metric", got)
	}
}

func TestStdinIsTheEventJSON(t *testing.T) {
	out := filepath.Join(t.TempDir(), "stdin")
	n := newNotifier(t, 0, "/bin/sh", script(t, `cat > "$1"`), out)
	if res := n.Notify(context.Background(), spo2Event()); res.Verdict != notify.Delivered {
		t.Fatalf("result %v %v", res.Verdict, res.Err)
	}
	want := `{"alarm_id":"spo2-low-high/oximeter-1","event_id":"ev-9","phase":"start","kind":"physiological","state":"active",` +
		`"metric":"spo2","value":84.5,"unit":"%","limit":85,"condition":"below","text":"*** SpO2 84.5 % below 85 %",` +
		`"site":"clinic-a","room":"room-2","device":"oximeter-1","session":"s-1",` +
		`"onset":"2025-03-04T10:15:30Z","sent":"2025-03-04T10:15:45.25Z","ack_url":"https://vigil.local/ack/abc","priority":"high"}` + "\n"
	if got := readFile(t, out); got != want {
		t.Errorf("stdin\n got %s\nwant %s", got, want)
	}
}

func TestCommandIgnoringStdinIsDelivered(t *testing.T) {
	n := newNotifier(t, 0, "/bin/sh", script(t, `exit 0`))
	if res := n.Notify(context.Background(), spo2Event()); res.Verdict != notify.Delivered {
		t.Fatalf("result %v %v", res.Verdict, res.Err)
	}
}

func TestExitStatusVerdicts(t *testing.T) {
	for _, tc := range []struct {
		code    int
		verdict notify.Verdict
	}{
		{0, notify.Delivered},
		{ExitTempFail, notify.Retry},
		{1, notify.GiveUp},
		{2, notify.GiveUp},
		{78, notify.GiveUp},
	} {
		n := newNotifier(t, 0, "/bin/sh", script(t, `echo "speaker says no" >&2; exit `+strconv.Itoa(tc.code)))
		res := n.Notify(context.Background(), spo2Event())
		if res.Verdict != tc.verdict {
			t.Errorf("exit %d: verdict %v, want %v (%v)", tc.code, res.Verdict, tc.verdict, res.Err)
		}
		if tc.code == 0 {
			if res.Err != nil {
				t.Errorf("exit 0: err %v", res.Err)
			}
			continue
		}
		var ee *ExitError
		if !errors.As(res.Err, &ee) || ee.Code != tc.code || ee.Stderr != "speaker says no" {
			t.Errorf("exit %d: err %#v, want ExitError with the code and stderr", tc.code, res.Err)
		}
	}
}

func TestStderrIsBounded(t *testing.T) {
	n := newNotifier(t, 0, "/bin/sh", script(t, `head -c 1000000 /dev/zero | tr '\0' x >&2; exit 1`))
	res := n.Notify(context.Background(), spo2Event())
	var ee *ExitError
	if !errors.As(res.Err, &ee) {
		t.Fatalf("err %v, want ExitError", res.Err)
	}
	if want := strings.Repeat("x", MaxStderr) + " [truncated]"; ee.Stderr != want {
		t.Errorf("stderr has %d bytes, want %d x and the truncation mark", len(ee.Stderr), MaxStderr)
	}
}

func TestSignalledCommandRetries(t *testing.T) {
	n := newNotifier(t, 0, "/bin/sh", script(t, `kill -TERM $$`))
	res := n.Notify(context.Background(), spo2Event())
	var se *SignalError
	if res.Verdict != notify.Retry || !errors.As(res.Err, &se) || se.Signal != syscall.SIGTERM {
		t.Errorf("got %v %v, want retry with SIGTERM", res.Verdict, res.Err)
	}
}

// processGone reports whether pid no longer runs: absent, or a zombie
// waiting for its reaper.
func processGone(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// The state follows the parenthesised command name.
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}

func waitGone(t *testing.T, what string, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !processGone(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("%s (pid %d) still running after 10 s", what, pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func readPid(t *testing.T, p string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		b, _ := os.ReadFile(p)
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && strings.HasSuffix(string(b), "\n") {
			return pid
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pid in %s", p)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestTimeoutKillsTheProcessGroup(t *testing.T) {
	dir := t.TempDir()
	leaderFile, childFile := filepath.Join(dir, "leader"), filepath.Join(dir, "child")
	body := `echo $$ > "$1"
sleep 300 &
echo $! > "$2"
echo "playing" >&2
sleep 300`
	n := newNotifier(t, 300*time.Millisecond, "/bin/sh", script(t, body), leaderFile, childFile)
	res := n.Notify(context.Background(), spo2Event())
	var te *TimeoutError
	if res.Verdict != notify.Retry || !errors.As(res.Err, &te) || !errors.Is(res.Err, context.DeadlineExceeded) {
		t.Fatalf("got %v %v, want retry with a timeout", res.Verdict, res.Err)
	}
	if te.Stderr != "playing" {
		t.Errorf("stderr %q, want the command's output before the kill", te.Stderr)
	}
	leader := readPid(t, leaderFile)
	// Notify reaped its child: no zombie left, the pid is gone entirely.
	if err := syscall.Kill(leader, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("command pid %d: kill(0) = %v, want ESRCH (killed and reaped)", leader, err)
	}
	// Its background child was in the group and died with it (init reaps it).
	waitGone(t, "background child", readPid(t, childFile))
}

func TestCallerCancelKillsTheCommand(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	n := newNotifier(t, time.Minute, "/bin/sh", script(t, `echo $$ > "$1"; exec sleep 300`), pidFile)
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	go func() {
		// No t here: FailNow belongs to the test goroutine. Cancel once the
		// command runs, or after a deadline so Notify returns regardless.
		defer close(started)
		defer cancel()
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if b, _ := os.ReadFile(pidFile); bytes.HasSuffix(b, []byte("\n")) {
				return
			}
		}
	}()
	res := n.Notify(ctx, spo2Event())
	<-started
	if res.Verdict != notify.Retry || !errors.Is(res.Err, context.Canceled) {
		t.Fatalf("got %v %v, want retry with context canceled", res.Verdict, res.Err)
	}
	if err := syscall.Kill(readPid(t, pidFile), 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("kill(0) = %v, want ESRCH", err)
	}
}

func TestLeftoversAreKilledAfterExit(t *testing.T) {
	childFile := filepath.Join(t.TempDir(), "child")
	n := newNotifier(t, time.Minute, "/bin/sh", script(t, `sleep 300 & echo $! > "$1"; exit 0`), childFile)
	if res := n.Notify(context.Background(), spo2Event()); res.Verdict != notify.Delivered {
		t.Fatalf("result %v %v", res.Verdict, res.Err)
	}
	waitGone(t, "background child left by the command", readPid(t, childFile))
}

func TestUnrunnableProgramGivesUp(t *testing.T) {
	p := filepath.Join(t.TempDir(), "garbage")
	if err := os.WriteFile(p, []byte{0x7f, 'E', 'L', 'F', 0, 1, 2, 3}, 0o755); err != nil {
		t.Fatal(err)
	}
	n := newNotifier(t, 0, p)
	if res := n.Notify(context.Background(), spo2Event()); res.Verdict != notify.GiveUp || res.Err == nil {
		t.Errorf("bad executable: got %v %v, want give up", res.Verdict, res.Err)
	}
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if res := n.Notify(context.Background(), spo2Event()); res.Verdict != notify.GiveUp || res.Err == nil {
		t.Errorf("removed program: got %v %v, want give up", res.Verdict, res.Err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	notExec := filepath.Join(t.TempDir(), "plain")
	if err := os.WriteFile(notExec, []byte("echo"), 0o644); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]Config{
		"no name":          {Command: []string{"/bin/true"}},
		"no command":       {Name: "x"},
		"empty program":    {Name: "x", Command: []string{""}},
		"missing program":  {Name: "x", Command: []string{"/nonexistent/vigil-speaker"}},
		"not in PATH":      {Name: "x", Command: []string{"vigil-no-such-program"}},
		"not executable":   {Name: "x", Command: []string{notExec}},
		"NUL in argument":  {Name: "x", Command: []string{"/bin/true", "a\x00b"}},
		"negative timeout": {Name: "x", Command: []string{"/bin/true"}, Timeout: -time.Second},
	} {
		var ce *ConfigError
		if _, err := New(c, nil); !errors.As(err, &ce) {
			t.Errorf("%s: err = %v, want *ConfigError", name, err)
		}
	}
}

func TestNewResolvesFromPath(t *testing.T) {
	n, err := New(Config{Name: "speaker", Command: []string{"sh", "-c", "exit 0"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if n.Name() != "speaker" || !filepath.IsAbs(n.path) || n.timeout != notify.DefaultTimeout {
		t.Errorf("name %q path %q timeout %v", n.Name(), n.path, n.timeout)
	}
	if res := n.Notify(context.Background(), spo2Event()); res.Verdict != notify.Delivered {
		t.Errorf("result %v %v", res.Verdict, res.Err)
	}
}
