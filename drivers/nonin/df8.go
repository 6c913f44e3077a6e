package nonin

import (
	"time"

	"github.com/vigil-monitor/vigil/drivers"
)

// DF8 framing (protocols.md 1.4 [C]).
const (
	df8Len = 4
	// MaxDF8DropRun caps one report of dropped DF8 bytes, as MaxDropRun
	// does for DF2/DF7.
	MaxDF8DropRun = 32 * df8Len
	// MaxDF8FrameSpan is how long the 4 bytes of one DF8 frame may take to
	// arrive. They leave the device back to back (about 4 ms at 9600 baud)
	// once a second; a partial frame older than this lost its remaining
	// bytes, so it is dropped rather than completed with the next second's
	// bytes (protocols.md 1.4: "also use the inter-packet gap" [I]). Half the
	// period leaves room for USB and Bluetooth latency. Pinned by
	// TestDF8StalePartialFrame.
	MaxDF8FrameSpan = 500 * time.Millisecond
)

// DF8 STATUS (byte 1) and STATUS2 (byte 4) bits (protocols.md 1.4).
const (
	df8SNSD = 0x40 // sensor disconnected [C]
	df8OOT  = 0x20 // out of track [C]
	df8LPRF = 0x10 // low perfusion [C]
	df8MPRF = 0x08 // marginal perfusion [C]
	df8ARTF = 0x04 // artifact [C]
	// STATUS2 bit 3, sensor alarm: both sources agree on it, but the
	// section calls STATUS2 provisional [U]. Bits 5 (SmartPoint), 2 (spot
	// check), 1 (critical battery) and 0 (low battery) have no flag.
	df8SNSA = 0x08
)

// DF8Decoder decodes Nonin Data Format #8 (protocols.md 1.4): 4 bytes once a
// second, STATUS (bit7 set), HR LSB, SpO2, STATUS2 (bit7 clear), no
// checksum. A frame is the one byte with bit7 set followed by three without
// it, all arriving within MaxDF8FrameSpan. Each frame gives SpO2 and pulse
// rate, then Frame(FrameOK) (FrameInvalidValue when a value is out of
// range). Bytes that cannot belong to a frame are dropped and reported as one
// FrameMalformed per stretch, when the next frame completes or every
// MaxDF8DropRun bytes.
//
// The zero value is ready to use. A DF8Decoder is not safe for concurrent
// use.
type DF8Decoder struct {
	frame [df8Len]byte
	n     int       // bytes of frame received
	first time.Time // when frame[0] arrived
	run   dropRun
}

// NewDF8Decoder returns a decoder for Data Format #8.
func NewDF8Decoder() *DF8Decoder { return &DF8Decoder{} }

// Feed consumes p; see DF8Decoder.
func (d *DF8Decoder) Feed(p []byte, now time.Time, sink drivers.Sink) {
	if d.n > 0 && now.Sub(d.first) > MaxDF8FrameSpan {
		d.discardPartial(sink)
	}
	for _, b := range p {
		if b&0x80 != 0 {
			if d.n > 0 {
				// A new STATUS byte: the frame in progress was truncated.
				d.discardPartial(sink)
			}
			d.frame[0] = b
			d.n = 1
			d.first = now
			continue
		}
		if d.n == 0 {
			d.add(1, sink)
			continue
		}
		d.frame[d.n] = b
		d.n++
		if d.n == df8Len {
			d.n = 0
			d.run.flush(sink)
			decodeDF8(d.frame, now, sink)
		}
	}
}

func (d *DF8Decoder) discardPartial(sink drivers.Sink) {
	n := d.n
	d.n = 0
	d.add(n, sink)
}

func (d *DF8Decoder) add(n int, sink drivers.Sink) {
	d.run.add(n, drivers.FrameMalformed)
	if d.run.n >= MaxDF8DropRun {
		d.run.flush(sink)
	}
}

func decodeDF8(f [df8Len]byte, now time.Time, sink drivers.Sink) {
	status, status2 := f[0], f[3]
	hr := heartRate(status, f[1])
	spo2 := int(f[2] & 0x7F)
	flags := df8Flags(status, status2)

	result := drivers.FrameOK
	if !emitNumber(sink, &spo2Info, spo2, spo2 != noSpO2, flags, now) {
		result = drivers.FrameInvalidValue
	}
	if !emitNumber(sink, &pulseInfo, hr, hr != noHeartRate, flags, now) {
		result = drivers.FrameInvalidValue
	}
	sink.Frame(result, 0)
}

// df8Flags maps STATUS and STATUS2 to flags, the same way as the DF2/DF7
// STATUS bits (README "Flags"): marginal perfusion is DF2's yellow.
func df8Flags(status, status2 byte) drivers.Flags {
	var f drivers.Flags
	if status&df8SNSD != 0 {
		f |= drivers.FlagNoSensor | drivers.FlagSensorOff
	}
	if status&df8OOT != 0 {
		f |= drivers.FlagSearching
	}
	if status&df8LPRF != 0 {
		f |= drivers.FlagLowPerfusion
	}
	if status&df8MPRF != 0 {
		f |= drivers.FlagLowSignalQuality
	}
	if status&df8ARTF != 0 {
		f |= drivers.FlagArtifact
	}
	if status2&df8SNSA != 0 {
		f |= drivers.FlagSensorFault
	}
	return f
}
