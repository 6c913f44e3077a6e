package agent_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/vigil-monitor/vigil/agent/mqtt/testbroker"
	"github.com/vigil-monitor/vigil/drivers/suntech"
)

// emulatedNIBP is a SunTech module answering the agent over a pty.
type emulatedNIBP struct {
	link   string
	mu     sync.Mutex
	module *suntech.Module
}

func startEmulatedNIBP(t *testing.T, result suntech.Result) *emulatedNIBP {
	t.Helper()
	master, slave, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	e := &emulatedNIBP{link: filepath.Join(t.TempDir(), "nibp"),
		module: &suntech.Module{Result: result, Duration: 2 * time.Second}}
	if err := os.Symlink(slave.Name(), e.link); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(2)
	// Host bytes in, module replies out; a ticker lets the module announce
	// the end of a measurement without being asked, as the real one does.
	go func() {
		defer wg.Done()
		buf := make([]byte, 256)
		for {
			n, err := master.Read(buf)
			if err != nil {
				return
			}
			e.mu.Lock()
			out := e.module.Exchange(buf[:n], time.Now())
			e.mu.Unlock()
			master.Write(out)
		}
	}()
	go func() {
		defer wg.Done()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				e.mu.Lock()
				out := e.module.Exchange(nil, time.Now())
				e.mu.Unlock()
				if len(out) > 0 {
					master.Write(out)
				}
			}
		}
	}()
	t.Cleanup(func() {
		close(done)
		master.Close()
		slave.Close()
		wg.Wait()
	})
	return e
}

// TestNIBPOnDemand: a measurement started through the HTTP API runs the
// module's start, poll and fetch conversation, and the result reaches MQTT;
// a second start while the cuff is inflating is refused.
func TestNIBPOnDemand(t *testing.T) {
	b := testbroker.StartMosquitto(t)
	nibp := startEmulatedNIBP(t, suntech.Result{Systolic: 128, Diastolic: 84, Mean: 99, HeartRate: 71})
	cfg := testConfigFor(t, "suntech-advantage", nibp.link, b.URL())
	ra := startAgent(t, cfg)
	sub := subscribe(t, b.URL())
	waitFor(t, "connected", 10*time.Second, func() bool {
		m, ok := sub.lastOn("vigil/clinic-a/room-1/oximeter-1/status")
		return ok && strings.Contains(string(m.payload), `"connected"`)
	})

	post := func() (int, map[string]any) {
		resp, err := http.Post(ra.ep.HTTP+"/api/v1/devices/oximeter-1/commands/nibp_start", "application/json", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]any
		json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body
	}
	if code, body := post(); code != http.StatusOK || body["ok"] != true {
		t.Fatalf("start: %d %v", code, body)
	}
	if code, body := post(); code != http.StatusConflict || body["ok"] != false {
		t.Errorf("second start while measuring: %d %v, want 409", code, body)
	}
	waitFor(t, "the blood pressure on MQTT", 20*time.Second, func() bool {
		return len(sub.readings("nibp_systolic")) == 1 && len(sub.readings("nibp_pulse_rate")) == 1
	})
	for metric, want := range map[string]float64{"nibp_systolic": 128, "nibp_diastolic": 84, "nibp_mean": 99, "nibp_pulse_rate": 71} {
		r := sub.readings(metric)
		if len(r) != 1 || r[0].Value == nil || *r[0].Value != want {
			t.Errorf("%s = %+v, want %v", metric, r, want)
		}
	}

	resp, err := http.Post(ra.ep.HTTP+"/api/v1/devices/nope/commands/nibp_start", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown device: %d, want 404", resp.StatusCode)
	}
	resp, err = http.Post(ra.ep.HTTP+"/api/v1/devices/oximeter-1/commands/make_tea", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("unknown command: %d, want 400", resp.StatusCode)
	}
}

// TestNIBPByMQTTCommand: {"command": "nibp_start"} on the device's command
// topic starts a measurement; the outcome is published on cmd/result and the
// blood pressure follows. A command for a device that is not configured is
// answered ok=false.
func TestNIBPByMQTTCommand(t *testing.T) {
	b := testbroker.StartMosquitto(t)
	nibp := startEmulatedNIBP(t, suntech.Result{Systolic: 141, Diastolic: 92, Mean: 108, HeartRate: 88})
	startAgent(t, testConfigFor(t, "suntech-advantage", nibp.link, b.URL()))
	sub := subscribe(t, b.URL())
	waitFor(t, "connected", 10*time.Second, func() bool {
		m, ok := sub.lastOn("vigil/clinic-a/room-1/oximeter-1/status")
		return ok && strings.Contains(string(m.payload), `"connected"`)
	})
	sub.client.Publish("vigil/clinic-a/room-1/oximeter-1/cmd", 1, false, `{"command": "nibp_start", "id": "t-1"}`).Wait()
	waitFor(t, "the command's result", 10*time.Second, func() bool {
		m, ok := sub.lastOn("vigil/clinic-a/room-1/oximeter-1/cmd/result")
		return ok && strings.Contains(string(m.payload), `"ok":true`) && strings.Contains(string(m.payload), `"t-1"`)
	})
	waitFor(t, "the blood pressure", 20*time.Second, func() bool { return len(sub.readings("nibp_systolic")) == 1 })
	if r := sub.readings("nibp_systolic"); r[0].Value == nil || *r[0].Value != 141 {
		t.Errorf("systolic = %+v, want 141", r[0])
	}

	sub.client.Publish("vigil/clinic-a/room-1/nibp-9/cmd", 1, false, `{"command": "nibp_start"}`).Wait()
	waitFor(t, "a refusal for an unknown device", 10*time.Second, func() bool {
		m, ok := sub.lastOn("vigil/clinic-a/room-1/nibp-9/cmd/result")
		return ok && strings.Contains(string(m.payload), `"ok":false`) && strings.Contains(string(m.payload), "no such device")
	})
}
