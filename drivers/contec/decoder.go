package contec

import (
	"io"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
)

// SampleRate is the live stream's frame rate, and so the pleth's sample
// rate: 60 per second in both generations (protocols.md 3.2, 3.3 [C]).
const SampleRate = 60

// PlethBatch is how many pleth samples one Pleth reading carries: one
// second of waveform. A batch is cut short only where the stream broke
// (README "Cadence").
const PlethBatch = SampleRate

// NumericsEvery is the cadence of the SpO2 and pulse-rate readings, in live
// frames: the first frame of a connection and then every 60th, so once a
// second. The device already averages both values ("rolling" values,
// MarkMLl), so publishing all 60 would add load and no information.
const NumericsEvery = SampleRate

// Sentinels: the device's "no value" forms (protocols.md 3.2: stored
// records use them [C], the live stream is assumed to [I]; 7.2).
const (
	noSpO2  = 127
	noPulse = 255
)

// commitFrames is how many consecutive well-formed live frames of one
// generation an auto decoder needs before it decides. The legacy framing
// has no checksum and random bytes fit it once in about 32 positions, so a
// single frame proves little; five in a row (83 ms of stream) are about one
// chance in 10^8 for noise [I]. The two framings exclude each other on any
// real stream (a legacy frame has four bytes below 0x80 in a row, a v4.6
// packet eight at or above), so a real device is never mistaken.
const commitFrames = 5

// probeCap bounds the bytes an undecided auto decoder holds; when it is
// full the oldest probeDrop bytes are reported dropped. Five v4.6 packets
// are 45 bytes, so a decision always finds its frames still held.
const (
	probeCap  = 256
	probeDrop = 128
)

// keepAliveEvery is the Tick period for firmware 4.6+: the device stops
// streaming after about 30 s without host traffic, and protocols.md 3.3
// recommends re-sending every 5-10 s [I].
const keepAliveEvery = 5 * time.Second

// Host commands (protocols.md 3.3 [C]): 7D 81, the command OR 0x80, then
// six parameter bytes 0x80.
var (
	// startCommand starts the live stream (A1, all five sources).
	startCommand = [9]byte{0x7D, 0x81, 0xA1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80}
	// keepAliveCommand is what the vendor software sends periodically (AF,
	// headrotor capture).
	keepAliveCommand = [9]byte{0x7D, 0x81, 0xAF, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80}
	// tickCommands is written on every Tick: the vendor's keep-alive, then
	// the start command again, so that a device that stopped anyway (the
	// 30 s limit, a lost command, switched on after the port was opened)
	// is running again within one period [I]. README "Keep-alive".
	tickCommands = [18]byte{
		0x7D, 0x81, 0xAF, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
		0x7D, 0x81, 0xA1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
	}
)

// The catalogue entries of the numeric metrics, copied once.
var (
	spo2Info  = drivers.SpO2.Info()
	pulseInfo = drivers.PulseRate.Info()
)

// invalidatingFlags are the conditions under which the device is not
// measuring a pulse: a number beside them is held or made up, so it is
// never Valid (clinical.md 6: a stale value must never look live). v4.6
// status 0xE2 means "no valid data" [C: headrotor]; the legacy searching
// bit is treated the same [I]. Pinned by TestSensorConditionsInvalidate.
const invalidatingFlags = drivers.FlagSensorOff | drivers.FlagNoSensor | drivers.FlagSensorFault | drivers.FlagSearching

// Decoder parses the live stream of a Contec CMS50 oximeter, legacy or
// firmware 4.6+, and reports SpO2 and pulse rate once a second and the
// pleth in one-second batches. A decoder made for ProtocolAuto (also the
// zero value) holds the first bytes until commitFrames frames of one
// generation arrive in a row, then decodes them and everything after as
// that generation for the rest of the connection.
//
// Decoder implements drivers.Conversation: for firmware 4.6+ (and while
// auto is undecided or decided on 4.6) Start sends the start command and
// Tick the keep-alive; for legacy it sends nothing.
//
// A Decoder is not safe for concurrent use.
type Decoder struct {
	configured Protocol
	framing    Protocol // what the bytes are decoded as; ProtocolAuto while undecided
	legacy     legacyFramer
	v46        v46Framer
	series     series
	probe      probe
}

// NewDecoder returns a decoder for protocol p.
func NewDecoder(p Protocol) *Decoder {
	d := &Decoder{configured: p, framing: p}
	if p == ProtocolAuto {
		d.probe.buf = make([]byte, 0, probeCap)
	}
	return d
}

