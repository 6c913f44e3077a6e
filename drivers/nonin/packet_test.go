package nonin

import (
	"bytes"
	"reflect"
	"slices"
	"testing"

	"github.com/vigil-monitor/vigil/drivers"
	"github.com/vigil-monitor/vigil/drivers/drivertest"
)

// pufferfishPacket is the valid DF2 packet of pez-globo/pufferfish-software
// TestPacketReceiver.cpp ("A Valid First Packet"), whose first four frames
// are the worked example of protocols.md 1.2: HR 72, SpO2 97, REV 0x30,
// pleth 1 in every frame, no status bits.
var pufferfishPacket = []byte{
	0x01, 0x81, 0x01, 0x00, 0x83, // HR MSB, SYNC
	0x01, 0x80, 0x01, 0x48, 0xCA, // HR LSB 72
	0x01, 0x80, 0x01, 0x61, 0xE3, // SpO2 97
	0x01, 0x80, 0x01, 0x30, 0xB2, // REV
	0x01, 0x80, 0x01, 0x00, 0x82,
	0x01, 0x80, 0x01, 0x00, 0x82,
	0x01, 0x80, 0x01, 0x00, 0x82,
	0x01, 0x80, 0x01, 0x00, 0x82,
	0x01, 0x80, 0x01, 0x61, 0xE3, // SpO2-D
	0x01, 0x80, 0x01, 0x61, 0xE3, // SpO2 fast
	0x01, 0x80, 0x01, 0x61, 0xE3, // SpO2 B-B
	0x01, 0x80, 0x01, 0x00, 0x82,
	0x01, 0x80, 0x01, 0x00, 0x82,
	0x01, 0x80, 0x01, 0x00, 0x82, // E-HR MSB
	0x01, 0x80, 0x01, 0x48, 0xCA, // E-HR LSB
	0x01, 0x80, 0x01, 0x61, 0xE3, // E-SpO2
	0x01, 0x80, 0x01, 0x61, 0xE3, // E-SpO2-D
	0x01, 0x80, 0x01, 0x00, 0x82,
	0x01, 0x80, 0x01, 0x00, 0x82,
	0x01, 0x80, 0x01, 0x00, 0x82, // HR-D MSB
	0x01, 0x80, 0x01, 0x48, 0xCA, // HR-D LSB
	0x01, 0x80, 0x01, 0x00, 0x82, // E-HR-D MSB
	0x01, 0x80, 0x01, 0x48, 0xCA, // E-HR-D LSB
	0x01, 0x80, 0x01, 0x00, 0x82,
	0x01, 0x80, 0x01, 0x00, 0x82,
}

// appNoninFrame is agricolab/app-nonin's fixture frame (protocols.md 1.2):
// STATUS 0x98 = OOT + SNSA, pleth 99, DATA 0.
var appNoninFrame = []byte{0x01, 0x98, 0x63, 0x00, 0xFC}

// testPacket describes a packet for tests; bytes renders it with correct
// checksums, or with the frame-level damage a test asks for.
type testPacket struct {
	status [packetFrames]byte // SYNC is added to frame 1
	pleth  [packetFrames]uint16
	data   [packetFrames]byte
}

// newTestPacket is a packet with SpO2 and HR in the standard fields, no
// status bits, and pleth samples 10, 11, ... 34.
func newTestPacket(spo2 byte, hr int) testPacket {
	var p testPacket
	for i := range packetFrames {
		p.status[i] = statusFrameBit
		p.pleth[i] = uint16(10 + i)
	}
	p.data[dataHRMSB] = byte(hr>>7) & 0x03
	p.data[dataHRLSB] = byte(hr) & 0x7F
	p.data[dataSpO2] = spo2
	return p
}

func (p testPacket) withStatus(bits byte) testPacket {
	for i := range p.status {
		p.status[i] |= bits
	}
	return p
}

func (p testPacket) bytes(df7 bool) []byte {
	out := make([]byte, 0, packetLen)
	for i := range packetFrames {
		st := p.status[i]
		if i == 0 {
			st |= statusSync
		}
		out = append(out, rawFrame(df7, st, p.pleth[i], p.data[i])...)
	}
	return out
}

