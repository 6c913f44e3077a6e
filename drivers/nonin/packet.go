package nonin

import (
	"time"

	"github.com/vigil-monitor/vigil/drivers"
)

// DF2 and DF7 framing (protocols.md 1.2, 1.3 [C]).
const (
	frameLen     = 5                       // bytes per frame
	packetFrames = 25                      // frames per packet
	packetLen    = frameLen * packetFrames // 125 bytes, one packet = 1/3 s
	// PlethRate is the pleth sample rate of DF2 and DF7: one sample per
	// frame, 75 frames per second (protocols.md 1.2 [C]).
	PlethRate = 75
	// MaxDropRun caps one report of dropped bytes: a stream that never
	// aligns (wrong format selected, wrong baud rate) is reported every
	// MaxDropRun bytes instead of never. Two packets' worth, so that the
	// bytes lost to one damaged packet (at most a packet plus a frame) are
	// normally reported as one frame.
	MaxDropRun = 2 * packetLen
)

// STATUS byte bits of DF2 and DF7 (protocols.md 1.2 [C]).
const (
	statusSync     = 0x01 // first frame of a packet
	statusColour   = 0x06 // perfusion colour, see perfusionColour
	statusSNSA     = 0x08 // sensor alarm: the sensor gives unusable data
	statusOOT      = 0x10 // out of track: no consecutive good pulses
	statusARTF     = 0x20 // artifact on this pulse
	statusSNSD     = 0x40 // sensor disconnected or inoperable
	statusFrameBit = 0x80 // always 1
)

// perfusionColour is the pulse-amplitude indication of STATUS bits 2-1,
// ranked so that a larger value is a worse signal.
type perfusionColour uint8

const (
	colourNone perfusionColour = iota
	colourGreen
	colourYellow
	colourRed
)

// colourOf reads STATUS bits 2-1: 0x02 green, 0x06 yellow, 0x04 red.
func colourOf(status byte) perfusionColour {
	switch status & statusColour {
	case 0x02:
		return colourGreen
	case 0x06:
		return colourYellow
	case 0x04:
		return colourRed
	}
	return colourNone
}

// colourHoldPackets is how many packets a perfusion colour stays in force
// after the last frame that showed it. The device sets the colour bits only
// for about 160 ms during each pulse (protocols.md 1.2), so most packets
// carry none; without holding it, low perfusion would flicker on and off
// three times a second. Nine packets (3 s) covers a pulse rate down to
// 20/min; past that the colour is unknown and no flag is set [I]. Pinned by
// TestPerfusionColourHold.
const colourHoldPackets = 9

// PacketDecoder decodes Nonin Data Format #2 or #7 (protocols.md 1.2, 1.3):
// 5-byte frames at 75 Hz, grouped in 25-frame packets whose first frame has
// the SYNC bit. For each complete packet it reports SpO2, pulse rate and one
// Pleth reading holding the packet's 25 samples, then Frame(FrameOK) (or
// FrameInvalidValue when a value is out of range): numerics arrive 3 times a
// second, once per packet.
//
// Alignment follows protocols.md 1.2: while searching, slide one byte at a
// time until a frame that starts a packet (DF2: 0x01, STATUS bit7 and SYNC;
// DF7: bit7 and SYNC) has a valid checksum; then every frame must keep the
// header, the checksum and no SYNC until the 25th. Any break discards the
// packet in progress and the search resumes one byte after its first frame,
// so a SYNC frame overlapped by a false start is still found. Nothing is
// emitted until all 25 frames check out: for DF7, whose header is only one
// bit, a false start surviving 24 more checksums is negligible (protocols.md
// 1.3 [I]).
//
// Dropped bytes are reported as one frame per stretch, when the next packet
// completes or every MaxDropRun bytes: FrameChecksum when the stretch began
// with a checksum failure while the stream was in step (the previous packet
// was good), FrameMalformed otherwise (garbage, a bad header, a SYNC frame
// arriving early because frames were lost, a packet without a SYNC frame).
//
// A PacketDecoder is not safe for concurrent use.
type PacketDecoder struct {
	df7 bool
	// raw[lo:hi] holds the bytes not yet resolved: the packet in progress
	// (its first `frames` frames validated) and any partial frame. It never
	// holds more than a packet minus one byte after scan returns.
	raw    [2 * packetLen]byte
	lo, hi int
	frames int
	// synced is true while the previous bytes were a complete packet: only
	// then is a checksum failure surely a damaged frame, not a false start.
	synced bool
	run    dropRun
	// colour is the perfusion colour in force and how many packets ago a
	// frame last showed it.
	colour    perfusionColour
	colourAge int
}