// Protocol is the generation the decoder reads: the configured one, or for
// auto the one recognised so far (ProtocolAuto while undecided).
func (d *Decoder) Protocol() Protocol { return d.framing }

// Feed consumes p, read at now, and reports every frame to sink.
func (d *Decoder) Feed(p []byte, now time.Time, sink drivers.Sink) {
	for i := 0; i < len(p); i++ {
		if d.framing != ProtocolAuto {
			d.feedFramed(p[i:], now, sink)
			return
		}
		if len(d.probe.buf) == probeCap {
			// Nothing recognisable in probeCap bytes: the oldest are not a
			// frame of either kind.
			n := copy(d.probe.buf, d.probe.buf[probeDrop:])
			d.probe.buf = d.probe.buf[:n]
			sink.Frame(drivers.FrameMalformed, probeDrop)
		}
		if decided := d.probe.push(p[i]); decided != ProtocolAuto {
			d.framing = decided
			held := d.probe.buf
			d.probe = probe{}
			d.feedFramed(held, now, sink)
		}
	}
}

// feedFramed decodes p with the framing already decided.
func (d *Decoder) feedFramed(p []byte, now time.Time, sink drivers.Sink) {
	if d.framing == ProtocolLegacy {
		for _, b := range p {
			if ev := d.legacy.push(b); ev.kind != eventNone {
				d.series.handle(&ev, now, sink)
			}
		}
		return
	}
	for _, b := range p {
		if ev := d.v46.push(b); ev.kind != eventNone {
			d.series.handle(&ev, now, sink)
		}
	}
}

// Start sends the live-stream start command to a firmware 4.6+ device
// (protocols.md 3.3), also while auto is undecided: a legacy device streams
// by itself, a v4.6 one sends nothing until started. Legacy: nothing.
func (d *Decoder) Start(w io.Writer, _ time.Time) error {
	if d.framing == ProtocolLegacy {
		return nil
	}
	_, err := w.Write(startCommand[:])
	return err
}

// Tick sends the keep-alive and the start command again (tickCommands),
// unless the decoder reads a legacy device, which takes no commands.
func (d *Decoder) Tick(w io.Writer, _ time.Time) error {
	if d.framing == ProtocolLegacy {
		return nil
	}
	_, err := w.Write(tickCommands[:])
	return err
}

// TickEvery is 5 s, or 0 (no ticks) for a decoder configured as legacy.
func (d *Decoder) TickEvery() time.Duration {
	if d.configured == ProtocolLegacy {
		return 0
	}
	return keepAliveEvery
}

// eventKind is what one byte completed.
type eventKind uint8

const (
	eventNone      eventKind = iota
	eventLive                // a live frame (legacy frame or v4.6 type 0x01)
	eventOther               // a well-formed v4.6 packet of another type (a command reply)
	eventMalformed           // bytes that are not a frame: dropped counts them
)

// event is a framer's report of one byte.
type event struct {
	kind    eventKind
	dropped int
	live    liveFrame
}

// liveFrame is one live frame's content, values still raw (sentinels
// included).
type liveFrame struct {
	pleth uint8
	spo2  int
	pulse int
	flags drivers.Flags
}

// legacyFramer splits the legacy stream (protocols.md 3.2): byte 1 is the
// only one with bit 7 set, four bytes without it follow. A byte with bit 7
// inside a frame means bytes were lost: the partial frame is dropped and
// the new byte starts the next one.
type legacyFramer struct {
	buf     [5]byte
	n       int // bytes of the current frame; 0 while hunting for byte 1
	dropped int // bytes skipped while hunting, reported at the next byte 1
}

func (f *legacyFramer) push(b byte) event {
	if b&0x80 != 0 {
		lost := f.dropped + f.n
		f.dropped = 0
		f.buf[0], f.n = b, 1
		if lost > 0 {
			return event{kind: eventMalformed, dropped: lost}
		}
		return event{}
	}
	if f.n == 0 {
		f.dropped++
		return event{}
	}
	f.buf[f.n] = b
	f.n++
	if f.n < len(f.buf) {
		return event{}
	}
	f.n = 0
	return event{kind: eventLive, live: decodeLegacy(&f.buf)}
}

