package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-monitor/vigil/drivers"
)

// vitalGauge maps a catalogue metric to its Prometheus gauge. Units follow
// Prometheus conventions where they exist: percentages become 0-1 ratios
// (_ratio); rates stay in beats or breaths per minute and pressures in mmHg,
// the units every clinician and alert threshold uses (clinical.md 4).
type vitalGauge struct {
	metric  drivers.MetricID
	name    string
	help    string
	divisor float64 // value/divisor is exported; division keeps 97/100 == 0.97 exactly
}

var vitalGauges = []vitalGauge{
	{drivers.SpO2, "vigil_spo2_ratio", "Current SpO2 as a fraction (0-1); absent when the device has no valid, fresh value.", 100},
	{drivers.PulseRate, "vigil_pulse_rate_bpm", "Current pulse rate from the oximeter in beats per minute; absent when not valid and fresh.", 1},
	{drivers.PerfusionIndex, "vigil_perfusion_index_ratio", "Current perfusion index as a fraction (0-1); absent when not valid and fresh.", 100},
	{drivers.NIBPSystolic, "vigil_nibp_systolic_mmhg", "Last non-invasive systolic blood pressure in mmHg; absent when not valid and fresh.", 1},
	{drivers.NIBPDiastolic, "vigil_nibp_diastolic_mmhg", "Last non-invasive diastolic blood pressure in mmHg; absent when not valid and fresh.", 1},
	{drivers.NIBPMean, "vigil_nibp_mean_mmhg", "Last non-invasive mean arterial pressure in mmHg; absent when not valid and fresh.", 1},
	{drivers.NIBPPulseRate, "vigil_nibp_pulse_rate_bpm", "Pulse rate of the last NIBP measurement in beats per minute; absent when not valid and fresh.", 1},
	{drivers.RespirationRate, "vigil_respiration_rate_bpm", "Current respiration rate in breaths per minute; absent when not valid and fresh.", 1},
}

// vitalSlot is the current value of one metric of one device.
type vitalSlot struct {
	value    float64
	received time.Time
	present  bool // a valid value arrived and nothing has removed it since
	// staleAfter is fixed in New; the value leaves the scrape once it is
	// older than this.
	staleAfter time.Duration
}

// fresh reports whether the slot's value may be shown at time now. A value
// received "in the future" (the wall clock stepped back, which time.Time's
// monotonic reading normally hides) is not shown: its age is unknown, and an
// unknown age must never look live. A zero Received time is never fresh.
func (s *vitalSlot) fresh(now time.Time) bool {
	if !s.present || s.received.IsZero() {
		return false
	}
	age := now.Sub(s.received)
	return age >= 0 && age <= s.staleAfter
}

// vitalCollector emits, at scrape time, the value of every device metric
// that is valid and fresh, and nothing for the others: an absent series makes
// dashboards show "no data" and lets absent() alerts fire, whereas a held
// value would look live and a NaN would silently defeat `x < 0.9` alerts.
//
// Samples carry no timestamp. Prometheus handles an exporter's samples by
// scrape time: when a series disappears from a scrape it marks it stale and
// stops returning it at once. Samples with explicit timestamps are exempt
// from that staleness handling and would linger in queries for up to five
// minutes after the value was withdrawn: exactly the frozen value this
// collector exists to prevent.
type vitalCollector struct {
	m     *Metrics
	descs []*prometheus.Desc // indexed by drivers.MetricID; nil = not a gauge
	scale []float64          // divisor per drivers.MetricID
}

func newVitalCollector(m *Metrics) *vitalCollector {
	c := &vitalCollector{
		m:     m,
		descs: make([]*prometheus.Desc, catalogueSize),
		scale: make([]float64, catalogueSize),
	}
	for _, g := range vitalGauges {
		c.descs[g.metric] = prometheus.NewDesc(g.name, g.help, []string{"device"}, nil)
		c.scale[g.metric] = g.divisor
	}
	return c
}

func (c *vitalCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range c.descs {
		if d != nil {
			ch <- d
		}
	}
}

func (c *vitalCollector) Collect(ch chan<- prometheus.Metric) {
	now := c.m.now()
	type sample struct {
		id    int
		value float64
	}
	var current []sample
	for _, d := range c.m.deviceList {
		current = current[:0]
		d.mu.Lock()
		for id := range d.vitals {
			if c.descs[id] != nil && d.vitals[id].fresh(now) {
				current = append(current, sample{id, d.vitals[id].value})
			}
		}
		d.mu.Unlock()
		// Sending happens outside the lock so a slow scrape never delays
		// a device's readings.
		for _, s := range current {
			ch <- prometheus.MustNewConstMetric(c.descs[s.id], prometheus.GaugeValue, s.value/c.scale[s.id], d.id)
		}
	}
}