// NewDF2Decoder returns a decoder for Data Format #2 (8-bit pleth, 0x01
// start byte): OEM III modules, Xpod 3012.
func NewDF2Decoder() *PacketDecoder { return &PacketDecoder{} }

// NewDF7Decoder returns a decoder for Data Format #7 (16-bit pleth, no start
// byte): WristOx2 3150 and Onyx II 9560 once set to it.
func NewDF7Decoder() *PacketDecoder { return &PacketDecoder{df7: true} }

// Feed consumes p; see PacketDecoder. Bytes of an unfinished frame or packet
// are kept (copied) for the next call.
func (d *PacketDecoder) Feed(p []byte, now time.Time, sink drivers.Sink) {
	for len(p) > 0 {
		if d.hi == len(d.raw) {
			d.hi = copy(d.raw[:], d.raw[d.lo:d.hi])
			d.lo = 0
		}
		n := copy(d.raw[d.hi:], p)
		d.hi += n
		p = p[n:]
		d.scan(now, sink)
	}
}

// scan resolves as much of raw[lo:hi] as it can.
func (d *PacketDecoder) scan(now time.Time, sink drivers.Sink) {
	for {
		buf := d.raw[d.lo:d.hi]
		if d.frames == 0 {
			if len(buf) < frameLen {
				return
			}
			if d.startsPacket(buf[:frameLen]) {
				d.frames = 1
				continue
			}
			d.drop(drivers.FrameMalformed, sink)
			continue
		}
		off := d.frames * frameLen
		if len(buf) < off+frameLen {
			return
		}
		f := buf[off : off+frameLen]
		switch {
		case !d.headerOK(f):
			d.restart(drivers.FrameMalformed, sink)
		case !checksumOK(f):
			d.restart(drivers.FrameChecksum, sink)
		case d.status(f)&statusSync != 0:
			// A packet start before 25 frames: frames were lost upstream
			// (protocols.md 1.2). The search finds this frame again.
			d.restart(drivers.FrameMalformed, sink)
		default:
			d.frames++
			if d.frames == packetFrames {
				d.run.flush(sink)
				d.emit(buf[:packetLen], now, sink)
				d.lo += packetLen
				d.frames = 0
				d.synced = true
			}
		}
	}
}

// restart abandons the packet in progress and resumes the search one byte
// after its first frame.
func (d *PacketDecoder) restart(why drivers.FrameResult, sink drivers.Sink) {
	if why == drivers.FrameChecksum && !d.synced {
		// Before a good packet the "frame" may be a false start.
		why = drivers.FrameMalformed
	}
	d.frames = 0
	d.drop(why, sink)
}

// drop discards the first unresolved byte.
func (d *PacketDecoder) drop(why drivers.FrameResult, sink drivers.Sink) {
	d.synced = false
	d.lo++
	d.run.add(1, why)
	if d.run.n >= MaxDropRun {
		d.run.flush(sink)
	}
}

func (d *PacketDecoder) startsPacket(f []byte) bool {
	return d.headerOK(f) && d.status(f)&statusSync != 0 && checksumOK(f)
}

func (d *PacketDecoder) headerOK(f []byte) bool {
	if d.df7 {
		return f[0]&statusFrameBit != 0
	}
	return f[0] == 0x01 && f[1]&statusFrameBit != 0
}

