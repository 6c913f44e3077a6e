package metrics

import (
	"bufio"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"

	"github.com/vigil-monitor/vigil/agent/devstatus"
	"github.com/vigil-monitor/vigil/drivers"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// t0 is an arbitrary instant whose Unix time prints exactly.
var t0 = time.Unix(1_700_000_000, 500_000_000)

// fakeClock is the scrape-time clock; safe for the concurrency test.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	c.mu.Unlock()
}

var (
	oximeter = Device{ID: "ox1", Metrics: []drivers.MetricID{drivers.SpO2, drivers.PulseRate, drivers.PerfusionIndex, drivers.Pleth}}
	cuff     = Device{ID: "bp1", Metrics: []drivers.MetricID{drivers.NIBPSystolic, drivers.NIBPDiastolic, drivers.NIBPMean, drivers.NIBPPulseRate}}
)

func newTest(clock *fakeClock, o Options) *Metrics {
	if o.Site == "" {
		o.Site = "clinic-a"
	}
	if o.Room == "" {
		o.Room = "room-2"
	}
	if o.Devices == nil {
		o.Devices = []Device{oximeter, cuff}
	}
	o.Now = clock.Now
	return New(o)
}

func valid(device string, id drivers.MetricID, v float64, at time.Time) *drivers.Reading {
	return &drivers.Reading{Device: device, Metric: id, Value: v, Valid: true, Received: at}
}

func noValue(device string, id drivers.MetricID, at time.Time) *drivers.Reading {
	return &drivers.Reading{Device: device, Metric: id, Received: at, Flags: drivers.FlagSensorOff}
}

// scrape returns the text exposition's sample lines of the named metric
// families, in exposition order, exactly as Prometheus would read them.
func scrape(t *testing.T, reg prometheus.Gatherer, names ...string) []string {
	t.Helper()
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("scrape: status %d: %s", rec.Code, rec.Body)
	}
	var out []string
	sc := bufio.NewScanner(rec.Body)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, _, _ := strings.Cut(line, "{")
		name, _, _ = strings.Cut(name, " ")
		if slices.Contains(names, name) {
			out = append(out, line)
		}
	}
	return out
}

