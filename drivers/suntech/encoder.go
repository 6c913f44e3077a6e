package suntech

import (
	"math"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
)

// Encoder renders frames as the module's LEN=0x18 result packet, the
// reply to "get BP data" (protocols.md 4.1), for the simulator, which plays
// frames without listening to the host. The real module never sends a
// result unasked; the Decoder reports one anyway (README.md), so the
// simulator works without answering the conversation. For a full
// conversation use Module.
//
// The module's "no value" is a non-zero error code with the values zeroed:
//   - FlagCuffError: error 0x87 (cuff error, protocols.md 4.1);
//   - a metric missing from Frame.Values: error 0x01 (weak or no signal);
//   - a value the packet cannot carry (NaN, negative, above 65535, a pulse
//     rate above 255): error 0x03 (out of range).
//
// Values are rounded to whole mmHg and beats per minute. Beats, BP status
// and the test codes are zero. Frame.Time and DeviceSN are not sent: the
// result carries neither.
type Encoder struct{}

// Encoder error codes (see Encoder).
const (
	encodeCuffError  = 0x87
	encodeNoValue    = 0x01
	encodeOutOfRange = 0x03
)

// Interval: the module sends nothing unasked. The simulator plays one
// result every 10 s, inside SilentAfter (15 s), because a simulated device
// that does not answer the idle probes must still look alive.
func (Encoder) Interval() time.Duration { return interval }

// Encode appends one result packet to dst.
func (Encoder) Encode(dst []byte, f drivers.Frame) []byte {
	return AppendResultReply(dst, ResultFor(f))
}

// ResultFor is the Result the Encoder sends for f (see Encoder).
func ResultFor(f drivers.Frame) Result {
	if f.Flags&drivers.FlagCuffError != 0 {
		return Result{ErrorCode: encodeCuffError}
	}
	var v [4]float64
	for i, m := range [...]drivers.MetricID{drivers.NIBPSystolic, drivers.NIBPDiastolic, drivers.NIBPMean, drivers.NIBPPulseRate} {
		x, ok := f.Values[m]
		if !ok {
			return Result{ErrorCode: encodeNoValue}
		}
		v[i] = math.Round(x)
	}
	for i, x := range v {
		limit := float64(math.MaxUint16)
		if i == 3 {
			limit = math.MaxUint8
		}
		if !(x >= 0 && x <= limit) { // NaN fails too
			return Result{ErrorCode: encodeOutOfRange}
		}
	}
	return Result{
		Systolic:  uint16(v[0]),
		Diastolic: uint16(v[1]),
		Mean:      uint16(v[2]),
		HeartRate: uint8(v[3]),
	}
}
