package nonin

import (
	"math"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
)

// PacketEncoder renders frames as a DF2 or DF7 device sends them, for the
// simulator and tests: one drivers.Frame is one 25-frame packet (1/3 s).
//
//   - SpO2 and pulse rate fill every field of the DATA schedule that holds
//     them (standard, extended, display); a missing value, one the field
//     cannot hold (SpO2 above 126, HR above 510, negative, NaN) and every
//     value while the flags say no sensor, sensor off or sensor fault are
//     sent as the 127/511 sentinels.
//   - Frame.Samples give the 25 pleth samples in order, rounded and clamped
//     to the format's range (DF2 0-255, DF7 0-65535); NaN is mid-scale. Fewer
//     than 25 hold the last sample; more are cut. Without samples the pleth
//     is flat at mid-scale (128, 32768): the simulator has no waveform.
//   - Flags set the STATUS bits of every frame: no sensor or sensor off
//     SNSD, artifact ARTF, searching OOT, sensor fault SNSA, low perfusion
//     red, else low signal quality yellow, else green (no colour while SNSD).
//     A real device shows the colour only during a pulse.
//   - The firmware revision is EncoderRevision; DF7's second status byte
//     (frame 8) is 0: no SmartPoint, battery good.
type PacketEncoder struct {
	df7 bool
}

// EncoderRevision is the firmware revision the simulator reports in frame 4.
const EncoderRevision = 0x30

// NewDF2Encoder returns the simulator's Data Format #2 encoder.
func NewDF2Encoder() PacketEncoder { return PacketEncoder{} }

// NewDF7Encoder returns the simulator's Data Format #7 encoder.
func NewDF7Encoder() PacketEncoder { return PacketEncoder{df7: true} }

// Interval is one packet: 25 frames at 75 Hz (protocols.md 1.2).
func (PacketEncoder) Interval() time.Duration { return time.Second / 3 }

// Encode appends one 125-byte packet to dst.
func (e PacketEncoder) Encode(dst []byte, f drivers.Frame) []byte {
	measuring := f.Flags&sensorAbsentFlags == 0
	spo2 := encodeSpO2(f.Values, measuring)
	hr := encodeHeartRate(f.Values, measuring)
	msb, lsb := byte(hr>>7)&0x03, byte(hr)&0x7F

	var data [packetFrames]byte
	data[dataHRMSB], data[dataHRLSB], data[dataSpO2] = msb, lsb, spo2
	data[3] = EncoderRevision
	data[8], data[9], data[10] = spo2, spo2, spo2 // SpO2-D, fast, beat-to-beat
	data[13], data[14] = msb, lsb                 // E-HR
	data[15], data[16] = spo2, spo2               // E-SpO2, E-SpO2-D
	data[19], data[20] = msb, lsb                 // HR-D
	data[21], data[22] = msb, lsb                 // E-HR-D

	status := statusBits(f.Flags)
	top := 255.0
	if e.df7 {
		top = 65535
	}
	for i := range packetFrames {
		st := status
		if i == 0 {
			st |= statusSync
		}
		s := uint16(plethSample(f.Samples, i, top))
		var fr [frameLen]byte
		if e.df7 {
			fr = [frameLen]byte{st, byte(s >> 8), byte(s), data[i]}
		} else {
			fr = [frameLen]byte{0x01, st, byte(s), data[i]}
		}
		fr[4] = fr[0] + fr[1] + fr[2] + fr[3]
		dst = append(dst, fr[:]...)
	}
	return dst
}

// statusBits is the inverse of packetFlags for the flags STATUS can carry.
func statusBits(flags drivers.Flags) byte {
	st := byte(statusFrameBit)
	snsd := flags&(drivers.FlagNoSensor|drivers.FlagSensorOff) != 0
	if snsd {
		st |= statusSNSD
	}
	if flags&drivers.FlagArtifact != 0 {
		st |= statusARTF
	}
	if flags&drivers.FlagSearching != 0 {
		st |= statusOOT
	}
	if flags&drivers.FlagSensorFault != 0 {
		st |= statusSNSA
	}
	switch {
	case snsd:
	case flags&drivers.FlagLowPerfusion != 0:
		st |= 0x04 // red
	case flags&drivers.FlagLowSignalQuality != 0:
		st |= 0x06 // yellow
	default:
		st |= 0x02 // green
	}
	return st
}