func assertLines(t *testing.T, got []string, want ...string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Fatalf("exposition mismatch\n got:\n  %s\nwant:\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

var vitalNames = []string{
	"vigil_spo2_ratio", "vigil_pulse_rate_bpm", "vigil_perfusion_index_ratio",
	"vigil_nibp_systolic_mmhg", "vigil_nibp_diastolic_mmhg", "vigil_nibp_mean_mmhg",
	"vigil_nibp_pulse_rate_bpm", "vigil_respiration_rate_bpm",
}

func TestVitalGaugesExposition(t *testing.T) {
	clock := &fakeClock{now: t0}
	capno := Device{ID: "cap1", Metrics: []drivers.MetricID{drivers.RespirationRate}}
	m := newTest(clock, Options{Devices: []Device{oximeter, cuff, capno}})

	m.Consume(valid("ox1", drivers.SpO2, 97, t0))
	m.Consume(valid("ox1", drivers.PulseRate, 72, t0))
	m.Consume(valid("ox1", drivers.PerfusionIndex, 2.5, t0))
	m.Consume(&drivers.Reading{Device: "ox1", Metric: drivers.Pleth, Samples: []float64{1, 2, 3}, SampleRate: 75, Received: t0})
	m.Consume(valid("bp1", drivers.NIBPSystolic, 121, t0))
	m.Consume(valid("bp1", drivers.NIBPDiastolic, 79, t0))
	m.Consume(valid("bp1", drivers.NIBPMean, 93, t0))
	m.Consume(valid("bp1", drivers.NIBPPulseRate, 70, t0))
	m.Consume(valid("cap1", drivers.RespirationRate, 14, t0))

	const want = `
# HELP vigil_spo2_ratio Current SpO2 as a fraction (0-1); absent when the device has no valid, fresh value.
# TYPE vigil_spo2_ratio gauge
vigil_spo2_ratio{device="ox1",room="room-2",site="clinic-a"} 0.97
# HELP vigil_pulse_rate_bpm Current pulse rate from the oximeter in beats per minute; absent when not valid and fresh.
# TYPE vigil_pulse_rate_bpm gauge
vigil_pulse_rate_bpm{device="ox1",room="room-2",site="clinic-a"} 72
# HELP vigil_perfusion_index_ratio Current perfusion index as a fraction (0-1); absent when not valid and fresh.
# TYPE vigil_perfusion_index_ratio gauge
vigil_perfusion_index_ratio{device="ox1",room="room-2",site="clinic-a"} 0.025
# HELP vigil_nibp_systolic_mmhg Last non-invasive systolic blood pressure in mmHg; absent when not valid and fresh.
# TYPE vigil_nibp_systolic_mmhg gauge
vigil_nibp_systolic_mmhg{device="bp1",room="room-2",site="clinic-a"} 121
# HELP vigil_nibp_diastolic_mmhg Last non-invasive diastolic blood pressure in mmHg; absent when not valid and fresh.
# TYPE vigil_nibp_diastolic_mmhg gauge
vigil_nibp_diastolic_mmhg{device="bp1",room="room-2",site="clinic-a"} 79
# HELP vigil_nibp_mean_mmhg Last non-invasive mean arterial pressure in mmHg; absent when not valid and fresh.
# TYPE vigil_nibp_mean_mmhg gauge
vigil_nibp_mean_mmhg{device="bp1",room="room-2",site="clinic-a"} 93
# HELP vigil_nibp_pulse_rate_bpm Pulse rate of the last NIBP measurement in beats per minute; absent when not valid and fresh.
# TYPE vigil_nibp_pulse_rate_bpm gauge
vigil_nibp_pulse_rate_bpm{device="bp1",room="room-2",site="clinic-a"} 70
# HELP vigil_respiration_rate_bpm Current respiration rate in breaths per minute; absent when not valid and fresh.
# TYPE vigil_respiration_rate_bpm gauge
vigil_respiration_rate_bpm{device="cap1",room="room-2",site="clinic-a"} 14
`
	if err := testutil.GatherAndCompare(m.Registry(), strings.NewReader(want), vitalNames...); err != nil {
		t.Fatal(err)
	}

	// The waveform is never a gauge, under any name.
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if strings.Contains(mf.GetName(), "pleth") {
			t.Errorf("waveform exported as %s", mf.GetName())
		}
	}
}

// Percentages are divided, not multiplied by 0.01, so that every integer
// percentage a device sends is exported as the float a person would write.
func TestPercentRatiosAreExact(t *testing.T) {
	clock := &fakeClock{now: t0}
	m := newTest(clock, Options{})
	for pct := 0; pct <= 100; pct++ {
		m.Consume(valid("ox1", drivers.SpO2, float64(pct), t0))
		want := 1.0
		if pct < 100 {
			var err error
			if want, err = strconv.ParseFloat(fmt.Sprintf("0.%02d", pct), 64); err != nil {
				t.Fatal(err)
			}
		}
		assertLines(t, scrape(t, m.Registry(), "vigil_spo2_ratio"),
			fmt.Sprintf(`vigil_spo2_ratio{device="ox1",room="room-2",site="clinic-a"} %s`, strconv.FormatFloat(want, 'g', -1, 64)))
	}
	m.Consume(valid("ox1", drivers.SpO2, 97, t0))
	if got := gaugeValue(t, m.Registry(), "vigil_spo2_ratio", "ox1"); got != 0.97 {
		t.Fatalf("SpO2 97 %% exported as %v, want exactly 0.97", got)
	}
}

// gaugeValue returns the value of the named gauge for device; it fails the
// test when the series is absent.
func gaugeValue(t *testing.T, g prometheus.Gatherer, name, device string) float64 {
	t.Helper()
	v, ok := lookupGauge(t, g, name, device)
	if !ok {
		t.Fatalf("%s{device=%q} absent", name, device)
	}
	return v
}

func lookupGauge(t *testing.T, g prometheus.Gatherer, name, device string) (float64, bool) {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, metric := range mf.GetMetric() {
			for _, lp := range metric.GetLabel() {
				if lp.GetName() == "device" && lp.GetValue() == device {
					return metric.GetGauge().GetValue(), true
				}
			}
		}
	}
	return 0, false
}

func present(t *testing.T, m *Metrics, name, device string) bool {
	t.Helper()
	_, ok := lookupGauge(t, m.Registry(), name, device)
	return ok
}

func TestContinuousValueGoesStale(t *testing.T) {
	clock := &fakeClock{now: t0}
	m := newTest(clock, Options{})
	m.Consume(valid("ox1", drivers.SpO2, 95, t0))

	for _, tc := range []struct {
		after time.Duration
		want  bool
	}{
		{0, true},
		{9 * time.Second, true},
		{10 * time.Second, true}, // "older than" stale-after: exactly 10 s is still current
		{11 * time.Second, false},
		{time.Hour, false},
	} {
		clock.Set(t0.Add(tc.after))
		if got := present(t, m, "vigil_spo2_ratio", "ox1"); got != tc.want {
			t.Errorf("at t0+%v: present=%v, want %v", tc.after, got, tc.want)
		}
	}

	// A new reading brings the series back with the new value.
	clock.Set(t0.Add(time.Hour))
	m.Consume(valid("ox1", drivers.SpO2, 93, t0.Add(time.Hour)))
	if got := gaugeValue(t, m.Registry(), "vigil_spo2_ratio", "ox1"); got != 0.93 {
		t.Fatalf("after new reading: %v, want 0.93", got)
	}
}