func (d *PacketDecoder) status(f []byte) byte {
	if d.df7 {
		return f[0]
	}
	return f[1]
}

// checksumOK: byte 5 is the sum of bytes 1-4 mod 256 (protocols.md 1.2).
func checksumOK(f []byte) bool {
	return f[0]+f[1]+f[2]+f[3] == f[4]
}

// DATA byte schedule: frame index (0-based) of each field (protocols.md 1.2).
// The standard 4-beat values of frames 1-3 are published, as the mdpnp
// adapter does; the extended and display variants are not [I].
const (
	dataHRMSB = 0
	dataHRLSB = 1
	dataSpO2  = 2
)

// emit reports one validated packet.
func (d *PacketDecoder) emit(pkt []byte, now time.Time, sink drivers.Sink) {
	var anyStatus byte
	worst := colourNone
	// The samples belong to the reading (drivers.Reading): one allocation
	// per packet, the only one of the decoder.
	samples := make([]float64, packetFrames)
	for i := range packetFrames {
		f := pkt[i*frameLen : (i+1)*frameLen]
		st := d.status(f)
		anyStatus |= st
		worst = max(worst, colourOf(st))
		if d.df7 {
			samples[i] = float64(uint16(f[1])<<8 | uint16(f[2]))
		} else {
			samples[i] = float64(f[2])
		}
	}
	flags := d.packetFlags(anyStatus, worst)

	data := func(i int) byte { return pkt[i*frameLen+3] }
	hr := heartRate(data(dataHRMSB), data(dataHRLSB))
	spo2 := int(data(dataSpO2) & 0x7F)

	result := drivers.FrameOK
	if !emitNumber(sink, &spo2Info, spo2, spo2 != noSpO2, flags, now) {
		result = drivers.FrameInvalidValue
	}
	if !emitNumber(sink, &pulseInfo, hr, hr != noHeartRate, flags, now) {
		result = drivers.FrameInvalidValue
	}
	// A waveform has no Value; Valid says whether the samples come from a
	// sensor on a patient.
	sink.Reading(drivers.Reading{
		Metric:     drivers.Pleth,
		Valid:      flags&sensorAbsentFlags == 0,
		Samples:    samples,
		SampleRate: PlethRate,
		Received:   now,
		Flags:      flags,
	})
	sink.Frame(result, 0)
}

// packetFlags maps the STATUS bits seen in any frame of the packet to flags
// (README "Flags"). Conditions are ORed over the packet's frames; the
// perfusion colour is the worst one shown, held for colourHoldPackets.
func (d *PacketDecoder) packetFlags(anyStatus byte, worst perfusionColour) drivers.Flags {
	var f drivers.Flags
	if anyStatus&statusSNSD != 0 {
		// Disconnected: no sensor at all, so also off the patient, for a
		// consumer that only knows "sensor off" [I].
		f |= drivers.FlagNoSensor | drivers.FlagSensorOff
	}
	if anyStatus&statusARTF != 0 {
		f |= drivers.FlagArtifact
	}
	if anyStatus&statusOOT != 0 {
		f |= drivers.FlagSearching
	}
	if anyStatus&statusSNSA != 0 {
		f |= drivers.FlagSensorFault
	}

	switch {
	case anyStatus&statusSNSD != 0:
		// No sensor, no pulse amplitude: forget the held colour.
		d.colour, d.colourAge = colourNone, 0
	case worst != colourNone:
		d.colour, d.colourAge = worst, 0
	default:
		d.colourAge++
		if d.colourAge > colourHoldPackets {
			d.colour = colourNone
		}
	}
	return f | colourFlags(d.colour)
}

// colourFlags: red is low perfusion; yellow ("marginal", a medium pulse
// amplitude) is low signal quality, which lets the alarm layer down-rank
// without calling the value unreliable [I]; green is good.
func colourFlags(c perfusionColour) drivers.Flags {
	switch c {
	case colourRed:
		return drivers.FlagLowPerfusion
	case colourYellow:
		return drivers.FlagLowSignalQuality
	}
	return 0
}
