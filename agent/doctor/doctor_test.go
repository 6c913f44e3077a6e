package doctor

import (
	"context"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/vigil-monitor/vigil/agent/clocksync"
	_ "github.com/vigil-monitor/vigil/drivers/all" // the configs name real drivers
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// currentUser is the user running the tests: the checks run "as the service
// user" with the kernel's answer when it is this one.
func currentUser(t *testing.T) string {
	t.Helper()
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	return u.Username
}

func asMe(t *testing.T) Options {
	return Options{ServiceUser: currentUser(t), Timeout: 5 * time.Second}
}

// run runs one check with the default per-check timeout handling.
func run(t *testing.T, c Check) Result {
	t.Helper()
	r := RunChecks(context.Background(), []Check{c}, 10*time.Second)[0]
	t.Logf("%s: %s: %s (fix: %s)", r.Name, r.Status, r.Finding, r.Fix)
	return r
}

// expect checks a result's status and that its finding (and its fix, for a
// failure) says what a person needs.
func expect(t *testing.T, r Result, status Status, findingHas ...string) {
	t.Helper()
	if r.Status != status {
		t.Errorf("%s: status %s, want %s; finding %q, details %q", r.Name, r.Status, status, r.Finding, r.Details)
	}
	for _, s := range findingHas {
		if !strings.Contains(r.Finding, s) {
			t.Errorf("%s: finding %q lacks %q", r.Name, r.Finding, s)
		}
	}
	if r.Status == Fail && r.Fix == "" {
		t.Errorf("%s: a failure without a fix: %q", r.Name, r.Finding)
	}
	if strings.Contains(r.Finding, "\n") {
		t.Errorf("%s: finding spans lines: %q", r.Name, r.Finding)
	}
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		t.Fatal(err)
	}
	return path
}

func TestRunChecksBoundsEachCheckAndSurvivesAPanic(t *testing.T) {
	checks := []Check{
		{Name: "slow", Run: func(ctx context.Context) Result {
			<-ctx.Done()
			return Result{Status: Fail, Finding: "gave up: " + ctx.Err().Error()}
		}},
		{Name: "broken", Run: func(context.Context) Result { panic("nil map") }},
		{Name: "fine", Run: func(context.Context) Result { return okf("", "all good") }},
	}
	results := RunChecks(context.Background(), checks, 200*time.Millisecond)
	if len(results) != 3 {
		t.Fatalf("%d results", len(results))
	}
	expect(t, results[0], Fail, "deadline exceeded")
	if !strings.Contains(results[0].Fix, "no answer within 200ms") {
		t.Errorf("timed-out check's fix: %q", results[0].Fix)
	}
	expect(t, results[1], Fail, "nil map")
	expect(t, results[2], OK, "all good")
	if results[2].Name != "fine" {
		t.Errorf("a result without a name takes the check's: %q", results[2].Name)
	}
	ok, warnings, failures := Summary(results)
	if ok != 1 || warnings != 0 || failures != 2 {
		t.Errorf("Summary = %d, %d, %d", ok, warnings, failures)
	}
}