func TestNIBPValueGoesStaleOnItsOwnLimit(t *testing.T) {
	clock := &fakeClock{now: t0}
	m := newTest(clock, Options{})
	m.Consume(valid("bp1", drivers.NIBPSystolic, 118, t0))
	m.Consume(valid("ox1", drivers.PulseRate, 80, t0))

	clock.Set(t0.Add(11 * time.Second))
	if !present(t, m, "vigil_nibp_systolic_mmhg", "bp1") {
		t.Error("NIBP absent 11 s after its measurement")
	}
	if present(t, m, "vigil_pulse_rate_bpm", "ox1") {
		t.Error("continuous pulse rate still present after 11 s")
	}
	clock.Set(t0.Add(19 * time.Minute))
	if !present(t, m, "vigil_nibp_systolic_mmhg", "bp1") {
		t.Error("NIBP absent at +19m")
	}
	clock.Set(t0.Add(21 * time.Minute))
	if present(t, m, "vigil_nibp_systolic_mmhg", "bp1") {
		t.Error("NIBP still present at +21m")
	}
}

func TestStaleAfterOptions(t *testing.T) {
	clock := &fakeClock{now: t0}
	m := newTest(clock, Options{
		StaleAfter:     30 * time.Second,
		NIBPStaleAfter: 5 * time.Minute,
		StaleAfterFor: func(device string, id drivers.MetricID) time.Duration {
			if device == "ox1" && id == drivers.PerfusionIndex {
				return 3 * time.Second
			}
			return 0 // defaults
		},
	})
	m.Consume(valid("ox1", drivers.SpO2, 96, t0))
	m.Consume(valid("ox1", drivers.PerfusionIndex, 1.2, t0))
	m.Consume(valid("bp1", drivers.NIBPMean, 90, t0))

	clock.Set(t0.Add(4 * time.Second))
	if present(t, m, "vigil_perfusion_index_ratio", "ox1") {
		t.Error("PI present after its 3 s override")
	}
	clock.Set(t0.Add(29 * time.Second))
	if !present(t, m, "vigil_spo2_ratio", "ox1") {
		t.Error("SpO2 absent within StaleAfter=30s")
	}
	clock.Set(t0.Add(31 * time.Second))
	if present(t, m, "vigil_spo2_ratio", "ox1") {
		t.Error("SpO2 present after StaleAfter=30s")
	}
	clock.Set(t0.Add(4*time.Minute + 59*time.Second))
	if !present(t, m, "vigil_nibp_mean_mmhg", "bp1") {
		t.Error("NIBP absent within NIBPStaleAfter=5m")
	}
	clock.Set(t0.Add(5*time.Minute + time.Second))
	if present(t, m, "vigil_nibp_mean_mmhg", "bp1") {
		t.Error("NIBP present after NIBPStaleAfter=5m")
	}
}

func TestReadingWithoutValidValueRemovesValue(t *testing.T) {
	for _, tc := range []struct {
		name string
		r    *drivers.Reading
	}{
		{"device shows no value", noValue("ox1", drivers.SpO2, t0)},
		{"out of range, flagged", &drivers.Reading{Device: "ox1", Metric: drivers.SpO2, Value: 127, Received: t0, Flags: drivers.FlagOutOfRange}},
		{"marked valid but impossible", valid("ox1", drivers.SpO2, 127, t0)},
		{"marked valid but NaN", valid("ox1", drivers.SpO2, math.NaN(), t0)},
		{"marked valid but infinite", valid("ox1", drivers.SpO2, math.Inf(1), t0)},
		{"marked valid but negative", valid("ox1", drivers.SpO2, -1, t0)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := &fakeClock{now: t0}
			m := newTest(clock, Options{})
			m.Consume(valid("ox1", drivers.SpO2, 97, t0))
			m.Consume(valid("ox1", drivers.PulseRate, 70, t0))
			if !present(t, m, "vigil_spo2_ratio", "ox1") {
				t.Fatal("valid value not shown")
			}
			m.Consume(tc.r)
			if present(t, m, "vigil_spo2_ratio", "ox1") {
				t.Fatal("value still shown after a reading without a valid value")
			}
			// Other metrics of the device are untouched.
			if got := gaugeValue(t, m.Registry(), "vigil_pulse_rate_bpm", "ox1"); got != 70 {
				t.Fatalf("pulse rate %v, want 70", got)
			}
		})
	}
}

func TestValueWithUnknownAgeIsNotShown(t *testing.T) {
	clock := &fakeClock{now: t0}
	m := newTest(clock, Options{})
	m.Consume(valid("ox1", drivers.SpO2, 97, time.Time{}))
	if present(t, m, "vigil_spo2_ratio", "ox1") {
		t.Error("value without a receive time shown")
	}
	m.Consume(valid("ox1", drivers.SpO2, 97, t0.Add(time.Minute)))
	if present(t, m, "vigil_spo2_ratio", "ox1") {
		t.Error("value received after the scrape clock (clock stepped back) shown")
	}
}

