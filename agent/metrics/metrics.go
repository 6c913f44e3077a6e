// Package metrics is Vigil's Prometheus exposition: the current vital signs of
// every configured device, each device's health (connected, technical
// conditions, last reading, frame outcomes, reconnects) and the agent's own health (MQTT, build, Go
// runtime, process).
//
// Everything lives in a registry of its own, never the global one, so tests
// and a second agent in one process see only their own series.
//
// Vital signs are the one place where a wrong exposition can hurt a patient:
// a dashboard or an alert rule reading a frozen SpO2 as live. They are
// therefore produced at scrape time by a collector that shows a value only
// while it is valid and fresh (see vitals.go); everything else is an ordinary
// counter or gauge.
package metrics

import (
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/vigil-monitor/vigil/agent/devstatus"
	"github.com/vigil-monitor/vigil/drivers"
)

// Defaults of Options.StaleAfter and Options.NIBPStaleAfter; they match the
// config defaults (config.DefaultStaleAfter, config.DefaultNIBPStaleAfter).
const (
	// Continuous metrics arrive at least once a second while a sensor is on
	// (drivers.Metric.Continuous), so 10 s without one means the value is no
	// longer current. It stays below the 15 s "SpO2 silent" condition of
	// clinical.md 4, so a dashboard blanks before that alarm would fire.
	DefaultStaleAfter = 10 * time.Second
	// NIBP is one measurement every 5-15 minutes (clinical.md 3); a reading
	// is the latest blood pressure until about one missed cycle later.
	DefaultNIBPStaleAfter = 20 * time.Minute
)

// Device is a configured device: its id and the metrics its driver reports.
type Device struct {
	ID      string
	Metrics []drivers.MetricID
}

// Options configure New.
type Options struct {
	Site, Room string
	// Devices are the configured devices. Their series (vigil_device_up,
	// vigil_device_condition, vigil_last_reading_timestamp_seconds,
	// counters) exist from the start,
	// so alert rules can fire on a device that never sends anything.
	Devices []Device
	// StaleAfter is how long a continuous metric's value stays in the scrape
	// after the reading that carried it; 0 means DefaultStaleAfter.
	StaleAfter time.Duration
	// NIBPStaleAfter is the same for discrete (NIBP) metrics; 0 means
	// DefaultNIBPStaleAfter.
	NIBPStaleAfter time.Duration
	// StaleAfterFor optionally overrides the limit per device and metric (a
	// device's stale_after in the config). It is called once per device and
	// catalogue metric inside New; a result <= 0 falls back to the defaults.
	StaleAfterFor func(device string, m drivers.MetricID) time.Duration
	// Now is the clock freshness is judged by at scrape time; nil means
	// time.Now. Readings are judged by their Received time.
	Now func() time.Time
	// Version and Revision label vigil_build_info.
	Version, Revision string
}

// Metrics holds Vigil's registry and the per-device state that feeds it. All
// methods are safe for concurrent use.
type Metrics struct {
	registry *prometheus.Registry
	now      func() time.Time

	// devices is built in New and only read afterwards, so the hot path
	// looks devices up without a lock.
	devices    map[string]*deviceState
	deviceList []*deviceState // configuration order, for the collector

	readings          *prometheus.CounterVec
	mqttConnected     prometheus.Gauge
	mqttPublishErrors prometheus.Counter
	unknownDevice     prometheus.Counter
}

// deviceState is one configured device. Counters and gauges are resolved in
// New so the hot path never builds a label set.
type deviceState struct {
	id string

	up          prometheus.Gauge
	lastReading prometheus.Gauge
	reconnects  prometheus.Counter
	discarded   prometheus.Counter
	frames      []prometheus.Counter // indexed by drivers.FrameResult
	// conditions are the vigil_device_condition gauges, indexed like
	// conditionLabels.
	conditions []prometheus.Gauge

	mu sync.Mutex // guards vitals and readings
	// vitals is indexed by drivers.MetricID; index 0 (MetricUnknown) and
	// waveform metrics are never shown.
	vitals []vitalSlot
	// readings is indexed by drivers.MetricID; index 0 counts readings of a
	// metric outside the catalogue (a driver bug). Entries for metrics the
	// device is not configured with are created on first use.
	readings []prometheus.Counter
}

// conditionLabels are the condition label values of vigil_device_condition:
// every devstatus condition, in devstatus.Conditions() order, then the two
// connection states alerts key on. DeviceStatus relies on this layout.
var conditionLabels = func() []string {
	var labels []string
	for _, c := range deviceConditions {
		labels = append(labels, string(c))
	}
	return append(labels, "disconnected", "silent")
}()

// deviceConditions is devstatus.Conditions(), taken once (it allocates).
var deviceConditions = devstatus.Conditions()

const (
	conditionDisconnected = iota // offsets after deviceConditions in conditionLabels
	conditionSilent
)

// catalogueSize is the length of per-metric arrays: one slot per catalogue
// metric plus slot 0 for MetricUnknown.
var catalogueSize = len(drivers.Metrics()) + 1