// rawFrame builds one frame with a correct checksum.
func rawFrame(df7 bool, status byte, pleth uint16, data byte) []byte {
	var f []byte
	if df7 {
		f = []byte{status, byte(pleth >> 8), byte(pleth), data}
	} else {
		f = []byte{0x01, status, byte(pleth), data}
	}
	return append(f, f[0]+f[1]+f[2]+f[3])
}

func rv(m drivers.MetricID, value float64, valid bool, flags ...string) readingView {
	if flags == nil {
		flags = []string{}
	}
	return readingView{Metric: m.String(), Value: value, Valid: valid, Flags: flags}
}

func plethView(samples []float64, valid bool, flags ...string) readingView {
	v := rv(drivers.Pleth, 0, valid, flags...)
	v.Samples, v.SampleRate = samples, PlethRate
	return v
}

func repeat(v float64, n int) []float64 {
	out := make([]float64, n)
	for i := range out {
		out[i] = v
	}
	return out
}

func ramp(from float64) []float64 {
	out := make([]float64, packetFrames)
	for i := range out {
		out[i] = from + float64(i)
	}
	return out
}

func concat(parts ...[]byte) []byte { return slices.Concat(parts...) }

// The frame-level worked examples of protocols.md 1.2.
func TestDF2FrameWorkedExamples(t *testing.T) {
	tests := []struct {
		name        string
		frame       []byte
		header, sum bool
		startsPkt   bool
	}{
		{"pufferfish frame 1: SYNC, HR MSB 0", []byte{0x01, 0x81, 0x01, 0x00, 0x83}, true, true, true},
		{"pufferfish frame 2: HR LSB 72", []byte{0x01, 0x80, 0x01, 0x48, 0xCA}, true, true, false},
		{"pufferfish frame 3: SpO2 97", []byte{0x01, 0x80, 0x01, 0x61, 0xE3}, true, true, false},
		{"pufferfish frame 4: REV 0x30", []byte{0x01, 0x80, 0x01, 0x30, 0xB2}, true, true, false},
		{"pufferfish: bad checksum", []byte{0x01, 0x80, 0x01, 0x48, 0xCB}, true, false, false},
		{"pufferfish: STATUS 0x7F, bit7 clear", []byte{0x01, 0x7F, 0x01, 0x48, 0xC9}, false, true, false},
		{"app-nonin: OOT + SNSA", appNoninFrame, true, true, false},
		{"no 0x01 start byte", []byte{0x02, 0x81, 0x01, 0x00, 0x84}, false, true, false},
	}
	d := NewDF2Decoder()
	for _, tt := range tests {
		if got := d.headerOK(tt.frame); got != tt.header {
			t.Errorf("%s: headerOK = %v", tt.name, got)
		}
		if got := checksumOK(tt.frame); got != tt.sum {
			t.Errorf("%s: checksumOK = %v", tt.name, got)
		}
		if got := d.startsPacket(tt.frame); got != tt.startsPkt {
			t.Errorf("%s: startsPacket = %v", tt.name, got)
		}
	}
}

func TestDF2WorkedPacket(t *testing.T) {
	s := decodeAll(df2, pufferfishPacket)
	want := []readingView{
		rv(drivers.SpO2, 97, true),
		rv(drivers.PulseRate, 72, true),
		plethView(repeat(1, 25), true),
	}
	if got := views(s.Readings); !reflect.DeepEqual(got, want) {
		t.Fatalf("readings:\n got %v\nwant %v", got, want)
	}
	// Readings first, then the packet's verdict.
	if want := []string{"r:spo2", "r:pulse_rate", "r:pleth", "f:ok/0"}; !reflect.DeepEqual(s.Events, want) {
		t.Fatalf("events = %v, want %v", s.Events, want)
	}
	for _, r := range s.Readings {
		if !r.Received.Equal(testNow) || r.Device != "" || r.Seq != 0 || !r.DeviceTime.IsZero() {
			t.Fatalf("reading %+v: Received must be the Feed time; Device, Seq, DeviceTime unset", r)
		}
	}
}

