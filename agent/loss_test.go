package agent_test

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/vigil-monitor/vigil/agent/mqtt/testbroker"
	"github.com/vigil-monitor/vigil/drivers"
)

// readingLog is a persistent-session subscriber to every reading of the
// room: it keeps, per device, the seqs in arrival order.
type readingLog struct {
	mu       sync.Mutex
	seqs     map[string][]uint64
	replayed int
	bad      []string
	client   paho.Client
}

func newReadingLog(t *testing.T, url, clientID string) *readingLog {
	t.Helper()
	l := &readingLog{seqs: map[string][]uint64{}}
	opts := paho.NewClientOptions().AddBroker(url).SetClientID(clientID).SetCleanSession(false).
		SetOrderMatters(true).SetAutoReconnect(true).SetConnectRetry(true).SetMaxReconnectInterval(time.Second)
	l.client = paho.NewClient(opts)
	if tok := l.client.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber: %v", tok.Error())
	}
	tok := l.client.Subscribe("vigil/clinic-a/room-1/+/+", 1, func(_ paho.Client, m paho.Message) {
		var p struct {
			Device   string `json:"device"`
			Seq      uint64 `json:"seq"`
			Replayed bool   `json:"replayed"`
		}
		if strings.HasSuffix(m.Topic(), "/status") || strings.HasSuffix(m.Topic(), "/active") {
			return
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		if err := json.Unmarshal(m.Payload(), &p); err != nil || p.Seq == 0 {
			if strings.Contains(m.Topic(), "/alarms") || strings.HasSuffix(m.Topic(), "/session") {
				return
			}
			l.bad = append(l.bad, m.Topic())
			return
		}
		l.seqs[p.Device] = append(l.seqs[p.Device], p.Seq)
		if p.Replayed {
			l.replayed++
		}
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	return l
}

// complete reports whether device's seqs cover 1..want.
func (l *readingLog) complete(device string, want uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	seen := map[uint64]bool{}
	for _, s := range l.seqs[device] {
		seen[s] = true
	}
	for s := uint64(1); s <= want; s++ {
		if !seen[s] {
			return false
		}
	}
	return true
}

// check asserts the delivery guarantee for device: every seq 1..want, each
// first seen in increasing order (QoS 1 may repeat one, never reorder a
// first delivery), nothing beyond want.
func (l *readingLog) check(t *testing.T, device string, want uint64) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	var next uint64 = 1
	dups := 0
	seen := map[uint64]bool{}
	for _, s := range l.seqs[device] {
		switch {
		case seen[s]:
			dups++
		case s != next:
			t.Fatalf("%s: first delivery of seq %d where %d was due (a gap or a reordering)", device, s, next)
		default:
			seen[s] = true
			next++
		}
	}
	if next-1 != want {
		t.Fatalf("%s: %d distinct readings delivered, the agent took %d", device, next-1, want)
	}
	t.Logf("%s: %d readings delivered in order, %d duplicates (QoS 1 resends)", device, want, dups)
}

var readingsTotalRE = regexp.MustCompile(`(?m)^vigil_readings_total\{device="([^"]+)",metric="[^"]+"[^}]*\} (\S+)$`)

// readingsTaken sums vigil_readings_total per device: the agent gives every
// reading the next seq, so this is the last seq.
func readingsTaken(t *testing.T, httpURL string) map[string]uint64 {
	t.Helper()
	_, body := httpGet(t, httpURL+"/metrics")
	out := map[string]uint64{}
	for _, m := range readingsTotalRE.FindAllStringSubmatch(body, -1) {
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil || v != math.Trunc(v) {
			t.Fatalf("vigil_readings_total %q", m[2])
		}
		out[m[1]] += uint64(v)
	}
	return out
}

// TestNothingLostAcrossBrokerOutage is the store-and-forward guarantee: the
// broker stops for a minute (VIGIL_OUTAGE overrides: "10s" for a quick
// run) while an oximeter streams numerics at 10 Hz and another a 75 Hz
// pleth waveform (Nonin DF7: a 25-sample batch every 1/3 s, with its
// numerics); after the broker is back every reading taken arrives, first
// deliveries in order per device, with no gap in seq, and those that waited
// carry their original seq and time.
func TestNothingLostAcrossBrokerOutage(t *testing.T) {
	outage := time.Minute
	if s := os.Getenv("VIGIL_OUTAGE"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil {
			t.Fatalf("VIGIL_OUTAGE: %v", err)
		}
		outage = d
	}
	mosq := testbroker.StartMosquitto(t, testbroker.WithPersistence())
	numerics := newFakeOximeter(t)
	pleth := newFakeDevice(t, "nonin-df7")
	dir := t.TempDir()
	cfg := loadConfig(t, dir, fmt.Sprintf(`site: clinic-a
room: room-1
devices:
  - id: numerics
    driver: masimo-ascii
    port: %s
    silent_after: 5m
  - id: pleth
    driver: nonin-df7
    port: %s
    silent_after: 5m
mqtt:
  url: %s
http:
  listen: 127.0.0.1:0
alarms:
  clock_check: false
store:
  path: %s
`, numerics.link, pleth.link, mosq.URL(), filepath.Join(dir, "vigil.db")))
	log := newReadingLog(t, mosq.URL(), "loss-test-subscriber")
	ra := startAgent(t, cfg)
	waitFor(t, "the agent connected to the broker", 15*time.Second, func() bool {
		_, body := httpGet(t, ra.ep.HTTP+"/metrics")
		return strings.Contains(body, "vigil_mqtt_connected 1")
	})

	samples := make([]float64, 25)
	for i := range samples {
		samples[i] = 100 + 50*math.Sin(float64(i)/25*2*math.Pi)
	}
	before, after := 5*time.Second, 5*time.Second
	start := time.Now()
	stopped, restarted := false, false
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for n := 0; ; n++ {
		<-tick.C
		el := time.Since(start)
		switch {
		case !stopped && el >= before:
			mosq.Stop()
			stopped = true
			t.Logf("broker stopped for %v", outage)
		case stopped && !restarted && el >= before+outage:
			mosq.Start()
			restarted = true
			t.Log("broker started again")
		case restarted && el >= before+outage+after:
			goto done
		}
		numerics.send(frame(float64(90+n%8), 70, 0))
		if n%10 == 0 || n%10 == 3 || n%10 == 6 { // 3 packets a second, 25 samples each: 75 Hz
			pleth.send(drivers.Frame{Time: time.Now(), Values: map[drivers.MetricID]float64{drivers.SpO2: 97, drivers.PulseRate: 72}, Samples: samples})
		}
	}
done:
	// Let the last frames be read, then take the counts.
	time.Sleep(500 * time.Millisecond)
	taken := readingsTaken(t, ra.ep.HTTP)
	if taken["numerics"] == 0 || taken["pleth"] == 0 {
		t.Fatalf("readings taken %v", taken)
	}
	deadline := 60 * time.Second
	waitFor(t, "every reading delivered", deadline, func() bool {
		return log.complete("numerics", taken["numerics"]) && log.complete("pleth", taken["pleth"])
	})
	log.check(t, "numerics", taken["numerics"])
	log.check(t, "pleth", taken["pleth"])
	if len(log.bad) > 0 {
		t.Errorf("undecodable messages on %v", log.bad)
	}
	if t.Failed() {
		return
	}
	waitFor(t, "the outbox empty", 20*time.Second, func() bool {
		_, body := httpGet(t, ra.ep.HTTP+"/metrics")
		return strings.Contains(body, `vigil_outbox_depth{room="room-1",site="clinic-a"} 0`)
	})
	log.client.Disconnect(100)
}

// mountTmpfs mounts a tmpfs of size bytes in a new directory; "" when the
// test does not run as root (the caller then fills the store another way).
// As root, a failing mount fails the test when CI is set.
func mountTmpfs(t *testing.T, size int) string {
	t.Helper()
	if os.Geteuid() != 0 {
		return ""
	}
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d", size)); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("mount tmpfs (needed for the disk-full test in CI): %v", err)
		}
		t.Skipf("cannot mount a tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// TestDiskFullKeepsMonitoringAndAlarming: the store's disk fills (a 1 MiB
// tmpfs). The storage technical alarm is raised and notified; the agent
// goes on monitoring (fresh values in /metrics, live readings on MQTT) and
// alarming (a desaturation still reaches the channel).
func TestDiskFullKeepsMonitoringAndAlarming(t *testing.T) {
	disk := mountTmpfs(t, 1<<20)
	capBytes := false
	if disk == "" {
		// Without root: the store's own size cap (SQLite's page limit)
		// fails commits with the same "database or disk is full".
		disk, capBytes = t.TempDir(), true
	}
	hook := newReceiver(t)
	ox := newFakeOximeter(t)
	dir := t.TempDir()
	writeHookSecret(t, dir)
	cfg := loadConfig(t, dir, fmt.Sprintf(`site: clinic-a
room: room-1
devices:
  - id: oximeter-1
    driver: masimo-ascii
    port: %s
mqtt:
  url: embedded
  listen: 127.0.0.1:0
http:
  listen: 127.0.0.1:0
alarms:
  clock_check: false
  rules:
    - name: spo2-low
      metric: spo2
      below: 90
      priority: medium
      delay: 0s
store:
  path: %s
notify:
  channels:
    - name: nurses
      type: webhook
      url: %s/nurses
      secret_file: hook.secret
  routes:
    - priorities: [high, medium, low]
      channels: [nurses]
`, ox.link, filepath.Join(disk, "vigil.db"), hook.srv.URL))
	if capBytes {
		cfg.Store.MaxSizeMB = 1 // below what the config allows: this is the test's disk
	}
	ra := startAgent(t, cfg)
	sub := subscribe(t, ra.ep.MQTT)

	// Fill the disk with readings: bursts of lines until the store fails.
	filled := false
	for i := 0; i < 600 && !filled; i++ {
		for j := 0; j < 50; j++ {
			ox.send(frame(97, 70, 0))
		}
		time.Sleep(50 * time.Millisecond)
		filled = hook.has("storage-failing", "start", "")
	}
	if !filled {
		t.Fatal("the storage alarm never reached the channel while the disk filled")
	}
	_, body := httpGet(t, ra.ep.HTTP+"/api/v1/alarms")
	if !strings.Contains(body, `"alarm_id":"storage-failing"`) {
		t.Errorf("storage-failing not in the active alarms: %s", body)
	}

	// Still monitoring: a new value is in /metrics and on MQTT.
	before := len(sub.readings("spo2"))
	ox.send(frame(93, 70, 0))
	waitFor(t, "the new SpO2 value in /metrics", 10*time.Second, func() bool {
		_, body := httpGet(t, ra.ep.HTTP+"/metrics")
		return regexp.MustCompile(`(?m)^vigil_spo2_ratio\{[^}]*device="oximeter-1"[^}]*\} 0\.93$`).MatchString(body)
	})
	waitFor(t, "live readings on MQTT", 10*time.Second, func() bool { return len(sub.readings("spo2")) > before })

	// Still alarming.
	ox.send(frame(85, 70, 0))
	waitFor(t, "the desaturation alarm at the channel", 15*time.Second, func() bool { return hook.has("spo2-low/oximeter-1", "start", "") })
	sub.client.Disconnect(100)
}
