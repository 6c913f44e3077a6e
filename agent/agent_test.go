package agent_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/creack/pty"
	paho "github.com/eclipse/paho.mqtt.golang"
	"go.uber.org/goleak"

	"github.com/vigil-monitor/vigil/agent"
	"github.com/vigil-monitor/vigil/agent/config"
	"github.com/vigil-monitor/vigil/agent/mqtt/testbroker"
	"github.com/vigil-monitor/vigil/drivers"
	_ "github.com/vigil-monitor/vigil/drivers/all"
)

func TestMain(m *testing.M) {
	// The agents the tests start write their audit log to the default
	// place, $STATE_DIRECTORY/audit.jsonl (systemd's variable), here a
	// directory of this run.
	state, err := os.MkdirTemp("", "vigil-state-")
	if err != nil {
		panic(err)
	}
	os.Setenv("STATE_DIRECTORY", state)
	code := m.Run()
	if code == 0 {
		// paho's and mochi's internals close asynchronously after Disconnect.
		if err := goleak.Find(goleak.IgnoreTopFunction("github.com/eclipse/paho.mqtt.golang.(*router).matchAndDispatch.func1")); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			code = 1
		}
	}
	os.RemoveAll(state)
	os.Exit(code)
}

// payload is the MQTT reading contract of README.md.
type payload struct {
	Time     time.Time `json:"time"`
	Received time.Time `json:"received"`
	Seq      uint64    `json:"seq"`
	Site     string    `json:"site"`
	Room     string    `json:"room"`
	Device   string    `json:"device"`
	Metric   string    `json:"metric"`
	Value    *float64  `json:"value"`
	Unit     string    `json:"unit"`
	MDC      string    `json:"mdc"`
	MDCCode  int       `json:"mdc_code"`
	Flags    []string  `json:"flags"`
	Session  *string   `json:"session"`
}

type message struct {
	topic    string
	payload  []byte
	retained bool
}

// subscriber collects every message on vigil/# from a broker.
type subscriber struct {
	client paho.Client
	mu     sync.Mutex
	msgs   []message
}

func subscribe(t *testing.T, url string) *subscriber {
	t.Helper()
	s := &subscriber{}
	opts := paho.NewClientOptions().AddBroker(url).SetClientID(fmt.Sprintf("test-sub-%d", time.Now().UnixNano())).
		SetOrderMatters(true).SetAutoReconnect(true).SetConnectRetry(true)
	s.client = paho.NewClient(opts)
	tok := s.client.Connect()
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber connect to %s: %v", url, tok.Error())
	}
	tok = s.client.Subscribe("vigil/#", 1, func(_ paho.Client, m paho.Message) {
		s.mu.Lock()
		s.msgs = append(s.msgs, message{topic: m.Topic(), payload: append([]byte(nil), m.Payload()...), retained: m.Retained()})
		s.mu.Unlock()
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	t.Cleanup(func() { s.client.Disconnect(100) })
	return s
}

func (s *subscriber) snapshot() []message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]message(nil), s.msgs...)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s", timeout, what)
}

func (s *subscriber) readings(metric string) []payload {
	var out []payload
	for _, m := range s.snapshot() {
		if !strings.HasSuffix(m.topic, "/"+metric) {
			continue
		}
		var p payload
		if err := json.Unmarshal(m.payload, &p); err == nil {
			out = append(out, p)
		}
	}
	return out
}

func (s *subscriber) lastOn(topic string) (message, bool) {
	msgs := s.snapshot()
	for i := len(msgs) - 1; i >= 0; i-- {
		if msgs[i].topic == topic {
			return msgs[i], true
		}
	}
	return message{}, false
}

// fakeOximeter is a pseudo-terminal the test writes Masimo lines into, at a
// stable symlink path as a by-id path would be.
type fakeOximeter struct {
	t       *testing.T
	link    string
	master  *os.File
	slave   *os.File
	encoder drivers.Encoder
}

func newFakeOximeter(t *testing.T) *fakeOximeter { return newFakeDevice(t, "masimo-ascii") }

// newFakeDevice is a pseudo-terminal fed with the named driver's encoder.
func newFakeDevice(t *testing.T, driver string) *fakeOximeter {
	return newFakeDeviceWith(t, driver, nil)
}