// plethSample is sample i of the packet as the format carries it.
func plethSample(samples []float64, i int, top float64) float64 {
	mid := math.Ceil(top / 2) // 128, 32768
	if len(samples) == 0 {
		return mid
	}
	v := samples[min(i, len(samples)-1)]
	if math.IsNaN(v) {
		return mid
	}
	return math.Max(0, math.Min(top, math.Round(v)))
}

// encodeSpO2 is the 7-bit SpO2 field: 0-126, or 127 for no value.
func encodeSpO2(values map[drivers.MetricID]float64, measuring bool) byte {
	v, ok := values[drivers.SpO2]
	r := math.Round(v)
	if !ok || !measuring || !(r >= 0 && r < noSpO2) {
		return noSpO2
	}
	return byte(r)
}

// encodeHeartRate is the 9-bit HR field: 0-510, or 511 for no value.
func encodeHeartRate(values map[drivers.MetricID]float64, measuring bool) int {
	v, ok := values[drivers.PulseRate]
	r := math.Round(v)
	if !ok || !measuring || !(r >= 0 && r < noHeartRate) {
		return noHeartRate
	}
	return int(r)
}

// DF8Encoder renders frames as Data Format #8 (protocols.md 1.4): 4 bytes
// once a second. Values as for PacketEncoder; flags set STATUS and STATUS2
// bits as df8Flags reads them (no sensor or sensor off SNSD, low perfusion
// LPRF, low signal quality MPRF, sensor fault SNSA in STATUS2).
type DF8Encoder struct{}

// Interval is the DF8 period: one frame a second.
func (DF8Encoder) Interval() time.Duration { return time.Second }

// Encode appends one 4-byte frame to dst.
func (DF8Encoder) Encode(dst []byte, f drivers.Frame) []byte {
	measuring := f.Flags&sensorAbsentFlags == 0
	hr := encodeHeartRate(f.Values, measuring)
	status := byte(0x80) | byte(hr>>7)&0x03
	if f.Flags&(drivers.FlagNoSensor|drivers.FlagSensorOff) != 0 {
		status |= df8SNSD
	}
	if f.Flags&drivers.FlagSearching != 0 {
		status |= df8OOT
	}
	if f.Flags&drivers.FlagLowPerfusion != 0 {
		status |= df8LPRF
	}
	if f.Flags&drivers.FlagLowSignalQuality != 0 {
		status |= df8MPRF
	}
	if f.Flags&drivers.FlagArtifact != 0 {
		status |= df8ARTF
	}
	var status2 byte
	if f.Flags&drivers.FlagSensorFault != 0 {
		status2 |= df8SNSA
	}
	return append(dst, status, byte(hr)&0x7F, encodeSpO2(f.Values, measuring), status2)
}

// ASCIIEncoder renders frames as the ASCII real-time line of a BT4000, 8500
// or Avant 9600 (protocols.md 1.6): `SPO2=097 HR=072` and CR/LF, once a
// second. A missing value, one that does not fit three digits, and every
// value while the flags say no sensor, sensor off or sensor fault are
// printed "---" (the line has no other way to say so). Flags are otherwise
// not representable.
type ASCIIEncoder struct{}

// Interval is one line a second.
func (ASCIIEncoder) Interval() time.Duration { return time.Second }

// Encode appends one line, CR/LF included, to dst.
func (ASCIIEncoder) Encode(dst []byte, f drivers.Frame) []byte {
	measuring := f.Flags&sensorAbsentFlags == 0
	dst = append(dst, "SPO2="...)
	dst = appendThree(dst, f.Values, drivers.SpO2, measuring)
	dst = append(dst, " HR="...)
	dst = appendThree(dst, f.Values, drivers.PulseRate, measuring)
	return append(dst, '\r', '\n')
}

func appendThree(dst []byte, values map[drivers.MetricID]float64, m drivers.MetricID, measuring bool) []byte {
	v, ok := values[m]
	r := math.Round(v)
	if !ok || !measuring || !(r >= 0 && r <= 999) {
		return append(dst, "---"...)
	}
	n := int(r)
	return append(dst, byte('0'+n/100), byte('0'+n/10%10), byte('0'+n%10))
}