func TestDeviceSeriesExistBeforeAnyReading(t *testing.T) {
	clock := &fakeClock{now: t0}
	m := newTest(clock, Options{})
	reg := m.Registry()
	assertLines(t, scrape(t, reg, "vigil_device_up", "vigil_last_reading_timestamp_seconds", "vigil_device_reconnects_total", "vigil_discarded_bytes_total"),
		`vigil_device_reconnects_total{device="bp1",room="room-2",site="clinic-a"} 0`,
		`vigil_device_reconnects_total{device="ox1",room="room-2",site="clinic-a"} 0`,
		`vigil_device_up{device="bp1",room="room-2",site="clinic-a"} 0`,
		`vigil_device_up{device="ox1",room="room-2",site="clinic-a"} 0`,
		`vigil_discarded_bytes_total{device="bp1",room="room-2",site="clinic-a"} 0`,
		`vigil_discarded_bytes_total{device="ox1",room="room-2",site="clinic-a"} 0`,
		`vigil_last_reading_timestamp_seconds{device="bp1",room="room-2",site="clinic-a"} 0`,
		`vigil_last_reading_timestamp_seconds{device="ox1",room="room-2",site="clinic-a"} 0`,
	)
	assertLines(t, scrape(t, reg, "vigil_frames_total"),
		`vigil_frames_total{device="bp1",result="checksum",room="room-2",site="clinic-a"} 0`,
		`vigil_frames_total{device="bp1",result="invalid_value",room="room-2",site="clinic-a"} 0`,
		`vigil_frames_total{device="bp1",result="malformed",room="room-2",site="clinic-a"} 0`,
		`vigil_frames_total{device="bp1",result="ok",room="room-2",site="clinic-a"} 0`,
		`vigil_frames_total{device="ox1",result="checksum",room="room-2",site="clinic-a"} 0`,
		`vigil_frames_total{device="ox1",result="invalid_value",room="room-2",site="clinic-a"} 0`,
		`vigil_frames_total{device="ox1",result="malformed",room="room-2",site="clinic-a"} 0`,
		`vigil_frames_total{device="ox1",result="ok",room="room-2",site="clinic-a"} 0`,
	)
	assertLines(t, scrape(t, reg, "vigil_readings_total"),
		`vigil_readings_total{device="bp1",metric="nibp_diastolic",room="room-2",site="clinic-a"} 0`,
		`vigil_readings_total{device="bp1",metric="nibp_mean",room="room-2",site="clinic-a"} 0`,
		`vigil_readings_total{device="bp1",metric="nibp_pulse_rate",room="room-2",site="clinic-a"} 0`,
		`vigil_readings_total{device="bp1",metric="nibp_systolic",room="room-2",site="clinic-a"} 0`,
		`vigil_readings_total{device="ox1",metric="perfusion_index",room="room-2",site="clinic-a"} 0`,
		`vigil_readings_total{device="ox1",metric="pleth",room="room-2",site="clinic-a"} 0`,
		`vigil_readings_total{device="ox1",metric="pulse_rate",room="room-2",site="clinic-a"} 0`,
		`vigil_readings_total{device="ox1",metric="spo2",room="room-2",site="clinic-a"} 0`,
	)
	assertLines(t, scrape(t, reg, vitalNames...)) // no vital before a reading
	// Before its first status a device is not connected: disconnected.
	assertLines(t, scrape(t, reg, "vigil_device_condition"),
		`vigil_device_condition{condition="cuff-error",device="bp1",room="room-2",site="clinic-a"} 0`,
		`vigil_device_condition{condition="cuff-error",device="ox1",room="room-2",site="clinic-a"} 0`,
		`vigil_device_condition{condition="disconnected",device="bp1",room="room-2",site="clinic-a"} 1`,
		`vigil_device_condition{condition="disconnected",device="ox1",room="room-2",site="clinic-a"} 1`,
		`vigil_device_condition{condition="low-signal-quality",device="bp1",room="room-2",site="clinic-a"} 0`,
		`vigil_device_condition{condition="low-signal-quality",device="ox1",room="room-2",site="clinic-a"} 0`,
		`vigil_device_condition{condition="searching",device="bp1",room="room-2",site="clinic-a"} 0`,
		`vigil_device_condition{condition="searching",device="ox1",room="room-2",site="clinic-a"} 0`,
		`vigil_device_condition{condition="sensor-fault",device="bp1",room="room-2",site="clinic-a"} 0`,
		`vigil_device_condition{condition="sensor-fault",device="ox1",room="room-2",site="clinic-a"} 0`,
		`vigil_device_condition{condition="sensor-off",device="bp1",room="room-2",site="clinic-a"} 0`,
		`vigil_device_condition{condition="sensor-off",device="ox1",room="room-2",site="clinic-a"} 0`,
		`vigil_device_condition{condition="silent",device="bp1",room="room-2",site="clinic-a"} 0`,
		`vigil_device_condition{condition="silent",device="ox1",room="room-2",site="clinic-a"} 0`,
	)
	assertLines(t, scrape(t, reg, "vigil_mqtt_connected", "vigil_mqtt_publish_errors_total", "vigil_unknown_device_events_total"),
		`vigil_mqtt_connected{room="room-2",site="clinic-a"} 0`,
		`vigil_mqtt_publish_errors_total{room="room-2",site="clinic-a"} 0`,
		`vigil_unknown_device_events_total{room="room-2",site="clinic-a"} 0`,
	)
}