// newFakeDeviceWith is newFakeDevice with driver options for the encoder.
func newFakeDeviceWith(t *testing.T, driver string, opts drivers.Options) *fakeOximeter {
	t.Helper()
	drv, ok := drivers.Lookup(driver)
	if !ok {
		t.Fatalf("%s not registered", driver)
	}
	enc, err := drv.NewEncoder(opts)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeOximeter{t: t, link: filepath.Join(t.TempDir(), "oximeter"), encoder: enc}
	f.plug()
	t.Cleanup(f.unplug)
	return f
}

func (f *fakeOximeter) plug() {
	master, slave, err := pty.Open()
	if err != nil {
		f.t.Fatal(err)
	}
	f.master, f.slave = master, slave
	tmp := f.link + ".new"
	os.Remove(tmp)
	if err := os.Symlink(slave.Name(), tmp); err != nil {
		f.t.Fatal(err)
	}
	if err := os.Rename(tmp, f.link); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fakeOximeter) unplug() {
	if f.master != nil {
		f.master.Close()
		f.slave.Close()
		f.master, f.slave = nil, nil
	}
}

func (f *fakeOximeter) send(fr drivers.Frame) {
	f.t.Helper()
	if _, err := f.master.Write(f.encoder.Encode(nil, fr)); err != nil {
		f.t.Fatalf("write to pty: %v", err)
	}
}

func frame(spo2, pulse float64, flags drivers.Flags) drivers.Frame {
	return drivers.Frame{
		Time:   time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC),
		Values: map[drivers.MetricID]float64{drivers.SpO2: spo2, drivers.PulseRate: pulse, drivers.PerfusionIndex: 3.5},
		Flags:  flags,
	}
}

func testConfig(t *testing.T, port, mqttURL string) *config.Config {
	t.Helper()
	return testConfigFor(t, "masimo-ascii", port, mqttURL)
}

func testConfigFor(t *testing.T, driver, port, mqttURL string) *config.Config {
	t.Helper()
	listen := ""
	if mqttURL == "embedded" {
		listen = "\n  listen: 127.0.0.1:0"
	}
	y := fmt.Sprintf(`site: clinic-a
room: room-1
devices:
  - id: oximeter-1
    driver: %s
    port: %s
mqtt:
  url: %s%s
http:
  listen: 127.0.0.1:0
metrics:
  stale_after: 2s
`, driver, port, mqttURL, listen)
	cfg, err := config.Parse("test.yaml", []byte(y))
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

type runningAgent struct {
	ep     agent.Endpoints
	cancel context.CancelFunc
	done   chan error
}

func startAgent(t *testing.T, cfg *config.Config) *runningAgent {
	t.Helper()
	if cfg.Store.Path == config.DefaultStorePath() {
		// Each test's agent has its own store: a shared one would carry
		// sequence numbers and outbox messages from test to test.
		cfg.Store.Path = filepath.Join(t.TempDir(), "vigil.db")
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan agent.Endpoints, 1)
	ra := &runningAgent{cancel: cancel, done: make(chan error, 1)}
	go func() {
		ra.done <- agent.Run(ctx, cfg, agent.Options{
			Logger:  slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})),
			Version: "test",
			OnReady: func(ep agent.Endpoints) { ready <- ep },
		})
	}()
	select {
	case ra.ep = <-ready:
	case err := <-ra.done:
		t.Fatalf("agent stopped at start: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("agent not ready after 20s")
	}
	t.Cleanup(func() { ra.stop(t) })
	return ra
}