// The app-nonin fixture frame, placed where the pufferfish packet has a
// reserved zero DATA byte (frame 5): its OOT and SNSA reach every reading of
// the packet, and SNSA makes the numbers not Valid.
func TestDF2AppNoninFrameInPacket(t *testing.T) {
	pkt := concat(pufferfishPacket[:20], appNoninFrame, pufferfishPacket[25:])
	s := decodeAll(df2, pkt)
	samples := repeat(1, 25)
	samples[4] = 99
	want := []readingView{
		rv(drivers.SpO2, 97, false, "sensor-fault", "searching"),
		rv(drivers.PulseRate, 72, false, "sensor-fault", "searching"),
		plethView(samples, false, "sensor-fault", "searching"),
	}
	if got := views(s.Readings); !reflect.DeepEqual(got, want) {
		t.Fatalf("readings:\n got %v\nwant %v", got, want)
	}
	if s.Frames != (drivertest.FrameCounts{OK: 1}) {
		t.Fatalf("frames = %+v", s.Frames)
	}
}

// Decision: numerics are emitted once per packet, 3 times a second, with
// one Pleth reading of 25 samples per packet (never one per sample).
func TestOncePerPacket(t *testing.T) {
	for _, df7 := range []bool{false, true} {
		var stream []byte
		for i := range 6 {
			stream = append(stream, newTestPacket(byte(90+i), 60+i).bytes(df7)...)
		}
		newDec := df2
		if df7 {
			newDec = df7Dec
		}
		s := decodeAll(newDec, stream)
		if s.Frames != (drivertest.FrameCounts{OK: 6}) {
			t.Fatalf("df7=%v: frames = %+v", df7, s.Frames)
		}
		var spo2, pulse, pleth int
		for i, r := range s.Readings {
			switch r.Metric {
			case drivers.SpO2:
				if r.Value != float64(90+i/3) {
					t.Errorf("df7=%v: SpO2 #%d = %v", df7, i/3, r.Value)
				}
				spo2++
			case drivers.PulseRate:
				pulse++
			case drivers.Pleth:
				pleth++
				if !reflect.DeepEqual(r.Samples, ramp(10)) || r.SampleRate != 75 {
					t.Errorf("df7=%v: pleth %v at %v Hz", df7, r.Samples, r.SampleRate)
				}
			}
		}
		if spo2 != 6 || pulse != 6 || pleth != 6 {
			t.Fatalf("df7=%v: %d SpO2, %d pulse, %d pleth readings from 6 packets", df7, spo2, pulse, pleth)
		}
	}
}

var df7Dec = df7

func TestDF7SixteenBitPleth(t *testing.T) {
	p := newTestPacket(95, 130)
	for i := range p.pleth {
		p.pleth[i] = uint16(0xFF00 + i*3) // MSB 0xFF, LSBs with bit7 set or not
	}
	p.pleth[24] = 0
	s := decodeAll(df7, p.bytes(true))
	if len(s.Readings) != 3 || s.Frames != (drivertest.FrameCounts{OK: 1}) {
		t.Fatalf("readings %v frames %+v", views(s.Readings), s.Frames)
	}
	got := s.Readings[2].Samples
	for i, v := range got {
		if want := float64(p.pleth[i]); v != want {
			t.Fatalf("sample %d = %v, want %v", i, v, want)
		}
	}
	if s.Readings[1].Value != 130 {
		t.Fatalf("HR %v, want 130 (MSB 1, LSB 2)", s.Readings[1].Value)
	}
}

// DF7's frame-8 DATA byte is a second status (SmartPoint, low battery):
// no catalogue flag, so ignored; a DF2 packet's reserved bytes too.
func TestDF7SecondStatusIgnored(t *testing.T) {
	p := newTestPacket(97, 72)
	p.data[7] = 0x21 // SmartPoint + low battery (mdpnp Packet.setvar case 7)
	p.data[3] = 0x7F
	s := decodeAll(df7, p.bytes(true))
	want := []readingView{rv(drivers.SpO2, 97, true), rv(drivers.PulseRate, 72, true), plethView(ramp(10), true)}
	if got := views(s.Readings); !reflect.DeepEqual(got, want) {
		t.Fatalf("readings:\n got %v\nwant %v", got, want)
	}
}