func TestDeviceUpFollowsStatus(t *testing.T) {
	clock := &fakeClock{now: t0}
	m := newTest(clock, Options{})
	status := func(device string, s devstatus.State) {
		m.DeviceStatus(devstatus.Status{Device: device, State: s, Since: clock.Now()})
	}
	up := func(device string) float64 { return gaugeValue(t, m.Registry(), "vigil_device_up", device) }

	if up("ox1") != 0 {
		t.Fatal("device up before it connected")
	}
	status("ox1", devstatus.Connected)
	if up("ox1") != 1 || up("bp1") != 0 {
		t.Fatalf("after ox1 connected: ox1=%v bp1=%v", up("ox1"), up("bp1"))
	}
	status("ox1", devstatus.Silent)
	if up("ox1") != 0 {
		t.Fatal("silent device up")
	}
	status("ox1", devstatus.Connected)
	if up("ox1") != 1 {
		t.Fatal("device not up after reconnecting")
	}
	status("ox1", devstatus.Disconnected)
	if up("ox1") != 0 {
		t.Fatal("disconnected device up")
	}
}

// conditionsOf returns the conditions of device that are 1, read from the
// exposition, sorted by name.
func conditionsOf(t *testing.T, m *Metrics, device string) []string {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var on []string
	seen := 0
	for _, mf := range mfs {
		if mf.GetName() != "vigil_device_condition" {
			continue
		}
		for _, metric := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range metric.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			if labels["device"] != device {
				continue
			}
			seen++
			switch v := metric.GetGauge().GetValue(); v {
			case 1:
				on = append(on, labels["condition"])
			case 0:
			default:
				t.Fatalf("vigil_device_condition %v = %v, want 0 or 1", labels, v)
			}
		}
	}
	if want := len(devstatus.Conditions()) + 2; seen != want {
		t.Fatalf("%d condition series for %s, want %d", seen, device, want)
	}
	slices.Sort(on)
	return on
}

func TestDeviceConditionFollowsStatus(t *testing.T) {
	clock := &fakeClock{now: t0}
	m := newTest(clock, Options{})
	check := func(device string, want ...string) {
		t.Helper()
		if got := conditionsOf(t, m, device); !slices.Equal(got, want) {
			t.Fatalf("%s conditions %v, want %v", device, got, want)
		}
	}
	status := func(device string, state devstatus.State, conds ...devstatus.Condition) {
		m.DeviceStatus(devstatus.Status{Device: device, State: state, Since: clock.Now(), Conditions: conds})
	}

	check("ox1", "disconnected")
	status("ox1", devstatus.Connected)
	check("ox1")
	check("bp1", "disconnected") // other devices untouched
	status("ox1", devstatus.Connected, devstatus.SensorOff, devstatus.LowSignalQuality)
	check("ox1", "low-signal-quality", "sensor-off")
	// A condition that clears goes back to 0; one that appears goes to 1.
	status("ox1", devstatus.Connected, devstatus.Searching)
	check("ox1", "searching")
	status("ox1", devstatus.Silent)
	check("ox1", "silent")
	status("ox1", devstatus.Connected, devstatus.SensorFault)
	check("ox1", "sensor-fault")
	status("ox1", devstatus.Disconnected)
	check("ox1", "disconnected")
	status("bp1", devstatus.Connected, devstatus.CuffError)
	check("bp1", "cuff-error")
	// Every condition at once, repeated, and one that does not exist.
	status("bp1", devstatus.Connected, append(devstatus.Conditions(), "bogus", devstatus.CuffError)...)
	check("bp1", "cuff-error", "low-signal-quality", "searching", "sensor-fault", "sensor-off")
	// An unknown state is not live: disconnected, up 0, values gone.
	m.Consume(valid("bp1", drivers.NIBPMean, 90, t0))
	status("bp1", devstatus.State("rebooting"))
	check("bp1", "disconnected")
	if up := gaugeValue(t, m.Registry(), "vigil_device_up", "bp1"); up != 0 {
		t.Fatalf("device up %v in an unknown state", up)
	}
	if present(t, m, "vigil_nibp_mean_mmhg", "bp1") {
		t.Fatal("NIBP shown for a device in an unknown state")
	}
}