func TestConfigCheck(t *testing.T) {
	dir := t.TempDir()
	good := writeFile(t, filepath.Join(dir, "vigil.yaml"), "site: clinic-a\nroom: room-1\ndevices:\n  - id: oximeter-1\n    driver: masimo-ascii\n    port: /dev/ttyUSB0\n", 0o600)
	cfg, r := CheckConfig(good)
	expect(t, r, OK, "is valid", "site clinic-a", "room room-1", "1 device", "0 notification channels")
	if cfg == nil || cfg.Site != "clinic-a" {
		t.Fatalf("config not returned: %+v", cfg)
	}

	// Every problem is listed, each with its line.
	bad := writeFile(t, filepath.Join(dir, "bad.yaml"), "site: Clinic A\nroom: room-1\ndevices:\n  - id: ox\n    driver: nonin-df9\n    port: /dev/ttyUSB0\n", 0o600)
	cfg, r = CheckConfig(bad)
	expect(t, r, Fail, "bad.yaml is not valid")
	if cfg != nil {
		t.Error("an invalid config was returned")
	}
	all := strings.Join(r.Details, "\n")
	for _, want := range []string{bad + ":1: site:", bad + ":5: devices[0].driver: unknown driver \"nonin-df9\""} {
		if !strings.Contains(all, want) {
			t.Errorf("details lack %q:\n%s", want, all)
		}
	}
	if !strings.Contains(r.Fix, "vigil config check "+bad) {
		t.Errorf("fix: %q", r.Fix)
	}

	_, r = CheckConfig(filepath.Join(dir, "missing.yaml"))
	expect(t, r, Fail, "missing.yaml", "file does not exist")
	if !strings.Contains(r.Fix, "/etc/vigil/vigil.yaml") {
		t.Errorf("fix for a missing file: %q", r.Fix)
	}

	// A config readable by everyone (it names the broker's credentials).
	writeFile(t, filepath.Join(dir, "mqtt.pass"), "s3cret\n", 0o644)
	open := writeFile(t, filepath.Join(dir, "open.yaml"), "site: clinic-a\nroom: room-1\ndevices:\n  - id: oximeter-1\n    driver: masimo-ascii\n    port: /dev/ttyUSB0\nmqtt:\n  url: tcp://127.0.0.1:1883\n  username: room-1\n  password_file: mqtt.pass\n", 0o600)
	_, r = CheckConfig(open)
	expect(t, r, Warn, "readable by every user", "mqtt.pass (mode 0644)")
	if strings.Contains(r.Finding, "open.yaml (mode") {
		t.Errorf("the 0600 config is named as readable: %q", r.Finding)
	}
	if strings.Contains(r.Finding, "s3cret") {
		t.Errorf("the finding shows the password: %q", r.Finding)
	}
}

func TestDiagnoseWithoutAConfigStillChecksTheClock(t *testing.T) {
	results := Diagnose(context.Background(), filepath.Join(t.TempDir(), "none.yaml"), Options{})
	if len(results) != 2 || results[0].Name != "config" || results[1].Name != "clock" {
		t.Fatalf("results: %+v", results)
	}
	expect(t, results[0], Fail, "file does not exist")
}

func TestClockCheckAgreesWithTheKernel(t *testing.T) {
	st, err := clocksync.Read()
	r := run(t, ClockCheck())
	switch {
	case err != nil:
		expect(t, r, Warn, "cannot be read")
	case st.Synchronised:
		expect(t, r, OK, "synchronised")
	default:
		expect(t, r, Warn, "not synchronised")
		if !strings.Contains(r.Fix, "timedatectl set-ntp true") {
			t.Errorf("fix: %q", r.Fix)
		}
	}
}

func TestExecChannel(t *testing.T) {
	dir := t.TempDir()
	script := writeFile(t, filepath.Join(dir, "speaker.sh"), "#!/bin/sh\nexit 0\n", 0o755)
	expect(t, checkExec("channel room-speaker", []string{script, "--loud"}), OK, script, "executable")

	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Fatal(err)
	}
	expect(t, checkExec("channel x", []string{"sh", "-c", "true"}), OK, sh)

	notExec := writeFile(t, filepath.Join(dir, "plain.sh"), "#!/bin/sh\n", 0o644)
	r := checkExec("channel x", []string{notExec})
	expect(t, r, Fail, "not executable")
	if r.Fix != "chmod +x "+notExec {
		t.Errorf("fix: %q", r.Fix)
	}
	expect(t, checkExec("channel x", []string{filepath.Join(dir, "gone")}), Fail, "does not exist")
	expect(t, checkExec("channel x", []string{"vigil-no-such-program"}), Fail, "not found in PATH")
	expect(t, checkExec("channel x", []string{dir}), Fail, "a directory")
}
