package contec

import (
	"math"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
)

// Encoder renders frames as a CMS50 of one generation streams them, for
// the simulator and tests. One drivers.Frame is one second of device
// output: one live frame per pleth sample, so len(f.Samples) frames, or 60
// when f.Samples is empty, with a pleth curve drawn from the pulse rate.
// Every live frame of a call carries f's SpO2, pulse rate and flags.
//
// The v4.6 encoder streams from the first call: the simulator does not
// parse host commands, so it never waits for the start command or the
// keep-alive a real device needs (README "Simulator").
//
// A value missing from f.Values, not finite, or outside what the frame can
// carry (SpO2 0-126, pulse 0-254) is sent as the device's no-value form
// (SpO2 127, pulse 255). While the flags say sensor off, no sensor or
// sensor fault, both values are sent as no value and the pleth is flat, as
// the device shows no signal.
type Encoder struct {
	protocol Protocol
}

// NewEncoder returns the encoder of protocol p; auto encodes firmware 4.6+,
// the generation of the driver's default link.
func NewEncoder(p Protocol) Encoder {
	if p != ProtocolLegacy {
		p = ProtocolV46
	}
	return Encoder{protocol: p}
}

// Interval is one second: each Encode call is one second of stream.
func (Encoder) Interval() time.Duration { return time.Second }

// Protocol is the generation the encoder writes.
func (e Encoder) Protocol() Protocol { return e.protocol }

// samplePeriod is the time between live frames.
const samplePeriod = time.Second / SampleRate

// signalStrength is what the encoder reports while measuring: 5 of 0-8,
// as in the worked examples (0x85, protocols.md 3.2, 3.3).
const signalStrength = 5

// sensorAbsentFlags make the device show no values and no waveform.
const sensorAbsentFlags = drivers.FlagSensorOff | drivers.FlagNoSensor | drivers.FlagSensorFault

// Encode appends one second of live frames to dst.
func (e Encoder) Encode(dst []byte, f drivers.Frame) []byte {
	measuring := f.Flags&sensorAbsentFlags == 0
	spo2, pulse := noSpO2, noPulse
	if measuring {
		spo2 = encodable(f.Values, drivers.SpO2, noSpO2)
		pulse = encodable(f.Values, drivers.PulseRate, noPulse)
	}
	n := len(f.Samples)
	if n == 0 {
		n = PlethBatch
	}
	// The beat marker follows the drawn curve's phase; it is set on the
	// frame where a new beat starts (and the one after, in v4.6 packets:
	// "about 2 consecutive packets per beat", protocols.md 3.3).
	beating := measuring && pulse != noPulse && pulse > 0
	prevPhase := 0.0
	if beating {
		prevPhase = beatPhase(f.Time.Add(-samplePeriod), pulse)
	}
	beatAge := 2
	for i := range n {
		t := f.Time.Add(time.Duration(i) * samplePeriod)
		var pleth uint8
		if beating {
			ph := beatPhase(t, pulse)
			if ph < prevPhase {
				beatAge = 0
			}
			prevPhase = ph
			pleth = uint8(math.Round(15 + 90*pulseShape(ph)))
		}
		if len(f.Samples) > 0 {
			pleth = 0
			if measuring {
				pleth = clampSample(f.Samples[i])
			}
		}
		if e.protocol == ProtocolLegacy {
			dst = appendLegacy(dst, f.Flags, pleth, spo2, pulse, beatAge == 0)
		} else {
			dst = appendV46(dst, f.Flags, pleth, spo2, pulse, beatAge < 2)
		}
		beatAge++
	}
	return dst
}

func appendLegacy(dst []byte, flags drivers.Flags, pleth uint8, spo2, pulse int, beat bool) []byte {
	b0 := byte(0x80)
	b2 := (pleth >> 3) & legacyBarMask
	if flags&sensorAbsentFlags == 0 {
		b0 |= signalStrength
	}
	if flags&(drivers.FlagSensorOff|drivers.FlagNoSensor) != 0 {
		b0 |= legacyFingerOut
	}
	if flags&drivers.FlagSensorFault != 0 {
		b2 |= legacyProbeError
	}
	if flags&drivers.FlagSearching != 0 {
		b2 |= legacySearching
	}
	if beat {
		b0 |= legacyBeep
	}
	b2 |= byte(pulse&0x80) >> 1
	return append(dst, b0, pleth&0x7F, b2, byte(pulse&0x7F), byte(spo2&0x7F))
}

func appendV46(dst []byte, flags drivers.Flags, pleth uint8, spo2, pulse int, beat bool) []byte {
	status := byte(0xE0)
	b2 := byte(0x80)
	if flags&sensorAbsentFlags == 0 {
		b2 |= signalStrength
	} else {
		// v4.6 has one bit for all of them (protocols.md 3.3).
		status |= v46FingerOut
	}
	if flags&drivers.FlagSearching != 0 {
		status |= v46Searching
	}
	if beat {
		b2 |= v46Beat
	}
	status |= byte(pulse&0x80) >> 4
	return append(dst, v46Live, status, b2, 0x80|pleth&0x7F, 0x80|(pleth>>1),
		0x80|byte(pulse&0x7F), 0x80|byte(spo2&0x7F), 0xFF, 0xFF)
}

// encodable returns values[m] rounded, or the sentinel when it is missing
// or outside 0..sentinel-1.
func encodable(values map[drivers.MetricID]float64, m drivers.MetricID, sentinel int) int {
	v, ok := values[m]
	if !ok {
		return sentinel
	}
	r := math.Round(v)
	if !(r >= 0 && r < float64(sentinel)) { // false for NaN
		return sentinel
	}
	return int(r)
}

// clampSample rounds a pleth sample into the 7 bits a frame carries.
func clampSample(v float64) uint8 {
	r := math.Round(v)
	switch {
	case !(r >= 0): // negative or NaN
		return 0
	case r > 127:
		return 127
	}
	return uint8(r)
}

// beatPhase is where t falls in the beat, in [0, 1), at pulse beats per
// minute. It depends on t alone, so consecutive calls join up.
func beatPhase(t time.Time, pulse int) float64 {
	const day = 86400
	sec := float64(t.Unix()%day) + float64(t.Nanosecond())/1e9
	beats := sec * float64(pulse) / 60
	return beats - math.Floor(beats)
}

// pulseShape is a plausible pleth curve over one beat, 0..1: a quick
// systolic rise, a decay and a small dicrotic wave.
func pulseShape(ph float64) float64 {
	if ph < 0.2 {
		s := math.Sin(ph / 0.2 * math.Pi / 2)
		return s * s
	}
	x := (ph - 0.2) / 0.8
	notch := (x - 0.3) / 0.08
	v := (1-x)*(1-x) + 0.12*math.Exp(-notch*notch)
	return math.Min(1, v)
}