// New builds the registry with every Vigil metric and the Go and process
// collectors, and pre-creates the series of every configured device.
func New(o Options) *Metrics {
	if o.StaleAfter <= 0 {
		o.StaleAfter = DefaultStaleAfter
	}
	if o.NIBPStaleAfter <= 0 {
		o.NIBPStaleAfter = DefaultNIBPStaleAfter
	}
	if o.Now == nil {
		o.Now = time.Now
	}

	reg := prometheus.NewRegistry()
	// site and room go on every vigil_* series through the wrapper, in one
	// place, so no metric can be registered without them.
	vigilReg := prometheus.WrapRegistererWith(prometheus.Labels{"site": o.Site, "room": o.Room}, reg)

	m := &Metrics{
		registry: reg,
		now:      o.Now,
		devices:  make(map[string]*deviceState, len(o.Devices)),
		readings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_readings_total",
			Help: "Readings decoded from a device, per metric, whether or not they carried a valid value.",
		}, []string{"device", "metric"}),
		mqttConnected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "vigil_mqtt_connected",
			Help: "1 while the agent is connected to its MQTT broker, else 0.",
		}),
		mqttPublishErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_mqtt_publish_errors_total",
			Help: "MQTT publishes that reported an error.",
		}),
		unknownDevice: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_unknown_device_events_total",
			Help: "Readings, frames and status events for a device id that is not configured; they are not otherwise exported. Non-zero means the agent is miswired.",
		}),
	}
	up := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "vigil_device_up",
		Help: "1 while the device is connected and sending frames, 0 when disconnected or silent.",
	}, []string{"device"})
	// Before the first reading the timestamp is 0, not absent: an alert like
	// `time() - vigil_last_reading_timestamp_seconds > 30` then fires for a
	// device that was never heard from, which is what a session needs. An
	// absent series would make that alert silently never fire.
	lastReading := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "vigil_last_reading_timestamp_seconds",
		Help: "Unix time of the last reading received from the device (valid or not); 0 before the first.",
	}, []string{"device"})
	frames := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vigil_frames_total",
		Help: "Frames seen by the device's decoder, by outcome.",
	}, []string{"device", "result"})
	discarded := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vigil_discarded_bytes_total",
		Help: "Bytes from the device discarded while resynchronising to its framing.",
	}, []string{"device"})
	reconnects := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vigil_device_reconnects_total",
		Help: "Times the device's port was opened again after its first connection.",
	}, []string{"device"})
	// Every condition of every configured device exists from the start, so
	// an alert on `vigil_device_condition{condition="sensor-off"} == 1` has
	// a series to evaluate and `== 0` means "known not to be the case".
	conditions := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "vigil_device_condition",
		Help: "1 while the device has the technical condition, else 0. disconnected: the port is not open (also before the first connection); silent: the port is open but no frame arrives; the others come from the flags of the device's readings.",
	}, []string{"device", "condition"})
	build := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "vigil_build_info",
		Help: "Always 1; labels describe the running agent's build.",
	}, []string{"version", "revision", "goversion"})
	build.WithLabelValues(o.Version, o.Revision, runtime.Version()).Set(1)

	frameResults := drivers.FrameResults()
	frameSlots := 0
	for _, r := range frameResults {
		frameSlots = max(frameSlots, int(r)+1)
	}

	for _, cd := range o.Devices {
		if _, dup := m.devices[cd.ID]; dup {
			// Config validation rejects duplicate ids; if one slips through,
			// the first entry wins rather than two states sharing series.
			continue
		}
		d := &deviceState{
			id:          cd.ID,
			up:          up.WithLabelValues(cd.ID),
			lastReading: lastReading.WithLabelValues(cd.ID),
			reconnects:  reconnects.WithLabelValues(cd.ID),
			discarded:   discarded.WithLabelValues(cd.ID),
			frames:      make([]prometheus.Counter, frameSlots),
			vitals:      make([]vitalSlot, catalogueSize),
			readings:    make([]prometheus.Counter, catalogueSize),
			conditions:  make([]prometheus.Gauge, len(conditionLabels)),
		}
		for i, c := range conditionLabels {
			d.conditions[i] = conditions.WithLabelValues(cd.ID, c)
		}
		// Before its first status the device is not connected: it counts
		// as disconnected (vigil_device_up is 0 too), so an alert on
		// disconnection covers a device that never came up.
		d.conditions[len(deviceConditions)+conditionDisconnected].Set(1)
		for _, r := range frameResults {
			d.frames[r] = frames.WithLabelValues(cd.ID, r.String())
		}
		for _, id := range cd.Metrics {
			if id != drivers.MetricUnknown && int(id) < catalogueSize {
				d.readings[id] = m.readings.WithLabelValues(cd.ID, id.String())
			}
		}
		for id := 1; id < catalogueSize; id++ {
			d.vitals[id].staleAfter = staleAfter(o, cd.ID, drivers.MetricID(id))
		}
		m.devices[cd.ID] = d
		m.deviceList = append(m.deviceList, d)
	}

	vigilReg.MustRegister(
		newVitalCollector(m),
		m.readings, m.mqttConnected, m.mqttPublishErrors, m.unknownDevice,
		up, lastReading, frames, discarded, reconnects, conditions, build,
	)
	// Runtime and process metrics keep their standard names and labels so
	// stock dashboards work; they describe the agent, not a room.
	reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	return m
}

