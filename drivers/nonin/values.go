package nonin

import (
	"time"

	"github.com/vigil-monitor/vigil/drivers"
)

// The "no value" sentinels of every binary Nonin format (protocols.md 1.2
// [C] for DF2; 1.3 and 1.4 carry them over to DF7 and DF8 [I]).
const (
	noHeartRate = 511 // 0x1FF: the 9-bit HR field all ones
	noSpO2      = 127 // 0x7F: the 7-bit SpO2 field all ones
)

// The catalogue entries of the metrics this package reports, copied once
// rather than for every reading.
var (
	spo2Info  = drivers.SpO2.Info()
	pulseInfo = drivers.PulseRate.Info()
)

// sensorAbsentFlags are the conditions under which the oximeter is not
// measuring a patient: a number sent beside them is not a vital sign, so
// the decoders mark it not Valid [I], as the masimo driver does (clinical.md
// 6: a stale value must never look live). Pinned by
// TestSensorConditionsInvalidateValues.
const sensorAbsentFlags = drivers.FlagNoSensor | drivers.FlagSensorOff | drivers.FlagSensorFault

// emitNumber reports one numeric reading. present is false for the device's
// no-value form. It returns false when a present value lies outside the
// metric's possible range (the frame is then FrameInvalidValue).
func emitNumber(sink drivers.Sink, m *drivers.Metric, v int, present bool, flags drivers.Flags, now time.Time) bool {
	r := drivers.Reading{Metric: m.ID, Received: now, Flags: flags}
	inRange := true
	if present {
		// Value keeps what the device sent even when it is not Valid, for
		// logs; consumers read it only when Valid (drivers.Reading).
		r.Value = float64(v)
		inRange = m.InRange(r.Value)
		if !inRange {
			r.Flags |= drivers.FlagOutOfRange
		}
		r.Valid = inRange && flags&sensorAbsentFlags == 0
	}
	sink.Reading(r)
	return inRange
}

// heartRate joins the two 7-bit-safe bytes that carry the 9-bit HR:
// bits 1-0 of msb are HR bits 8-7, bits 6-0 of lsb are HR bits 6-0
// (protocols.md 1.2 and 1.4). Other bits are masked off as the section says.
func heartRate(msb, lsb byte) int {
	return int(msb&0x03)<<7 | int(lsb&0x7F)
}

// dropRun accumulates bytes discarded while resynchronising, so that a
// stretch of lost bytes is reported as one frame with the reason that
// started it.
type dropRun struct {
	n      int
	result drivers.FrameResult
}

// add counts n more dropped bytes; why is kept only if the run is new.
func (r *dropRun) add(n int, why drivers.FrameResult) {
	if r.n == 0 {
		r.result = why
	}
	r.n += n
}

// flush reports the run, if any, as one frame.
func (r *dropRun) flush(sink drivers.Sink) {
	if r.n > 0 {
		sink.Frame(r.result, r.n)
		r.n = 0
	}
}