// Legacy bits (protocols.md 3.2 [C: atbrask LiveDataPoint]).
const (
	legacyFingerOut   = 0x10 // byte 1 bit 4: finger out / probe off
	legacyProbeError  = 0x10 // byte 3 bit 4
	legacySearching   = 0x20 // byte 3 bit 5: pulse searching
	legacyPulseBit7   = 0x40 // byte 3 bit 6: pulse-rate bit 7
	legacyBeep        = 0x40 // byte 1 bit 6: pulse beat (not a condition)
	legacySignalMask  = 0x0F // byte 1 bits 3-0: signal strength 0-8 (not mapped)
	legacyBarMask     = 0x0F // byte 3 bits 3-0: bar graph (not mapped)
	legacySpO2Falling = 0x20 // byte 1 bit 5: SpO2 dropping (not mapped)
)

func decodeLegacy(b *[5]byte) liveFrame {
	l := liveFrame{
		pleth: b[1] & 0x7F,
		pulse: int(b[2]&legacyPulseBit7)<<1 | int(b[3]&0x7F),
		spo2:  int(b[4] & 0x7F),
	}
	if b[0]&legacyFingerOut != 0 {
		l.flags |= drivers.FlagSensorOff
	}
	if b[2]&legacyProbeError != 0 {
		l.flags |= drivers.FlagSensorFault
	}
	if b[2]&legacySearching != 0 {
		l.flags |= drivers.FlagSearching
	}
	return l
}

// v46Framer splits the firmware 4.6+ stream (protocols.md 3.3, 7.1): a
// type byte below 0x80, then bytes at or above 0x80 up to the type's
// length. A type byte arriving early ends the packet as truncated; bytes
// at or above 0x80 outside a packet are dropped. A type whose length is
// unknown runs to the next type byte and counts as malformed: nothing
// vouches for it.
type v46Framer struct {
	buf     [9]byte
	n       int // bytes of the current packet; 0 while hunting for a type byte
	want    int // the current packet's length; 0 when its type is unknown
	dropped int // bytes skipped while hunting, reported at the next type byte
}

// v46Live is the live-data packet type.
const v46Live = 0x01

// v46Lengths are the packet lengths by type: OSCAR cms50f37_loader's table
// as quoted in protocols.md 3.3, and 0x13/0x14 from the headrotor capture
// (replies to B3). The live type 0x01 is 9 bytes [C]. Zero is unknown.
var v46Lengths = [0x80]uint8{
	0x01: 9, 0x02: 9, 0x03: 9, 0x04: 9, 0x05: 9, 0x06: 4, 0x07: 8, 0x08: 8,
	0x0A: 4, 0x0C: 2, 0x0E: 3, 0x0F: 8, 0x11: 9, 0x12: 8, 0x13: 9, 0x14: 9,
}

func (f *v46Framer) push(b byte) event {
	if b < 0x80 {
		lost := f.dropped + f.n
		f.dropped = 0
		f.buf[0], f.n, f.want = b, 1, int(v46Lengths[b])
		if lost > 0 {
			return event{kind: eventMalformed, dropped: lost}
		}
		return event{}
	}
	if f.n == 0 {
		f.dropped++
		return event{}
	}
	if f.n < len(f.buf) {
		f.buf[f.n] = b
	}
	f.n++
	if f.want == 0 || f.n < f.want {
		return event{}
	}
	f.n = 0
	if f.buf[0] == v46Live {
		return event{kind: eventLive, live: decodeV46(&f.buf)}
	}
	return event{kind: eventOther}
}

// v4.6 status byte (packet byte 1) bits.
const (
	v46FingerOut = 0x01 // 0xE1: finger out, pulse and SpO2 not valid [C]
	v46Searching = 0x02 // 0xE2: searching, no valid data [C]
	// v46PulseBit7 carries pulse-rate bit 7 under OSCAR's rule that byte 1
	// holds the real MSBs of the following bytes [I, protocols.md 3.3:
	// every open parser wraps 128-255 bpm]. TestV46PulseAbove127.
	v46PulseBit7 = 0x08
	// v46SpO2Bit7 is SpO2's MSB under the same rule [I]: set, it makes
	// SpO2 128 or more, which is out of range, so the value is refused
	// rather than read without it. TestV46SpO2MSB.
	v46SpO2Bit7 = 0x10
	v46Beat     = 0x40 // byte 2 bit 6: pulse-beat marker (not a condition)
)

