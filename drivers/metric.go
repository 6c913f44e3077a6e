package drivers

// Metric describes one vital-sign quantity Vigil knows: its name on MQTT and
// in the config, its ISO/IEEE 11073-10101 nomenclature, its UCUM unit and the
// range of values a living patient can physically have. A value outside that
// range is a device or decoding fault, never a vital sign (protocols.md 5.3,
// clinical.md 2).
type Metric struct {
	ID       MetricID
	Name     string  // catalogue name: topics, config, payloads
	MDC      string  // ISO/IEEE 11073-10101 reference id
	MDCCode  uint32  // ISO/IEEE 11073-10101 numeric code (partition*65536 + term)
	Unit     string  // UCUM unit
	Min, Max float64 // physiologically possible range, inclusive
	// Waveform metrics carry many samples per reading and are never exported
	// as Prometheus gauges.
	Waveform bool
	// Continuous metrics arrive at least once a second while a sensor is on;
	// discrete ones (NIBP) arrive once per measurement.
	Continuous bool
}

// MetricID indexes the catalogue. Its zero value is not a metric.
type MetricID uint8

// The metric catalogue. The order is stable and used as an array index.
const (
	MetricUnknown MetricID = iota
	SpO2
	PulseRate
	PerfusionIndex
	NIBPSystolic
	NIBPDiastolic
	NIBPMean
	NIBPPulseRate
	RespirationRate
	Pleth
	NIBPCuffPressure
	metricCount
)

// Codes and units: protocols.md 5.3 and clinical.md 2. Ranges are what a
// monitor can meaningfully report for a living adult, wide on purpose: they
// catch decoding faults and sentinels, not clinical abnormality.
var catalogue = [metricCount]Metric{
	SpO2: {ID: SpO2, Name: "spo2", MDC: "MDC_PULS_OXIM_SAT_O2", MDCCode: 150456, Unit: "%",
		Min: 0, Max: 100, Continuous: true},
	PulseRate: {ID: PulseRate, Name: "pulse_rate", MDC: "MDC_PULS_OXIM_PULS_RATE", MDCCode: 149530, Unit: "/min",
		Min: 0, Max: 350, Continuous: true},
	// Masimo reports PI from 0.02 to 20 %; Nonin and others stay below that.
	PerfusionIndex: {ID: PerfusionIndex, Name: "perfusion_index", MDC: "MDC_PULS_OXIM_PERF_REL", MDCCode: 150448, Unit: "%",
		Min: 0, Max: 100, Continuous: true},
	NIBPSystolic: {ID: NIBPSystolic, Name: "nibp_systolic", MDC: "MDC_PRESS_BLD_NONINV_SYS", MDCCode: 150021, Unit: "mm[Hg]",
		Min: 20, Max: 300},
	NIBPDiastolic: {ID: NIBPDiastolic, Name: "nibp_diastolic", MDC: "MDC_PRESS_BLD_NONINV_DIA", MDCCode: 150022, Unit: "mm[Hg]",
		Min: 10, Max: 250},
	NIBPMean: {ID: NIBPMean, Name: "nibp_mean", MDC: "MDC_PRESS_BLD_NONINV_MEAN", MDCCode: 150023, Unit: "mm[Hg]",
		Min: 15, Max: 275},
	NIBPPulseRate: {ID: NIBPPulseRate, Name: "nibp_pulse_rate", MDC: "MDC_PULS_RATE_NON_INV", MDCCode: 149546, Unit: "/min",
		Min: 0, Max: 350},
	RespirationRate: {ID: RespirationRate, Name: "respiration_rate", MDC: "MDC_RESP_RATE", MDCCode: 151562, Unit: "/min",
		Min: 0, Max: 150, Continuous: true},
	// The cuff pressure while an NIBP measurement runs, so staff can see one
	// is in progress. The code is MDC_PRESS_CUFF's as mdpnp's nomenclature
	// gives it (term 19228); not checked against ISO/IEEE 11073-10101 [U].
	NIBPCuffPressure: {ID: NIBPCuffPressure, Name: "nibp_cuff_pressure", MDC: "MDC_PRESS_CUFF", MDCCode: 150300, Unit: "mm[Hg]",
		Min: 0, Max: 350},
	// Pleth samples are in the device's own arbitrary units (MDC_DIM_DIMLESS).
	Pleth: {ID: Pleth, Name: "pleth", MDC: "MDC_PULS_OXIM_PLETH", MDCCode: 150452, Unit: "1",
		Min: 0, Max: 65535, Continuous: true, Waveform: true},
}

// Metrics returns the catalogue in index order.
func Metrics() []Metric {
	out := make([]Metric, 0, metricCount-1)
	for _, m := range catalogue[1:] {
		out = append(out, m)
	}
	return out
}

// Info returns the catalogue entry of id; the zero Metric when id is unknown.
func (id MetricID) Info() Metric {
	if id == MetricUnknown || id >= metricCount {
		return Metric{}
	}
	return catalogue[id]
}

// String is the catalogue name.
func (id MetricID) String() string {
	if id >= metricCount {
		return "unknown"
	}
	if n := catalogue[id].Name; n != "" {
		return n
	}
	return "unknown"
}

// MetricByName looks up a catalogue name such as "spo2".
func MetricByName(name string) (MetricID, bool) {
	for _, m := range catalogue[1:] {
		if m.Name == name {
			return m.ID, true
		}
	}
	return MetricUnknown, false
}

// InRange reports whether v is a value this metric can physically have.
func (m Metric) InRange(v float64) bool {
	return v >= m.Min && v <= m.Max // false for NaN
}