func TestNoValueSentinels(t *testing.T) {
	for _, df7 := range []bool{false, true} {
		newDec := df2
		if df7 {
			newDec = df7Dec
		}
		s := decodeAll(newDec, newTestPacket(noSpO2, noHeartRate).bytes(df7))
		want := []readingView{rv(drivers.SpO2, 0, false), rv(drivers.PulseRate, 0, false), plethView(ramp(10), true)}
		if got := views(s.Readings); !reflect.DeepEqual(got, want) {
			t.Fatalf("df7=%v readings:\n got %v\nwant %v", df7, got, want)
		}
		if s.Frames != (drivertest.FrameCounts{OK: 1}) {
			t.Fatalf("df7=%v: sentinels are not invalid values: frames %+v", df7, s.Frames)
		}
	}
}

func TestPacketOutOfRange(t *testing.T) {
	tests := []struct {
		name string
		spo2 byte
		hr   int
		want []readingView
	}{
		{"SpO2 101", 101, 72, []readingView{rv(drivers.SpO2, 101, false, "out-of-range"), rv(drivers.PulseRate, 72, true)}},
		{"SpO2 126", 126, 72, []readingView{rv(drivers.SpO2, 126, false, "out-of-range"), rv(drivers.PulseRate, 72, true)}},
		{"HR 351", 97, 351, []readingView{rv(drivers.SpO2, 97, true), rv(drivers.PulseRate, 351, false, "out-of-range")}},
		{"HR 510", 97, 510, []readingView{rv(drivers.SpO2, 97, true), rv(drivers.PulseRate, 510, false, "out-of-range")}},
	}
	for _, tt := range tests {
		s := decodeAll(df2, newTestPacket(tt.spo2, tt.hr).bytes(false))
		want := append(tt.want, plethView(ramp(10), true))
		if got := views(s.Readings); !reflect.DeepEqual(got, want) {
			t.Errorf("%s readings:\n got %v\nwant %v", tt.name, got, want)
		}
		if s.Frames != (drivertest.FrameCounts{InvalidValue: 1}) {
			t.Errorf("%s: frames = %+v", tt.name, s.Frames)
		}
	}
	// The boundaries are values.
	s := decodeAll(df2, newTestPacket(100, 350).bytes(false))
	if s.Frames != (drivertest.FrameCounts{OK: 1}) || !s.Readings[0].Valid || !s.Readings[1].Valid {
		t.Fatalf("SpO2 100, HR 350: %v %+v", views(s.Readings), s.Frames)
	}
	s = decodeAll(df2, newTestPacket(0, 0).bytes(false))
	if s.Frames != (drivertest.FrameCounts{OK: 1}) || !s.Readings[0].Valid || !s.Readings[1].Valid {
		t.Fatalf("SpO2 0, HR 0: %v %+v", views(s.Readings), s.Frames)
	}
}