func (ra *runningAgent) stop(t *testing.T) {
	if ra.cancel == nil {
		return
	}
	ra.cancel()
	ra.cancel = nil
	select {
	case err := <-ra.done:
		if err != nil {
			t.Errorf("agent stopped with %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Error("agent did not stop within 20s")
	}
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func httpGet(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// checkPath drives the whole path, device bytes to MQTT and /metrics: values
// arrive in order with consecutive sequence numbers and the device's flags;
// the retained statuses say online and connected.
func checkPath(t *testing.T, mqttURL string) {
	ox := newFakeOximeter(t)
	cfg := testConfig(t, ox.link, mqttURL)
	ra := startAgent(t, cfg)
	embedded := mqttURL == "embedded"
	if embedded {
		mqttURL = ra.ep.MQTT
	}
	sub := subscribe(t, mqttURL)

	waitFor(t, "device connected status", 10*time.Second, func() bool {
		m, ok := sub.lastOn("vigil/clinic-a/room-1/oximeter-1/status")
		return ok && strings.Contains(string(m.payload), `"connected"`)
	})

	const n = 40
	for i := range n {
		flags := drivers.Flags(0)
		if i == 20 {
			flags = drivers.FlagLowSignalQuality
		}
		ox.send(frame(float64(80+i%20), float64(60+i), flags))
	}
	// The last frame: no finger. SpO2 and pulse have no value.
	ox.send(drivers.Frame{Time: time.Now(), Values: map[drivers.MetricID]float64{}, Flags: drivers.FlagSensorOff})

	waitFor(t, "all pulse readings", 15*time.Second, func() bool { return len(sub.readings("pulse_rate")) >= n+1 })
	spo2 := sub.readings("spo2")
	pulse := sub.readings("pulse_rate")
	if len(spo2) != n+1 || len(pulse) != n+1 {
		t.Fatalf("got %d spo2 and %d pulse readings, want %d each", len(spo2), len(pulse), n+1)
	}
	var lastSeq uint64
	for i := range n {
		s, p := spo2[i], pulse[i]
		if s.Value == nil || *s.Value != float64(80+i%20) {
			t.Errorf("spo2[%d] = %v, want %d", i, s.Value, 80+i%20)
		}
		if p.Value == nil || *p.Value != float64(60+i) {
			t.Errorf("pulse[%d] = %v, want %d", i, p.Value, 60+i)
		}
		// One line gives spo2, pulse and PI in that order: seq steps by one
		// reading at a time across metrics.
		if i > 0 && s.Seq != lastSeq+1 {
			t.Errorf("spo2[%d].seq = %d, want %d (PI of the previous line)", i, s.Seq, lastSeq+1)
		}
		if p.Seq != s.Seq+1 {
			t.Errorf("pulse[%d].seq = %d, want %d", i, p.Seq, s.Seq+1)
		}
		lastSeq = p.Seq + 1 // the PI reading
		if s.Site != "clinic-a" || s.Room != "room-1" || s.Device != "oximeter-1" || s.Unit != "%" ||
			s.MDC != "MDC_PULS_OXIM_SAT_O2" || s.MDCCode != 150456 || s.Session != nil {
			t.Errorf("spo2[%d] metadata wrong: %+v", i, s)
		}
		if p.Unit != "/min" || p.MDCCode != 149530 {
			t.Errorf("pulse[%d] metadata wrong: %+v", i, p)
		}
		wantFlags := "[]"
		if i == 20 {
			wantFlags = "[low-signal-quality]"
		}
		if got := fmt.Sprint(s.Flags); got != wantFlags && !(wantFlags == "[]" && len(s.Flags) == 0) {
			t.Errorf("spo2[%d].flags = %v, want %s", i, s.Flags, wantFlags)
		}
	}
	if spo2[0].Seq != 1 {
		t.Errorf("first seq = %d, want 1", spo2[0].Seq)
	}
	off := spo2[n]
	if off.Value != nil || !contains(off.Flags, "sensor-off") {
		t.Errorf("sensor-off reading = value %v flags %v, want null value and sensor-off", off.Value, off.Flags)
	}

	st, ok := sub.lastOn("vigil/clinic-a/room-1/status")
	if !ok || !strings.Contains(string(st.payload), `"online"`) {
		t.Errorf("room status = %q, want online", st.payload)
	}

	// A late subscriber sees the retained statuses.
	late := subscribe(t, mqttURL)
	waitFor(t, "retained statuses for a late subscriber", 10*time.Second, func() bool {
		r, ok1 := late.lastOn("vigil/clinic-a/room-1/status")
		d, ok2 := late.lastOn("vigil/clinic-a/room-1/oximeter-1/status")
		return ok1 && ok2 && r.retained && d.retained
	})

	code, body := httpGet(t, ra.ep.HTTP+"/readyz")
	if code != http.StatusOK {
		t.Errorf("/readyz = %d %q", code, body)
	}
	_, body = httpGet(t, ra.ep.HTTP+"/metrics")
	for _, want := range []string{
		`vigil_device_up{device="oximeter-1",room="room-1",site="clinic-a"} 1`,
		`vigil_mqtt_connected{room="room-1",site="clinic-a"} 1`,
		`vigil_frames_total{device="oximeter-1",result="ok",room="room-1",site="clinic-a"} 41`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// The last line had no finger: the device's condition says so, on MQTT
	// and in the metrics, and no SpO2 value may be exported.
	waitFor(t, "sensor-off condition on the device status", 10*time.Second, func() bool {
		m, ok := sub.lastOn("vigil/clinic-a/room-1/oximeter-1/status")
		return ok && strings.Contains(string(m.payload), `"conditions":["sensor-off"]`)
	})
	if !strings.Contains(body, `vigil_device_condition{condition="sensor-off",device="oximeter-1",room="room-1",site="clinic-a"} 1`) {
		t.Errorf("/metrics lacks the sensor-off condition:\n%s", grepLines(body, "vigil_device_condition"))
	}
	if strings.Contains(body, "vigil_spo2_ratio{") {
		t.Errorf("/metrics exports SpO2 after sensor-off:\n%s", grepLines(body, "vigil_spo2"))
	}

	if embedded {
		// The embedded broker stops with the agent, so there is nobody left
		// to tell subscribers the room went offline; they see the broker go.
		return
	}
	// Stop cleanly: the room status goes offline.
	ra.stop(t)
	waitFor(t, "offline status after stop", 10*time.Second, func() bool {
		m, ok := sub.lastOn("vigil/clinic-a/room-1/status")
		return ok && strings.Contains(string(m.payload), `"offline"`)
	})
}

func TestEndToEndMosquitto(t *testing.T) {
	b := testbroker.StartMosquitto(t)
	checkPath(t, b.URL())
}

func TestEndToEndEmbeddedBroker(t *testing.T) {
	checkPath(t, "embedded")
}

// TestUnplugReplug: pulling the cable is reported on MQTT and in the metrics,
// and readings resume, with the sequence continuing, once it is back.
func TestUnplugReplug(t *testing.T) {
	b := testbroker.StartMosquitto(t)
	ox := newFakeOximeter(t)
	ra := startAgent(t, testConfig(t, ox.link, b.URL()))
	sub := subscribe(t, b.URL())
	statusTopic := "vigil/clinic-a/room-1/oximeter-1/status"
	waitFor(t, "connected", 10*time.Second, func() bool {
		m, ok := sub.lastOn(statusTopic)
		return ok && strings.Contains(string(m.payload), `"connected"`)
	})
	ox.send(frame(97, 70, 0))
	waitFor(t, "first reading", 10*time.Second, func() bool { return len(sub.readings("spo2")) == 1 })
	// Let the agent read the frame before pulling the cable: a closing pty
	// master discards what the slave has not read (ecosystem.md).
	time.Sleep(200 * time.Millisecond)

	ox.unplug()
	waitFor(t, "disconnected status", 10*time.Second, func() bool {
		m, ok := sub.lastOn(statusTopic)
		return ok && strings.Contains(string(m.payload), `"disconnected"`)
	})
	_, body := httpGet(t, ra.ep.HTTP+"/metrics")
	if !strings.Contains(body, `vigil_device_up{device="oximeter-1",room="room-1",site="clinic-a"} 0`) {
		t.Errorf("device_up not 0 after unplug:\n%s", grepLines(body, "vigil_device_up"))
	}

	ox.plug()
	waitFor(t, "connected again", 10*time.Second, func() bool {
		m, ok := sub.lastOn(statusTopic)
		return ok && strings.Contains(string(m.payload), `"connected"`)
	})
	ox.send(frame(96, 71, 0))
	waitFor(t, "reading after replug", 10*time.Second, func() bool { return len(sub.readings("spo2")) == 2 })
	r := sub.readings("spo2")
	if r[1].Seq != r[0].Seq+3 {
		t.Errorf("seq after replug = %d, want %d (continuing)", r[1].Seq, r[0].Seq+3)
	}
	_, body = httpGet(t, ra.ep.HTTP+"/metrics")
	if !strings.Contains(body, `vigil_device_reconnects_total{device="oximeter-1",room="room-1",site="clinic-a"} 1`) {
		t.Errorf("reconnects not counted:\n%s", grepLines(body, "reconnects"))
	}
}

// TestStaleValueVanishes: when the device stops talking, its last SpO2
// disappears from the scrape after stale_after (2 s in this config) and the
// device is reported silent: a frozen value must never look live.
func TestStaleValueVanishes(t *testing.T) {
	ox := newFakeOximeter(t)
	ra := startAgent(t, testConfig(t, ox.link, "embedded"))
	ox.send(frame(95, 70, 0))
	waitFor(t, "spo2 in /metrics", 10*time.Second, func() bool {
		_, body := httpGet(t, ra.ep.HTTP+"/metrics")
		return strings.Contains(body, `vigil_spo2_ratio{device="oximeter-1",room="room-1",site="clinic-a"} 0.95`)
	})
	waitFor(t, "spo2 gone from /metrics", 10*time.Second, func() bool {
		_, body := httpGet(t, ra.ep.HTTP+"/metrics")
		return !strings.Contains(body, "vigil_spo2_ratio{")
	})
	waitFor(t, "device silent (device_up 0)", 15*time.Second, func() bool {
		_, body := httpGet(t, ra.ep.HTTP+"/metrics")
		return strings.Contains(body, `vigil_device_up{device="oximeter-1",room="room-1",site="clinic-a"} 0`)
	})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func grepLines(body, substr string) string {
	var out []string
	for _, l := range strings.Split(body, "\n") {
		if strings.Contains(l, substr) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

var jsonUnmarshal = json.Unmarshal

// TestSilentDeviceIsReopened: a device whose port stays open but which stops
// sending is reported silent, then its port is closed and reopened (which
// restarts a driver's conversation); it stays silent on MQTT until a frame
// arrives, and readings resume after it does.
func TestSilentDeviceIsReopened(t *testing.T) {
	ox := newFakeOximeter(t)
	ra := startAgent(t, testConfig(t, ox.link, "embedded"))
	sub := subscribe(t, ra.ep.MQTT)
	statusTopic := "vigil/clinic-a/room-1/oximeter-1/status"
	ox.send(frame(97, 70, 0))
	waitFor(t, "silent", 15*time.Second, func() bool {
		m, ok := sub.lastOn(statusTopic)
		return ok && strings.Contains(string(m.payload), `"silent"`)
	})
	reconnects := `vigil_device_reconnects_total{device="oximeter-1",room="room-1",site="clinic-a"} 1`
	waitFor(t, "the port reopened", 20*time.Second, func() bool {
		_, body := httpGet(t, ra.ep.HTTP+"/metrics")
		return strings.Contains(body, reconnects)
	})
	for _, m := range sub.snapshot() {
		if m.topic == statusTopic && strings.Contains(string(m.payload), `"disconnected"`) {
			t.Errorf("reopening a silent device published %s", m.payload)
		}
	}
	ox.send(frame(96, 71, 0))
	waitFor(t, "connected after the frame", 10*time.Second, func() bool {
		m, ok := sub.lastOn(statusTopic)
		return ok && strings.Contains(string(m.payload), `"connected"`)
	})
	waitFor(t, "the reading", 10*time.Second, func() bool { return len(sub.readings("spo2")) == 2 })
}

// TestDeviceLinkRefusedStopsAgent: link settings the serial layer cannot
// apply (1.5 stop bits on Linux) stop the agent with an error naming the
// device, instead of leaving it silently unread.
func TestDeviceLinkRefusedStopsAgent(t *testing.T) {
	ox := newFakeOximeter(t)
	cfg := testConfig(t, ox.link, "embedded")
	cfg.Devices[0].StopBits = "1.5"
	done := make(chan error, 1)
	go func() {
		done <- agent.Run(context.Background(), cfg, agent.Options{Logger: slog.New(slog.DiscardHandler)})
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "oximeter-1") {
			t.Errorf("agent.Run = %v, want an error naming the device", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("agent kept running with a device it cannot open")
	}
}