func TestSilenceAndDisconnectionRemoveValues(t *testing.T) {
	clock := &fakeClock{now: t0}
	m := newTest(clock, Options{})
	m.DeviceStatus(devstatus.Status{Device: "ox1", State: devstatus.Connected})
	m.DeviceStatus(devstatus.Status{Device: "bp1", State: devstatus.Connected})
	m.Consume(valid("ox1", drivers.SpO2, 97, t0))
	m.Consume(valid("bp1", drivers.NIBPSystolic, 120, t0))
	m.Consume(valid("bp1", drivers.NIBPDiastolic, 80, t0))

	// A silent oximeter loses its continuous values at once.
	m.DeviceStatus(devstatus.Status{Device: "ox1", State: devstatus.Silent})
	if present(t, m, "vigil_spo2_ratio", "ox1") {
		t.Error("continuous value shown for a silent device")
	}
	// An NIBP monitor is quiet between measurements: its last pressure stays.
	m.DeviceStatus(devstatus.Status{Device: "bp1", State: devstatus.Silent})
	if !present(t, m, "vigil_nibp_systolic_mmhg", "bp1") {
		t.Error("NIBP removed when its monitor went quiet")
	}
	// A disconnected device has nothing live.
	m.DeviceStatus(devstatus.Status{Device: "bp1", State: devstatus.Disconnected})
	for _, name := range []string{"vigil_nibp_systolic_mmhg", "vigil_nibp_diastolic_mmhg"} {
		if present(t, m, name, "bp1") {
			t.Errorf("%s shown for a disconnected device", name)
		}
	}
}

func TestCounters(t *testing.T) {
	clock := &fakeClock{now: t0}
	m := newTest(clock, Options{})
	m.Consume(valid("ox1", drivers.SpO2, 97, t0))
	m.Consume(noValue("ox1", drivers.SpO2, t0.Add(time.Second)))
	m.Consume(&drivers.Reading{Device: "ox1", Metric: drivers.Pleth, Samples: []float64{1}, Received: t0.Add(time.Second)})
	// A metric the device was not configured with is still counted.
	m.Consume(valid("ox1", drivers.RespirationRate, 12, t0.Add(time.Second)))
	m.Frame("ox1", drivers.FrameOK, 0)
	m.Frame("ox1", drivers.FrameOK, 0)
	m.Frame("ox1", drivers.FrameChecksum, 0)
	m.Frame("ox1", drivers.FrameMalformed, 7)
	m.Frame("ox1", drivers.FrameInvalidValue, 0)
	m.Reconnected("bp1")
	m.Reconnected("bp1")
	m.MQTTPublishError()
	m.SetMQTTConnected(true)

	reg := m.Registry()
	assertLines(t, scrape(t, reg, "vigil_readings_total"),
		`vigil_readings_total{device="bp1",metric="nibp_diastolic",room="room-2",site="clinic-a"} 0`,
		`vigil_readings_total{device="bp1",metric="nibp_mean",room="room-2",site="clinic-a"} 0`,
		`vigil_readings_total{device="bp1",metric="nibp_pulse_rate",room="room-2",site="clinic-a"} 0`,
		`vigil_readings_total{device="bp1",metric="nibp_systolic",room="room-2",site="clinic-a"} 0`,
		`vigil_readings_total{device="ox1",metric="perfusion_index",room="room-2",site="clinic-a"} 0`,
		`vigil_readings_total{device="ox1",metric="pleth",room="room-2",site="clinic-a"} 1`,
		`vigil_readings_total{device="ox1",metric="pulse_rate",room="room-2",site="clinic-a"} 0`,
		`vigil_readings_total{device="ox1",metric="respiration_rate",room="room-2",site="clinic-a"} 1`,
		`vigil_readings_total{device="ox1",metric="spo2",room="room-2",site="clinic-a"} 2`,
	)
	assertLines(t, scrape(t, reg, "vigil_frames_total", "vigil_discarded_bytes_total", "vigil_device_reconnects_total", "vigil_last_reading_timestamp_seconds"),
		`vigil_device_reconnects_total{device="bp1",room="room-2",site="clinic-a"} 2`,
		`vigil_device_reconnects_total{device="ox1",room="room-2",site="clinic-a"} 0`,
		`vigil_discarded_bytes_total{device="bp1",room="room-2",site="clinic-a"} 0`,
		`vigil_discarded_bytes_total{device="ox1",room="room-2",site="clinic-a"} 7`,
		`vigil_frames_total{device="bp1",result="checksum",room="room-2",site="clinic-a"} 0`,
		`vigil_frames_total{device="bp1",result="invalid_value",room="room-2",site="clinic-a"} 0`,
		`vigil_frames_total{device="bp1",result="malformed",room="room-2",site="clinic-a"} 0`,
		`vigil_frames_total{device="bp1",result="ok",room="room-2",site="clinic-a"} 0`,
		`vigil_frames_total{device="ox1",result="checksum",room="room-2",site="clinic-a"} 1`,
		`vigil_frames_total{device="ox1",result="invalid_value",room="room-2",site="clinic-a"} 1`,
		`vigil_frames_total{device="ox1",result="malformed",room="room-2",site="clinic-a"} 1`,
		`vigil_frames_total{device="ox1",result="ok",room="room-2",site="clinic-a"} 2`,
		`vigil_last_reading_timestamp_seconds{device="bp1",room="room-2",site="clinic-a"} 0`,
		`vigil_last_reading_timestamp_seconds{device="ox1",room="room-2",site="clinic-a"} 1.7000000015e+09`,
	)
	assertLines(t, scrape(t, reg, "vigil_mqtt_connected", "vigil_mqtt_publish_errors_total"),
		`vigil_mqtt_connected{room="room-2",site="clinic-a"} 1`,
		`vigil_mqtt_publish_errors_total{room="room-2",site="clinic-a"} 1`,
	)
	m.SetMQTTConnected(false)
	assertLines(t, scrape(t, reg, "vigil_mqtt_connected"), `vigil_mqtt_connected{room="room-2",site="clinic-a"} 0`)
}