// Every STATUS bit, set on one frame only (the 10th), reaches the flags of
// the whole packet; only SNSD and SNSA make the numbers not Valid.
func TestPacketStatusFlags(t *testing.T) {
	tests := []struct {
		bits  byte
		valid bool
		flags []string
	}{
		{0x00, true, []string{}},
		{statusSNSD, false, []string{"sensor-off", "no-sensor"}},
		{statusARTF, true, []string{"artifact"}},
		{statusOOT, true, []string{"searching"}},
		{statusSNSA, false, []string{"sensor-fault"}},
		{0x04, true, []string{"low-perfusion"}},      // red
		{0x06, true, []string{"low-signal-quality"}}, // yellow
		{0x02, true, []string{}},                     // green
		{statusSNSD | 0x04, false, []string{"sensor-off", "no-sensor"}},
		{statusARTF | statusOOT | statusSNSA, false, []string{"sensor-fault", "searching", "artifact"}},
	}
	for _, tt := range tests {
		for _, df7 := range []bool{false, true} {
			p := newTestPacket(97, 72)
			p.status[9] |= tt.bits
			newDec := df2
			if df7 {
				newDec = df7Dec
			}
			s := decodeAll(newDec, p.bytes(df7))
			if len(s.Readings) != 3 || s.Frames != (drivertest.FrameCounts{OK: 1}) {
				t.Fatalf("bits %#x df7=%v: readings %v frames %+v", tt.bits, df7, views(s.Readings), s.Frames)
			}
			for _, r := range views(s.Readings) {
				if r.Valid != tt.valid || !reflect.DeepEqual(r.Flags, tt.flags) {
					t.Errorf("bits %#x df7=%v: %v, want valid=%v flags=%v", tt.bits, df7, r, tt.valid, tt.flags)
				}
			}
		}
	}
}

// Several colours in one packet: the worst counts.
func TestPerfusionWorstColour(t *testing.T) {
	p := newTestPacket(97, 72)
	p.status[3] |= 0x02 // green
	p.status[4] |= 0x06 // yellow
	p.status[5] |= 0x04 // red
	p.status[6] |= 0x06
	s := decodeAll(df2, p.bytes(false))
	if got := s.Readings[0].Flags; got != drivers.FlagLowPerfusion {
		t.Fatalf("flags %v, want low-perfusion", got)
	}
}