func staleAfter(o Options, device string, id drivers.MetricID) time.Duration {
	if o.StaleAfterFor != nil {
		if d := o.StaleAfterFor(device, id); d > 0 {
			return d
		}
	}
	if id.Info().Continuous {
		return o.StaleAfter
	}
	return o.NIBPStaleAfter
}

// Registry returns the registry holding every metric, for the HTTP handler.
func (m *Metrics) Registry() *prometheus.Registry { return m.registry }

// Consume records one reading. It is called for every reading, in order per
// device, from each device's goroutine, and does not allocate once a
// device's metric has been seen.
//
// A valid value becomes the metric's current value; a reading without a
// valid value (the device shows "no value", or the value is impossible)
// removes the current value at once, because the device has just said it
// has none. Waveform readings are counted but never shown as a gauge.
// Readings of a device that is not configured only increase
// vigil_unknown_device_events_total.
func (m *Metrics) Consume(r *drivers.Reading) {
	d := m.devices[r.Device]
	if d == nil {
		m.unknownDevice.Inc()
		return
	}
	id := r.Metric
	if int(id) >= catalogueSize {
		id = drivers.MetricUnknown
	}
	info := id.Info()

	d.mu.Lock()
	counter := d.readings[id]
	if counter == nil {
		// First reading of a metric the device was not configured with: a
		// one-time allocation, then the hot path is allocation-free again.
		counter = m.readings.WithLabelValues(d.id, id.String())
		d.readings[id] = counter
	}
	if id != drivers.MetricUnknown && !info.Waveform {
		slot := &d.vitals[id]
		// The pipeline already enforces the range; checking again here
		// means no upstream bug can put an impossible value on a dashboard.
		if r.Valid && info.InRange(r.Value) { // InRange is false for NaN and Inf
			slot.value = r.Value
			slot.received = r.Received
			slot.present = true
		} else {
			slot.present = false
		}
	}
	d.mu.Unlock()

	counter.Inc()
	if !r.Received.IsZero() {
		d.lastReading.Set(float64(r.Received.UnixNano()) / 1e9)
	}
}

// Frame counts one frame's outcome and the bytes discarded before it.
// Results outside drivers.FrameResults() are not counted (a driver bug);
// frames of a device that is not configured only increase
// vigil_unknown_device_events_total.
func (m *Metrics) Frame(device string, result drivers.FrameResult, dropped int) {
	d := m.devices[device]
	if d == nil {
		m.unknownDevice.Inc()
		return
	}
	if int(result) < len(d.frames) && d.frames[result] != nil {
		d.frames[result].Inc()
	}
	if dropped > 0 {
		d.discarded.Add(float64(dropped))
	}
}

// DeviceStatus sets vigil_device_up and vigil_device_condition from a
// change of a device's state or conditions. A device that disconnects loses
// all its current values at once: nothing it reported is live any more. A
// silent device loses its continuous values (they would be stale within
// seconds anyway) but keeps its last blood pressure, since an NIBP monitor is
// normally quiet between measurements and that value ages out by
// NIBPStaleAfter like any other.
//
// A state that is neither Connected nor Silent counts as Disconnected: a
// state this package does not know must not look live. Conditions outside
// devstatus.Conditions() are ignored (they have no series). It does not
// allocate.
func (m *Metrics) DeviceStatus(s devstatus.Status) {
	d := m.devices[s.Device]
	if d == nil {
		m.unknownDevice.Inc()
		return
	}
	disconnected := s.State != devstatus.Connected && s.State != devstatus.Silent
	for i, c := range deviceConditions {
		setFlag(d.conditions[i], slices.Contains(s.Conditions, c))
	}
	setFlag(d.conditions[len(deviceConditions)+conditionDisconnected], disconnected)
	setFlag(d.conditions[len(deviceConditions)+conditionSilent], s.State == devstatus.Silent)
	if s.State == devstatus.Connected {
		d.up.Set(1)
		return
	}
	d.up.Set(0)
	d.mu.Lock()
	for id := range d.vitals {
		if disconnected || drivers.MetricID(id).Info().Continuous {
			d.vitals[id].present = false
		}
	}
	d.mu.Unlock()
}

func setFlag(g prometheus.Gauge, on bool) {
	if on {
		g.Set(1)
	} else {
		g.Set(0)
	}
}

// Reconnected counts a reconnection of device (its port opened again after
// the first connection).
func (m *Metrics) Reconnected(device string) {
	d := m.devices[device]
	if d == nil {
		m.unknownDevice.Inc()
		return
	}
	d.reconnects.Inc()
}

// SetMQTTConnected sets vigil_mqtt_connected.
func (m *Metrics) SetMQTTConnected(connected bool) { setFlag(m.mqttConnected, connected) }

// MQTTPublishError counts one failed MQTT publish.
func (m *Metrics) MQTTPublishError() { m.mqttPublishErrors.Inc() }