func decodeV46(b *[9]byte) liveFrame {
	st := b[1]
	l := liveFrame{
		pleth: b[3] & 0x7F,
		pulse: int(b[5]&0x7F) | int(st&v46PulseBit7)<<4,
		spo2:  int(b[6]&0x7F) | int(st&v46SpO2Bit7)<<3,
	}
	if st&v46FingerOut != 0 {
		l.flags |= drivers.FlagSensorOff
	}
	if st&v46Searching != 0 {
		l.flags |= drivers.FlagSearching
	}
	return l
}

// series turns live frames into readings at the driver's cadence: SpO2
// and pulse rate at the first frame and every NumericsEvery-th after it,
// the pleth in batches of PlethBatch samples.
type series struct {
	frames  uint64    // live frames so far
	samples []float64 // the pleth batch being filled; owned by its reading once sent
	flags   drivers.Flags
}

func (s *series) handle(ev *event, now time.Time, sink drivers.Sink) {
	switch ev.kind {
	case eventMalformed:
		// Samples were lost: the batch so far goes out now, so that no
		// batch silently joins waveform from both sides of a gap.
		s.flush(now, sink)
		sink.Frame(drivers.FrameMalformed, ev.dropped)
	case eventOther:
		sink.Frame(drivers.FrameOK, 0)
	case eventLive:
		l := &ev.live
		result := drivers.FrameOK
		if !valueInRange(&spo2Info, l.spo2, noSpO2) || !valueInRange(&pulseInfo, l.pulse, noPulse) {
			result = drivers.FrameInvalidValue
		}
		if s.frames%NumericsEvery == 0 {
			emitNumeric(sink, &spo2Info, l.spo2, noSpO2, l.flags, now)
			emitNumeric(sink, &pulseInfo, l.pulse, noPulse, l.flags, now)
		}
		s.frames++
		if s.samples == nil {
			s.samples = make([]float64, 0, PlethBatch)
		}
		s.samples = append(s.samples, float64(l.pleth))
		s.flags |= l.flags
		if len(s.samples) == PlethBatch {
			s.flush(now, sink)
		}
		sink.Frame(result, 0)
	}
}

// flush sends the pleth batch, if any. Its flags are every condition seen
// during the batch; Valid stays false as a waveform has no single value.
func (s *series) flush(now time.Time, sink drivers.Sink) {
	if len(s.samples) == 0 {
		return
	}
	sink.Reading(drivers.Reading{
		Metric:     drivers.Pleth,
		Samples:    s.samples,
		SampleRate: SampleRate,
		Received:   now,
		Flags:      s.flags,
	})
	s.samples, s.flags = nil, 0
}

func valueInRange(m *drivers.Metric, raw, sentinel int) bool {
	return raw == sentinel || m.InRange(float64(raw))
}

// emitNumeric reports one SpO2 or pulse-rate reading: no value for the
// sentinel, out of range flagged, not Valid under an invalidating flag.
func emitNumeric(sink drivers.Sink, m *drivers.Metric, raw, sentinel int, flags drivers.Flags, now time.Time) {
	r := drivers.Reading{Metric: m.ID, Received: now, Flags: flags}
	if raw != sentinel {
		// Value keeps the device's number even when not Valid, for logs.
		r.Value = float64(raw)
		inRange := m.InRange(r.Value)
		if !inRange {
			r.Flags |= drivers.FlagOutOfRange
		}
		r.Valid = inRange && flags&invalidatingFlags == 0
	}
	sink.Reading(r)
}

// probe runs both framings over an auto decoder's first bytes and counts,
// for each, the well-formed live frames in a row (FrameOK only: an
// impossible value does not count).
type probe struct {
	buf       []byte
	legacy    legacyFramer
	v46       v46Framer
	legacyRun int
	v46Run    int
}

// push adds one byte and returns the generation decided, or ProtocolAuto.
func (p *probe) push(b byte) Protocol {
	p.buf = append(p.buf, b)
	p.legacyRun = probeRun(p.legacyRun, p.legacy.push(b))
	p.v46Run = probeRun(p.v46Run, p.v46.push(b))
	switch {
	case p.v46Run >= commitFrames:
		return ProtocolV46
	case p.legacyRun >= commitFrames:
		return ProtocolLegacy
	}
	return ProtocolAuto
}

func probeRun(run int, ev event) int {
	switch ev.kind {
	case eventLive:
		l := &ev.live
		if valueInRange(&spo2Info, l.spo2, noSpO2) && valueInRange(&pulseInfo, l.pulse, noPulse) {
			return run + 1
		}
		return 0
	case eventMalformed:
		return 0
	}
	return run
}