// Decision [I]: a colour holds for colourHoldPackets packets without one,
// is replaced by the next colour seen, and is forgotten on SNSD.
func TestPerfusionColourHold(t *testing.T) {
	red := newTestPacket(97, 72)
	red.status[5] |= 0x04
	green := newTestPacket(97, 72)
	green.status[5] |= 0x02
	plain := newTestPacket(97, 72)
	snsd := newTestPacket(97, 72).withStatus(statusSNSD)

	var stream []byte
	stream = append(stream, red.bytes(false)...)
	for range colourHoldPackets + 1 {
		stream = append(stream, plain.bytes(false)...)
	}
	stream = append(stream, red.bytes(false)...)
	stream = append(stream, plain.bytes(false)...)
	stream = append(stream, green.bytes(false)...)
	stream = append(stream, plain.bytes(false)...)
	stream = append(stream, red.bytes(false)...)
	stream = append(stream, snsd.bytes(false)...)
	stream = append(stream, plain.bytes(false)...)

	var want []bool // low perfusion per packet
	want = append(want, true)
	for i := range colourHoldPackets + 1 {
		want = append(want, i < colourHoldPackets)
	}
	want = append(want, true, true, false, false, true, false, false)

	s := decodeAll(df2, stream)
	var got []bool
	for _, r := range s.Readings {
		if r.Metric == drivers.SpO2 {
			got = append(got, r.Flags.Has(drivers.FlagLowPerfusion))
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("low perfusion per packet:\n got %v\nwant %v", got, want)
	}
}

// A bad checksum while in step: the packet is dropped; its bytes, reported
// when the next packet completes, are one FrameChecksum.
func TestChecksumErrorDropsPacket(t *testing.T) {
	for _, df7 := range []bool{false, true} {
		good := newTestPacket(97, 72).bytes(df7)
		bad := newTestPacket(90, 80).bytes(df7)
		bad[9] ^= 0x01 // frame 2's checksum
		newDec := df2
		if df7 {
			newDec = df7Dec
		}
		input := concat(good, bad, good)
		for how, s := range map[string]*drivertest.Recorder{"one call": decodeAll(newDec, input), "byte by byte": decodeByteByByte(newDec, input)} {
			if want := (drivertest.FrameCounts{OK: 2, Checksum: 1, Dropped: packetLen}); s.Frames != want {
				t.Errorf("df7=%v %s: frames = %+v, want %+v", df7, how, s.Frames, want)
			}
			if len(s.Readings) != 6 {
				t.Fatalf("df7=%v %s: %d readings", df7, how, len(s.Readings))
			}
			for _, r := range s.Readings[:2] {
				if r.Value == 90 || r.Value == 80 {
					t.Fatalf("a reading from the damaged packet: %v", viewOf(r))
				}
			}
			wantEvents := []string{"r:spo2", "r:pulse_rate", "r:pleth", "f:ok/0", "f:checksum/125", "r:spo2", "r:pulse_rate", "r:pleth", "f:ok/0"}
			if !reflect.DeepEqual(s.Events, wantEvents) {
				t.Errorf("df7=%v %s: events %v", df7, how, s.Events)
			}
		}
	}
}

// Before any good packet a checksum failure cannot be told from a false
// start: it is counted as malformed.
func TestChecksumErrorBeforeFirstPacket(t *testing.T) {
	bad := newTestPacket(90, 80).bytes(false)
	bad[14] ^= 0x40 // frame 3's checksum
	s := decodeAll(df2, concat(bad, newTestPacket(97, 72).bytes(false)))
	if want := (drivertest.FrameCounts{OK: 1, Malformed: 1, Dropped: packetLen}); s.Frames != want {
		t.Fatalf("frames = %+v, want %+v", s.Frames, want)
	}
}

// STATUS 0x7F (bit7 clear) in a packet is a bad header: malformed.
func TestBadHeaderDropsPacket(t *testing.T) {
	good := pufferfishPacket
	bad := bytes.Clone(pufferfishPacket)
	copy(bad[5:10], []byte{0x01, 0x7F, 0x01, 0x48, 0xC9}) // checksum right, header wrong
	s := decodeAll(df2, concat(good, bad, good))
	if want := (drivertest.FrameCounts{OK: 2, Malformed: 1, Dropped: packetLen}); s.Frames != want {
		t.Fatalf("frames = %+v, want %+v", s.Frames, want)
	}
}

// Frames lost upstream: a SYNC frame arrives before the 25th; the short
// packet is dropped and the new one starts at that frame.
func TestEarlySyncRestartsPacket(t *testing.T) {
	for _, df7 := range []bool{false, true} {
		newDec := df2
		if df7 {
			newDec = df7Dec
		}
		good := newTestPacket(97, 72).bytes(df7)
		short := newTestPacket(80, 80).bytes(df7)[:10*frameLen]
		s := decodeAll(newDec, concat(good, short, good, good))
		if want := (drivertest.FrameCounts{OK: 3, Malformed: 1, Dropped: 10 * frameLen}); s.Frames != want {
			t.Fatalf("df7=%v: frames = %+v, want %+v", df7, s.Frames, want)
		}
	}
}

// A frame without SYNC where a packet should start: dropped up to the next
// SYNC frame.
func TestMissingSyncFrame(t *testing.T) {
	good := pufferfishPacket
	extra := []byte{0x01, 0x80, 0x01, 0x00, 0x82, 0x01, 0x80, 0x01, 0x00, 0x82}
	s := decodeAll(df2, concat(good, extra, good))
	if want := (drivertest.FrameCounts{OK: 2, Malformed: 1, Dropped: len(extra)}); s.Frames != want {
		t.Fatalf("frames = %+v, want %+v", s.Frames, want)
	}
	// A packet of 25 frames without any SYNC yields nothing.
	nosync := bytes.Clone(pufferfishPacket)
	nosync[1], nosync[4] = 0x80, 0x82
	s = decodeAll(df2, concat(nosync, good))
	if want := (drivertest.FrameCounts{OK: 1, Malformed: 1, Dropped: packetLen}); s.Frames != want {
		t.Fatalf("no SYNC: frames = %+v, want %+v", s.Frames, want)
	}
}

// Connecting mid-packet, garbage before and between packets, and garbage
// that contains 0x01 and bit7 bytes: the decoder finds the next packet.
func TestGarbageAndResync(t *testing.T) {
	good := pufferfishPacket
	garbage := []byte{0x00, 0xFF, 0x01, 0x81, 0x01, 0x00, 0x84, 0x13, 0x37, 0x01}
	input := concat(good[60:], good, garbage, good, []byte{0x06}, good)
	want := drivertest.FrameCounts{OK: 3, Malformed: 3, Dropped: len(good[60:]) + len(garbage) + 1}
	for how, s := range map[string]*drivertest.Recorder{"one call": decodeAll(df2, input), "byte by byte": decodeByteByByte(df2, input)} {
		if s.Frames != want {
			t.Errorf("%s: frames = %+v, want %+v", how, s.Frames, want)
		}
		if len(s.Readings) != 9 {
			t.Errorf("%s: %d readings", how, len(s.Readings))
		}
	}
}

// DF7's header is one bit, so a false packet start is likely in garbage
// (1 in 1024 windows). One that overlaps the real SYNC frame must not hide
// it: the search resumes one byte after the false start.
func TestDF7FalseStartOverlappingSync(t *testing.T) {
	good := newTestPacket(97, 72).bytes(true)
	// A window [0x81 g S P1 | P2] passing as a SYNC frame: 0x81 has bit7
	// and SYNC, and g makes the checksum come out as the real frame's P2.
	g := good[2] - 0x81 - good[0] - good[1]
	prefix := []byte{0x81, g}
	if d := NewDF7Decoder(); !d.startsPacket(concat(prefix, good[:3])) {
		t.Fatal("test setup: the prefix does not make a false start")
	}
	s := decodeAll(df7, concat(prefix, good, good))
	if want := (drivertest.FrameCounts{OK: 2, Malformed: 1, Dropped: 2}); s.Frames != want {
		t.Fatalf("frames = %+v, want %+v", s.Frames, want)
	}
	if s.Readings[0].Value != 97 {
		t.Fatalf("first packet: %v", views(s.Readings)[:3])
	}
}

// A stream that never aligns is still reported, every MaxDropRun bytes.
func TestLongGarbageReportedInRuns(t *testing.T) {
	garbage := bytes.Repeat([]byte{0x01, 0x80, 0x55}, 400) // 1200 bytes, no valid frame
	s := decodeAll(df2, concat(garbage, pufferfishPacket))
	want := drivertest.FrameCounts{OK: 1, Malformed: 1200/MaxDropRun + 1, Dropped: 1200}
	if s.Frames != want {
		t.Fatalf("frames = %+v, want %+v", s.Frames, want)
	}
	for i, e := range s.Events[:1200/MaxDropRun] {
		if e != "f:malformed/250" {
			t.Fatalf("event %d = %s", i, e)
		}
	}
}

// An unfinished packet at the end of the input is kept, not reported.
func TestTruncatedPacketKept(t *testing.T) {
	for cut := 1; cut < packetLen; cut++ {
		d := NewDF2Decoder()
		s := &drivertest.Recorder{}
		d.Feed(pufferfishPacket[:cut], testNow, s)
		if len(s.Events) != 0 {
			t.Fatalf("cut %d: events %v from an unfinished packet", cut, s.Events)
		}
		d.Feed(pufferfishPacket[cut:], testNow, s)
		if s.Frames != (drivertest.FrameCounts{OK: 1}) || len(s.Readings) != 3 {
			t.Fatalf("cut %d: frames %+v", cut, s.Frames)
		}
	}
}

// A stream of everything above must decode the same however it is cut.
func TestPacketSplitAnywhere(t *testing.T) {
	for _, df7 := range []bool{false, true} {
		newDec := df2
		if df7 {
			newDec = df7Dec
		}
		good := newTestPacket(97, 72).bytes(df7)
		bad := newTestPacket(90, 80).bytes(df7)
		bad[52] ^= 0x10
		lowPerf := newTestPacket(93, 101).withStatus(0x04).bytes(df7)
		input := concat(good[17:], good, []byte("junk"), lowPerf, bad, good[:60], good, newTestPacket(120, 72).bytes(df7), good[:33])
		whole := decodeAll(newDec, input)
		if whole.Frames.OK != 3 || whole.Frames.InvalidValue != 1 || whole.Frames.Checksum+whole.Frames.Malformed == 0 {
			t.Fatalf("df7=%v: frames = %+v", df7, whole.Frames)
		}
		for cut := 0; cut <= len(input); cut++ {
			s := drivertest.FeedCut(newDec(), input, cut, testNow)
			if !reflect.DeepEqual(s.Events, whole.Events) || !reflect.DeepEqual(views(s.Readings), views(whole.Readings)) {
				t.Fatalf("df7=%v cut at %d: events %v; want %v", df7, cut, s.Events, whole.Events)
			}
		}
		bytewise := decodeByteByByte(newDec, input)
		if !reflect.DeepEqual(bytewise.Events, whole.Events) || !reflect.DeepEqual(views(bytewise.Readings), views(whole.Readings)) {
			t.Fatalf("df7=%v byte by byte: %v; want %v", df7, bytewise.Events, whole.Events)
		}
	}
}

// Every byte is accounted for: in a packet, in a dropped count, or still
// held by the decoder.
func checkPacketAccounting(t *testing.T, d *PacketDecoder, s *drivertest.Recorder, n int) {
	t.Helper()
	held := d.hi - d.lo
	if held >= packetLen {
		t.Fatalf("decoder holds %d bytes", held)
	}
	if d.run.n >= MaxDropRun {
		t.Fatalf("unreported run of %d bytes", d.run.n)
	}
	good := s.Frames.OK + s.Frames.InvalidValue
	if got := good*packetLen + s.Frames.Dropped + held + d.run.n; got != n {
		t.Fatalf("%d packets, %d dropped, %d held, %d in run: %d bytes of %d", good, s.Frames.Dropped, held, d.run.n, got, n)
	}
}

func TestPacketAccounting(t *testing.T) {
	input := concat(pufferfishPacket[3:], []byte{1, 2, 3}, pufferfishPacket, pufferfishPacket[:77])
	d := NewDF2Decoder()
	s := &drivertest.Recorder{}
	d.Feed(input, testNow, s)
	checkPacketAccounting(t, d, s, len(input))
}

func TestZeroValuePacketDecoderIsDF2(t *testing.T) {
	var d PacketDecoder
	s := &drivertest.Recorder{}
	d.Feed(pufferfishPacket[:50], testNow, s)
	d.Feed(pufferfishPacket[50:], testNow, s)
	if s.Frames != (drivertest.FrameCounts{OK: 1}) || len(s.Readings) != 3 {
		t.Fatalf("zero PacketDecoder: frames %+v readings %v", s.Frames, views(s.Readings))
	}
}

// The decoder must not keep references into the caller's buffer, and the
// samples it hands out must not be reused.
func TestPacketDecoderOwnsItsBytes(t *testing.T) {
	buf := bytes.Clone(pufferfishPacket[:60])
	d := NewDF2Decoder()
	s := &drivertest.Recorder{}
	d.Feed(buf, testNow, s)
	for i := range buf {
		buf[i] = 0xEE
	}
	d.Feed(pufferfishPacket[60:], testNow, s)
	d.Feed(newTestPacket(97, 72).bytes(false), testNow, s)
	if s.Frames != (drivertest.FrameCounts{OK: 2}) {
		t.Fatalf("frames %+v: the decoder read the caller's overwritten buffer", s.Frames)
	}
	if !reflect.DeepEqual(s.Readings[2].Samples, repeat(1, 25)) {
		t.Fatalf("first packet's samples changed to %v", s.Readings[2].Samples)
	}
}

// The only allocation is the samples slice each Pleth reading owns.
func TestPacketFeedAllocatesOnlySamples(t *testing.T) {
	input := concat(pufferfishPacket, []byte{9, 9}, pufferfishPacket, pufferfishPacket)
	d := NewDF2Decoder()
	var sink drivers.Sink = drivertest.Discard
	allocs := testing.AllocsPerRun(200, func() {
		d.Feed(input[:70], testNow, sink)
		d.Feed(input[70:], testNow, sink)
	})
	if allocs != 3 {
		t.Fatalf("Feed allocates %v times for 3 packets, want 3 (the samples)", allocs)
	}
}