func TestUnknownDeviceAndBadIDsAreHandled(t *testing.T) {
	clock := &fakeClock{now: t0}
	m := newTest(clock, Options{})
	m.Consume(valid("ghost", drivers.SpO2, 97, t0))
	m.Frame("ghost", drivers.FrameOK, 3)
	m.DeviceStatus(devstatus.Status{Device: "ghost", State: devstatus.Connected})
	m.Reconnected("ghost")
	// Ids outside the catalogue and frame results outside FrameResults are
	// driver bugs: counted as "unknown" or ignored, never a panic.
	m.Consume(valid("ox1", drivers.MetricID(200), 1, t0))
	m.Consume(valid("ox1", drivers.MetricUnknown, 1, t0))
	m.Frame("ox1", drivers.FrameResult(200), 0)

	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, metric := range mf.GetMetric() {
			for _, lp := range metric.GetLabel() {
				if lp.GetValue() == "ghost" {
					t.Errorf("series created for an unconfigured device: %s", mf.GetName())
				}
			}
		}
	}
	assertLines(t, scrape(t, m.Registry(), "vigil_unknown_device_events_total"),
		`vigil_unknown_device_events_total{room="room-2",site="clinic-a"} 4`)
	lines := scrape(t, m.Registry(), "vigil_readings_total")
	if !slices.Contains(lines, `vigil_readings_total{device="ox1",metric="unknown",room="room-2",site="clinic-a"} 2`) {
		t.Errorf("unknown metric readings not counted:\n%s", strings.Join(lines, "\n"))
	}
	assertLines(t, scrape(t, m.Registry(), vitalNames...))
}

func TestBuildInfo(t *testing.T) {
	m := newTest(&fakeClock{now: t0}, Options{Version: "1.2.3", Revision: "abc123"})
	assertLines(t, scrape(t, m.Registry(), "vigil_build_info"),
		fmt.Sprintf(`vigil_build_info{goversion=%q,revision="abc123",room="room-2",site="clinic-a",version="1.2.3"} 1`, runtime.Version()))
}

func TestSiteAndRoomOnEveryVigilSeries(t *testing.T) {
	clock := &fakeClock{now: t0}
	m := newTest(clock, Options{})
	m.Consume(valid("ox1", drivers.SpO2, 97, t0))
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	var vigil, runtimeFamilies int
	for _, mf := range mfs {
		if !strings.HasPrefix(mf.GetName(), "vigil_") {
			runtimeFamilies++
			continue
		}
		vigil++
		for _, metric := range mf.GetMetric() {
			labels := map[string]string{}
			for _, lp := range metric.GetLabel() {
				labels[lp.GetName()] = lp.GetValue()
			}
			if labels["site"] != "clinic-a" || labels["room"] != "room-2" {
				t.Errorf("%s %v lacks site/room", mf.GetName(), labels)
			}
		}
	}
	if vigil == 0 || runtimeFamilies == 0 {
		t.Fatalf("gathered %d vigil and %d Go/process families", vigil, runtimeFamilies)
	}
}

