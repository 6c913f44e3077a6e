package drivers

import (
	"math/bits"
	"strings"
	"time"
)

// Reading is one value of one metric from one device, as decoded. The agent
// fills Device and Seq; a driver fills the rest.
type Reading struct {
	Device string   // configured device id (set by the agent)
	Seq    uint64   // per-device sequence, +1 for every reading (set by the agent)
	Metric MetricID // what was measured
	// Value is meaningful only when Valid. A device's "no value" form (Masimo
	// "---", Nonin 127/511, ...) and a value outside the metric's possible
	// range both leave Valid false; the latter also sets FlagOutOfRange.
	Value float64
	Valid bool
	// Samples holds a waveform batch (Pleth) in arrival order, at SampleRate Hz.
	// The slice belongs to the reading: a driver must not reuse it.
	Samples    []float64
	SampleRate float64
	// DeviceTime is the device's own timestamp, zero when the protocol has none.
	// Device clocks are set by hand and drift: it is recorded, never trusted.
	DeviceTime time.Time
	// Received is the agent's clock when the bytes that completed this reading
	// were read.
	Received time.Time
	Flags    Flags
	// Session is the room's dosing session when the reading was taken (an
	// opaque id; set by the agent, "" outside a session).
	Session string
}

// HasValue reports whether the reading carries a usable value.
func (r *Reading) HasValue() bool { return r.Valid || len(r.Samples) > 0 }

// Flags are quality conditions a device reports with a value. A flagged value
// may still be Valid (low perfusion), or not (sensor off); consumers decide
// what each flag means for alarms.
type Flags uint32

const (
	FlagSensorOff        Flags = 1 << iota // sensor off the patient, or no finger
	FlagNoSensor                           // no sensor connected to the device
	FlagSensorFault                        // defective or unrecognised sensor
	FlagSearching                          // searching for a pulse, out of track
	FlagArtifact                           // motion or interference artefact
	FlagLowPerfusion                       // perfusion too low for a reliable value
	FlagLowSignalQuality                   // the device's signal-quality index is low
	FlagAmbientLight                       // too much ambient light on the sensor
	FlagOutOfRange                         // value outside the metric's possible range: invalid
	FlagDeviceAlarm                        // the device itself is alarming (information only)
	FlagAlarmSilenced                      // the device's alarm audio is silenced (information only)
	FlagCuffError                          // NIBP measurement failed (the device's error code)
	FlagInflating                          // NIBP cuff measurement in progress
	flagEnd
)

var flagNames = [...]string{
	"sensor-off",
	"no-sensor",
	"sensor-fault",
	"searching",
	"artifact",
	"low-perfusion",
	"low-signal-quality",
	"ambient-light",
	"out-of-range",
	"device-alarm",
	"alarm-silenced",
	"cuff-error",
	"inflating",
}

// Names returns the flag names in bit order; nil when no flag is set.
func (f Flags) Names() []string {
	if f == 0 {
		return nil
	}
	out := make([]string, 0, bits.OnesCount32(uint32(f)))
	for i, n := range flagNames {
		if f&(1<<i) != 0 {
			out = append(out, n)
		}
	}
	return out
}

// AppendNames appends the flag names to dst, for allocation-free encoding.
func (f Flags) AppendNames(dst []string) []string {
	for i, n := range flagNames {
		if f&(1<<i) != 0 {
			dst = append(dst, n)
		}
	}
	return dst
}

func (f Flags) String() string { return strings.Join(f.Names(), ",") }

// FlagByName parses one flag name such as "sensor-off".
func FlagByName(name string) (Flags, bool) {
	for i, n := range flagNames {
		if n == name {
			return 1 << i, true
		}
	}
	return 0, false
}

// Has reports whether all bits of g are set in f.
func (f Flags) Has(g Flags) bool { return f&g == g }