func TestConcurrentConsumeAndScrape(t *testing.T) {
	const (
		devices  = 4
		readings = 2000
	)
	clock := &fakeClock{now: t0}
	var cfg []Device
	for i := range devices {
		cfg = append(cfg, Device{ID: fmt.Sprintf("ox%d", i), Metrics: []drivers.MetricID{drivers.SpO2, drivers.PulseRate}})
	}
	m := newTest(clock, Options{Devices: cfg})

	stop := make(chan struct{})
	var scraper sync.WaitGroup
	scraper.Add(1)
	go func() {
		defer scraper.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := m.Registry().Gather(); err != nil {
				t.Error(err)
				return
			}
			clock.Set(clock.Now().Add(time.Millisecond))
		}
	}()

	var feeders sync.WaitGroup
	for i := range devices {
		feeders.Add(1)
		go func(id string) {
			defer feeders.Done()
			m.DeviceStatus(devstatus.Status{Device: id, State: devstatus.Connected})
			for n := range readings {
				at := t0.Add(time.Duration(n) * time.Millisecond)
				if n%10 == 9 {
					m.Consume(noValue(id, drivers.SpO2, at))
				} else {
					m.Consume(valid(id, drivers.SpO2, float64(90+n%10), at))
				}
				m.Consume(valid(id, drivers.PulseRate, 60, at))
				m.Frame(id, drivers.FrameOK, n%2)
				if n%500 == 0 {
					m.Reconnected(id)
				}
			}
		}(cfg[i].ID)
	}
	feeders.Wait()
	close(stop)
	scraper.Wait()

	for i := range devices {
		id := cfg[i].ID
		lines := scrape(t, m.Registry(), "vigil_readings_total", "vigil_frames_total")
		for _, want := range []string{
			fmt.Sprintf(`vigil_readings_total{device=%q,metric="spo2",room="room-2",site="clinic-a"} %d`, id, readings),
			fmt.Sprintf(`vigil_readings_total{device=%q,metric="pulse_rate",room="room-2",site="clinic-a"} %d`, id, readings),
			fmt.Sprintf(`vigil_frames_total{device=%q,result="ok",room="room-2",site="clinic-a"} %d`, id, readings),
		} {
			if !slices.Contains(lines, want) {
				t.Errorf("missing %s", want)
			}
		}
	}
}

func TestMetricNamesLintClean(t *testing.T) {
	clock := &fakeClock{now: t0}
	m := newTest(clock, Options{Devices: []Device{oximeter, cuff, {ID: "cap1", Metrics: []drivers.MetricID{drivers.RespirationRate}}}})
	populate(m)
	problems, err := testutil.GatherAndLint(m.Registry())
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}

// populate gives every vigil_* family at least one sample, so linters see
// all of them.
func populate(m *Metrics) {
	at := m.now()
	for _, g := range vitalGauges {
		device := "ox1"
		switch {
		case g.metric == drivers.RespirationRate:
			device = "cap1"
		case !g.metric.Info().Continuous:
			device = "bp1"
		}
		m.Consume(valid(device, g.metric, g.metric.Info().Min+1, at))
	}
	m.Frame("ox1", drivers.FrameOK, 1)
	m.DeviceStatus(devstatus.Status{Device: "ox1", State: devstatus.Connected, Conditions: devstatus.Conditions()})
	m.Reconnected("ox1")
	m.MQTTPublishError()
	m.SetMQTTConnected(true)
}

func BenchmarkConsume(b *testing.B) {
	clock := &fakeClock{now: t0}
	m := newTest(clock, Options{})
	r := valid("ox1", drivers.SpO2, 97, t0)
	b.ReportAllocs()
	for b.Loop() {
		m.Consume(r)
	}
}

func BenchmarkConsumeParallelDevices(b *testing.B) {
	clock := &fakeClock{now: t0}
	var cfg []Device
	for i := range 8 {
		cfg = append(cfg, Device{ID: fmt.Sprintf("ox%d", i), Metrics: []drivers.MetricID{drivers.SpO2}})
	}
	m := newTest(clock, Options{Devices: cfg})
	var next sync.Mutex
	n := 0
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		next.Lock()
		r := valid(cfg[n%len(cfg)].ID, drivers.SpO2, 97, t0)
		n++
		next.Unlock()
		for pb.Next() {
			m.Consume(r)
		}
	})
}

func BenchmarkScrape(b *testing.B) {
	clock := &fakeClock{now: t0}
	m := newTest(clock, Options{Devices: []Device{oximeter, cuff, {ID: "cap1", Metrics: []drivers.MetricID{drivers.RespirationRate}}}})
	populate(m)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.Registry().Gather(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDeviceStatus(b *testing.B) {
	m := newTest(&fakeClock{now: t0}, Options{})
	statuses := []devstatus.Status{
		{Device: "ox1", State: devstatus.Connected, Conditions: []devstatus.Condition{devstatus.SensorOff, devstatus.LowSignalQuality}},
		{Device: "ox1", State: devstatus.Connected},
		{Device: "ox1", State: devstatus.Silent},
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		m.DeviceStatus(statuses[i%len(statuses)])
		i++
	}
}
