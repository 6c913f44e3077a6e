package contec

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/vigil-monitor/vigil/drivers"
	"github.com/vigil-monitor/vigil/drivers/drivertest"
)

// The worked examples of protocols.md 3.2 and 3.3, verbatim.
const (
	legacyExample        = "85 3C 03 48 61"             // [I] built from the layout: signal 5, pleth 60, bar 3, PR 72, SpO2 97
	legacyPulse200       = "80 00 40 48 00"             // [C] atbrask unittests.py test_LiveData_pulseRate: PR 200
	headrotorPacket      = "01 E0 85 B3 96 C1 E1 FF FF" // [C] headrotor capture, reply to 7D 81 A1
	markmllPacket        = "01 e0 85 d5 9a bd e3 ff ff" // [C] MarkMLl consoleapp.pas "nominal operation"
	recordedTriplet      = "F0 C4 5F"                   // [C] a stored-data record (not live)
	versionReply         = "06 80 80 87"                // [C] headrotor: reply to 7D 81 A0
	helloReply           = "0C 80"                      // [C] headrotor: reply to 7D 81 A7
	deviceIDReply        = "04 80 F5 F3 E5 F2 A0 A0 A0" // [C] headrotor: reply to 7D 81 AA
	v46FingerOutPkt      = "01 E9 80 80 80 FF FF FF FF" // finger out: status bit 0, both sentinels (PR 255 needs bit 3)
	legacyFingerOutFrame = "90 00 40 7F 7F"             // finger out: byte 1 bit 4, both sentinels
	headrotorPleth       = 0x33
	markmllPleth         = 85
	legacyExamplePle     = 60
)

func TestWorkedExamples(t *testing.T) {
	tests := []struct {
		name     string
		protocol Protocol
		input    string
		want     []readingView
		frames   drivertest.FrameCounts
		// pleth is the sample the live frame carries, checked through the
		// framer (a batch is only sent after 60 frames).
		pleth int
	}{
		{"legacy layout example", ProtocolLegacy, legacyExample,
			[]readingView{rv(drivers.SpO2, 97, true), rv(drivers.PulseRate, 72, true)}, drivertest.FrameCounts{OK: 1}, legacyExamplePle},
		{"legacy PR 200: high bit in byte 3", ProtocolLegacy, legacyPulse200,
			[]readingView{rv(drivers.SpO2, 0, true), rv(drivers.PulseRate, 200, true)}, drivertest.FrameCounts{OK: 1}, 0},
		{"v4.6 headrotor live packet", ProtocolV46, headrotorPacket,
			[]readingView{rv(drivers.SpO2, 97, true), rv(drivers.PulseRate, 65, true)}, drivertest.FrameCounts{OK: 1}, headrotorPleth},
		{"v4.6 MarkMLl nominal packet: PR 61, not the comment's 53", ProtocolV46, markmllPacket,
			[]readingView{rv(drivers.SpO2, 99, true), rv(drivers.PulseRate, 61, true)}, drivertest.FrameCounts{OK: 1}, markmllPleth},
		{"v4.6 version and hello replies: two frames without readings", ProtocolV46, versionReply + " " + helloReply,
			[]readingView{}, drivertest.FrameCounts{OK: 2}, -1},
		{"v4.6 device ID reply", ProtocolV46, deviceIDReply, []readingView{}, drivertest.FrameCounts{OK: 1}, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := hexBytes(tt.input)
			for how, s := range map[string]*drivertest.Recorder{
				"one call":     decodeAll(tt.protocol, in),
				"byte by byte": decodeByteByByte(tt.protocol, in),
			} {
				if got := views(s.Readings); !reflect.DeepEqual(got, tt.want) {
					t.Errorf("%s: readings\n got %v\nwant %v", how, got, tt.want)
				}
				if s.Frames != tt.frames {
					t.Errorf("%s: frames = %+v, want %+v", how, s.Frames, tt.frames)
				}
			}
			if tt.pleth < 0 {
				return
			}
			var l liveFrame
			if tt.protocol == ProtocolLegacy {
				l = decodeLegacy((*[5]byte)(in))
			} else {
				l = decodeV46((*[9]byte)(in))
			}
			if int(l.pleth) != tt.pleth || l.flags != 0 {
				t.Errorf("pleth = %d flags = %v, want %d and none", l.pleth, l.flags, tt.pleth)
			}
		})
	}
}

// The stored-data record format (F0|PRbit7, 0x80|PR, SpO2) is never read
// as live data: the driver does not download recordings.
func TestRecordedTripletIsNotLive(t *testing.T) {
	s := decodeAll(ProtocolLegacy, repeat(hexBytes(recordedTriplet), 20))
	if len(s.Readings) != 0 || s.Frames.OK != 0 || s.Frames.InvalidValue != 0 {
		t.Fatalf("recorded records decoded as live: %+v %v", s.Frames, views(s.Readings))
	}
}

// Decision [I] (protocols.md 3.3): pulse-rate bit 7 is status bit 3.
// Every open parser wraps 128-255 bpm; ketamine tachycardia makes that
// matter.
func TestV46PulseAbove127(t *testing.T) {
	tests := []struct {
		packet string
		want   readingView
	}{
		{"01 E8 85 B3 96 82 E1 FF FF", rv(drivers.PulseRate, 130, true)},
		{"01 E8 85 B3 96 80 E1 FF FF", rv(drivers.PulseRate, 128, true)},
		{"01 E8 85 B3 96 FE E1 FF FF", rv(drivers.PulseRate, 254, true)},
		{"01 E0 85 B3 96 82 E1 FF FF", rv(drivers.PulseRate, 2, true)},   // bit 3 clear: 2 bpm, as sent
		{"01 E8 85 B3 96 FF E1 FF FF", rv(drivers.PulseRate, 0, false)},  // 255: no value
		{"01 E0 85 B3 96 FF E1 FF FF", rv(drivers.PulseRate, 127, true)}, // 127 is a pulse rate, not a sentinel
	}
	for _, tt := range tests {
		s := decodeAll(ProtocolV46, hexBytes(tt.packet))
		if got := numerics(s.Readings); len(got) != 2 || !reflect.DeepEqual(got[1], tt.want) {
			t.Errorf("%s: %v, want pulse %v", tt.packet, got, tt.want)
		}
	}
	// And 130 survives encode and decode.
	enc := NewEncoder(ProtocolV46)
	s := decodeAll(ProtocolV46, enc.Encode(nil, drivers.Frame{Time: testNow,
		Values: map[drivers.MetricID]float64{drivers.SpO2: 95, drivers.PulseRate: 130}}))
	if got := numerics(s.Readings); !reflect.DeepEqual(got, []readingView{rv(drivers.SpO2, 95, true), rv(drivers.PulseRate, 130, true)}) {
		t.Fatalf("round trip of PR 130: %v", got)
	}
}

// Decision [I]: status bit 4 is SpO2's bit 7 under OSCAR's rule; set, it
// makes the value impossible, so the reading is refused, never read
// without the bit.
func TestV46SpO2MSB(t *testing.T) {
	s := decodeAll(ProtocolV46, hexBytes("01 F0 85 B3 96 C1 E1 FF FF"))
	want := []readingView{rv(drivers.SpO2, 0x61|0x80, false, "out-of-range"), rv(drivers.PulseRate, 65, true)}
	if got := views(s.Readings); !reflect.DeepEqual(got, want) {
		t.Fatalf("readings %v, want %v", got, want)
	}
	if s.Frames != (drivertest.FrameCounts{InvalidValue: 1}) {
		t.Fatalf("frames = %+v", s.Frames)
	}
}

func TestSentinels(t *testing.T) {
	tests := []struct {
		name     string
		protocol Protocol
		frame    string
		want     []readingView
	}{
		{"legacy SpO2 127, PR 255, no flag", ProtocolLegacy, "85 3C 43 7F 7F",
			[]readingView{rv(drivers.SpO2, 0, false), rv(drivers.PulseRate, 0, false)}},
		{"legacy finger out", ProtocolLegacy, legacyFingerOutFrame,
			[]readingView{rv(drivers.SpO2, 0, false, "sensor-off"), rv(drivers.PulseRate, 0, false, "sensor-off")}},
		{"legacy PR 127 is a value", ProtocolLegacy, "85 3C 03 7F 61",
			[]readingView{rv(drivers.SpO2, 97, true), rv(drivers.PulseRate, 127, true)}},
		{"v4.6 SpO2 127, PR 255", ProtocolV46, "01 E8 85 B3 96 FF FF FF FF",
			[]readingView{rv(drivers.SpO2, 0, false), rv(drivers.PulseRate, 0, false)}},
		{"v4.6 finger out", ProtocolV46, v46FingerOutPkt,
			[]readingView{rv(drivers.SpO2, 0, false, "sensor-off"), rv(drivers.PulseRate, 0, false, "sensor-off")}},
	}
	for _, tt := range tests {
		s := decodeAll(tt.protocol, hexBytes(tt.frame))
		if got := views(s.Readings); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
		if s.Frames != (drivertest.FrameCounts{OK: 1}) {
			t.Errorf("%s: frames = %+v, want one OK: a sentinel is not a bad value", tt.name, s.Frames)
		}
	}
}

func TestOutOfRange(t *testing.T) {
	for _, spo2 := range []byte{101, 110, 126} {
		frame := []byte{0x85, 0x3C, 0x03, 0x48, spo2}
		s := decodeAll(ProtocolLegacy, frame)
		want := []readingView{rv(drivers.SpO2, float64(spo2), false, "out-of-range"), rv(drivers.PulseRate, 72, true)}
		if got := views(s.Readings); !reflect.DeepEqual(got, want) {
			t.Errorf("SpO2 %d: %v, want %v", spo2, got, want)
		}
		if s.Frames != (drivertest.FrameCounts{InvalidValue: 1}) {
			t.Errorf("SpO2 %d: frames = %+v", spo2, s.Frames)
		}
	}
	// SpO2 100 is the top of the range.
	if got := numerics(decodeAll(ProtocolLegacy, []byte{0x85, 0x3C, 0x03, 0x48, 100}).Readings); !got[0].Valid {
		t.Errorf("SpO2 100 not valid: %v", got)
	}
	// An impossible value on a frame between two numeric readings still
	// makes that frame invalid_value, with no reading of its own.
	in := append(hexBytes(legacyExample), 0x85, 0x3C, 0x03, 0x48, 120)
	s := decodeAll(ProtocolLegacy, in)
	if s.Frames != (drivertest.FrameCounts{OK: 1, InvalidValue: 1}) || len(s.Readings) != 2 {
		t.Errorf("frames %+v readings %v", s.Frames, views(s.Readings))
	}
}

func TestLegacyFlags(t *testing.T) {
	tests := []struct {
		b0, b2 byte
		want   drivers.Flags
	}{
		{0x80, 0x00, 0},
		{0x80 | 0x0F, 0x0F, 0}, // signal strength and bar graph: not conditions
		{0x80 | 0x40, 0x00, 0}, // beep
		{0x80 | 0x20, 0x00, 0}, // SpO2 dropping: Vigil alarms on its own limits
		{0x80 | 0x10, 0x00, drivers.FlagSensorOff},
		{0x80, 0x10, drivers.FlagSensorFault},
		{0x80, 0x20, drivers.FlagSearching},
		{0x80 | 0x10, 0x30, drivers.FlagSensorOff | drivers.FlagSensorFault | drivers.FlagSearching},
	}
	for _, tt := range tests {
		l := decodeLegacy(&[5]byte{tt.b0, 0x3C, tt.b2, 0x48, 0x61})
		if l.flags != tt.want {
			t.Errorf("% X: flags %v, want %v", []byte{tt.b0, tt.b2}, l.flags, tt.want)
		}
	}
}

func TestV46Flags(t *testing.T) {
	tests := []struct {
		status, b2 byte
		want       drivers.Flags
	}{
		{0xE0, 0x85, 0},
		{0xE0, 0xC5, 0}, // pulse-beat marker
		{0xE0, 0x80, 0}, // signal strength 0: not mapped
		{0xE1, 0x85, drivers.FlagSensorOff},
		{0xE2, 0x85, drivers.FlagSearching},
		{0xE3, 0x85, drivers.FlagSensorOff | drivers.FlagSearching},
		{0xE4, 0x85, 0}, // bit 2: unknown, ignored
		{0x80, 0x85, 0}, // bits 5, 6 clear: the MSBs of bytes 7, 8, unused
	}
	for _, tt := range tests {
		l := decodeV46(&[9]byte{0x01, tt.status, tt.b2, 0xB3, 0x96, 0xC1, 0xE1, 0xFF, 0xFF})
		if l.flags != tt.want {
			t.Errorf("status %#x byte2 %#x: flags %v, want %v", tt.status, tt.b2, l.flags, tt.want)
		}
	}
}

// Decision [I] (README "Flags"): sensor off, probe error and searching
// make the numbers not Valid; the flags stay on the reading.
func TestSensorConditionsInvalidate(t *testing.T) {
	tests := []struct {
		protocol Protocol
		frame    string
		valid    bool
		flags    []string
	}{
		{ProtocolLegacy, "85 3C 03 48 61", true, []string{}},
		{ProtocolLegacy, "95 3C 03 48 61", false, []string{"sensor-off"}},
		{ProtocolLegacy, "85 3C 13 48 61", false, []string{"sensor-fault"}},
		{ProtocolLegacy, "85 3C 23 48 61", false, []string{"searching"}},
		{ProtocolLegacy, "C5 3C 03 48 61", true, []string{}}, // beep
		{ProtocolV46, "01 E0 85 B3 96 C1 E1 FF FF", true, []string{}},
		{ProtocolV46, "01 E1 85 B3 96 C1 E1 FF FF", false, []string{"sensor-off"}},
		{ProtocolV46, "01 E2 85 B3 96 C1 E1 FF FF", false, []string{"searching"}},
	}
	for _, tt := range tests {
		s := decodeAll(tt.protocol, hexBytes(tt.frame))
		got := numerics(s.Readings)
		if len(got) != 2 {
			t.Fatalf("%s: %v", tt.frame, got)
		}
		for _, r := range got {
			if r.Valid != tt.valid || !reflect.DeepEqual(r.Flags, tt.flags) || r.Value == 0 {
				t.Errorf("%s: %v, want valid=%v flags=%v and the value kept", tt.frame, r, tt.valid, tt.flags)
			}
		}
	}
}

// legacyFrames returns n legacy frames with pleth samples 0, 1, 2, ...
// (mod 128) and the given SpO2 and pulse.
func legacyFrames(n, spo2, pulse int) []byte {
	out := make([]byte, 0, 5*n)
	for i := range n {
		out = appendLegacy(out, 0, uint8(i%128), spo2, pulse, false)
	}
	return out
}

func v46Frames(n, spo2, pulse int) []byte {
	out := make([]byte, 0, 9*n)
	for i := range n {
		out = appendV46(out, 0, uint8(i%128), spo2, pulse, false)
	}
	return out
}

// The cadence (README "Cadence"): SpO2 and pulse on the first frame and
// every 60th after it, the pleth in batches of 60 samples in order at
// 60 Hz, so 150 frames (2.5 s) give 3 numeric pairs and 2 batches.
func TestCadence(t *testing.T) {
	for name, in := range map[Protocol][]byte{
		ProtocolLegacy: legacyFrames(150, 97, 72),
		ProtocolV46:    v46Frames(150, 97, 72),
	} {
		t.Run(name.String(), func(t *testing.T) {
			s := decodeAll(name, in)
			if s.Frames != (drivertest.FrameCounts{OK: 150}) {
				t.Fatalf("frames = %+v", s.Frames)
			}
			var want []string
			for i := range 150 {
				if i%60 == 0 {
					want = append(want, "r:spo2", "r:pulse_rate")
				}
				if i%60 == 59 {
					want = append(want, "r:pleth")
				}
				want = append(want, "f:ok/0")
			}
			if !reflect.DeepEqual(s.Events, want) {
				t.Fatalf("events\n got %v\nwant %v", s.Events, want)
			}
			pleths := pleths(s.Readings)
			for b, r := range pleths {
				if len(r.Samples) != PlethBatch || r.SampleRate != 60 || r.Valid || r.Flags != 0 || !r.Received.Equal(testNow) {
					t.Fatalf("batch %d: %v", b, viewOf(r))
				}
				for i, v := range r.Samples {
					if want := float64((b*60 + i) % 128); v != want {
						t.Fatalf("batch %d sample %d = %v, want %v", b, i, v, want)
					}
				}
			}
			if &pleths[0].Samples[0] == &pleths[1].Samples[0] {
				t.Fatal("two batches share a backing array")
			}
		})
	}
}

// A gap (bytes lost) ends the batch early: no batch joins waveform from
// both sides of a gap. The batch's flags are every condition in it.
func TestBatchCutAtGapAndFlags(t *testing.T) {
	in := legacyFrames(20, 97, 72)
	in = appendLegacy(in, drivers.FlagSearching, 5, 97, 72, false)
	in = append(in, 0x85, 0x3C, 0x03) // truncated: 2 bytes lost
	in = append(in, legacyFrames(70, 97, 72)...)
	s := decodeAll(ProtocolLegacy, in)
	if s.Frames != (drivertest.FrameCounts{OK: 91, Malformed: 1, Dropped: 3}) {
		t.Fatalf("frames = %+v", s.Frames)
	}
	p := pleths(s.Readings)
	if len(p) != 2 || len(p[0].Samples) != 21 || len(p[1].Samples) != 60 {
		t.Fatalf("batches: %v", views(s.Readings))
	}
	if p[0].Flags != drivers.FlagSearching || p[1].Flags != 0 {
		t.Fatalf("batch flags %v, %v", p[0].Flags, p[1].Flags)
	}
	// The numerics cadence counts live frames, not batches.
	if n := len(numerics(s.Readings)); n != 4 { // frames 1, 61 (2 readings each)
		t.Fatalf("%d numeric readings, want 4", n)
	}
}

func TestLegacyGarbageAndResync(t *testing.T) {
	good := hexBytes(legacyExample)
	var in []byte
	in = append(in, 0x03, 0x48, 0x61) // connected mid-frame
	in = append(in, good...)
	in = append(in, 0x85, 0x3C) // truncated by a lost byte: next frame starts
	in = append(in, good...)
	in = append(in, 0x85, 0x3C, 0x03, 0x48, 0x61, 0x11, 0x22) // two stray low bytes after a frame
	in = append(in, 0xFF, 0xFE)                               // two sync-looking bytes in a row
	in = append(in, good...)
	s := decodeAll(ProtocolLegacy, in)
	// 3 before the first frame; the 2 of the truncated one; the 2 strays
	// (reported at the FF); the FF cut by the FE; the FE cut by the 0x85.
	want := drivertest.FrameCounts{OK: 4, Malformed: 5, Dropped: 3 + 2 + 2 + 1 + 1}
	if s.Frames != want {
		t.Fatalf("frames = %+v, want %+v", s.Frames, want)
	}
	if b := decodeByteByByte(ProtocolLegacy, in); b.Frames != want || !reflect.DeepEqual(views(b.Readings), views(s.Readings)) {
		t.Fatalf("byte by byte: %+v", b.Frames)
	}
}

func TestV46GarbageAndResync(t *testing.T) {
	good := hexBytes(headrotorPacket)
	var in []byte
	in = append(in, 0x96, 0xC1, 0xE1, 0xFF, 0xFF) // connected mid-packet
	in = append(in, good...)
	in = append(in, good[:6]...) // truncated
	in = append(in, good...)
	in = append(in, 0xFF, 0xFF, 0xFF)             // stray high bytes after a packet
	in = append(in, hexBytes(helloReply)...)      // a command reply
	in = append(in, 0x09, 0x80, 0x81, 0x82, 0x83) // a type of unknown length
	in = append(in, good...)
	in = append(in, 0x01, 0xE0, 0x85, 0xB3, 0x96, 0xC1, 0xE1, 0xFF, 0xFF, 0xFF) // one byte too many
	in = append(in, good...)
	s := decodeAll(ProtocolV46, in)
	want := drivertest.FrameCounts{OK: 6, Malformed: 5, Dropped: 5 + 6 + 3 + 5 + 1}
	if s.Frames != want {
		t.Fatalf("frames = %+v, want %+v", s.Frames, want)
	}
	if b := decodeByteByByte(ProtocolV46, in); b.Frames != want || !reflect.DeepEqual(views(b.Readings), views(s.Readings)) {
		t.Fatalf("byte by byte: %+v", b.Frames)
	}
	// A legacy stream read as v4.6 (the wrong protocol configured) gives
	// no reading at all.
	l := decodeAll(ProtocolV46, legacyFrames(120, 97, 72))
	if len(l.Readings) != 0 || l.Frames.OK+l.Frames.InvalidValue != 0 {
		t.Fatalf("legacy bytes decoded as v4.6: %+v %v", l.Frames, views(l.Readings))
	}
	v := decodeAll(ProtocolLegacy, v46Frames(120, 97, 72))
	if len(v.Readings) != 0 || v.Frames.OK+v.Frames.InvalidValue != 0 {
		t.Fatalf("v4.6 bytes decoded as legacy: %+v %v", v.Frames, views(v.Readings))
	}
}

// splitStream is every kind of input in one stream, per protocol.
func splitStream(p Protocol) []byte {
	var in []byte
	if p == ProtocolLegacy {
		in = append(in, 0x11, 0x22)
		in = append(in, legacyFrames(70, 97, 150)...)
		in = append(in, 0x85, 0x00)
		in = append(in, hexBytes(legacyFingerOutFrame)...)
		in = append(in, 0x85, 0x3C, 0x03, 0x48, 120)
		return append(in, legacyFrames(60, 90, 60)...)
	}
	in = append(in, 0xE0, 0x85)
	in = append(in, v46Frames(70, 97, 150)...)
	in = append(in, 0x01, 0xE0)
	in = append(in, hexBytes(v46FingerOutPkt)...)
	in = append(in, hexBytes(versionReply)...)
	in = append(in, hexBytes("01 F0 85 B3 96 C1 E1 FF FF")...)
	return append(in, v46Frames(60, 90, 60)...)
}

// A stream must decode the same however it is cut.
func TestSplitAnywhere(t *testing.T) {
	for _, p := range []Protocol{ProtocolLegacy, ProtocolV46} {
		for _, as := range []Protocol{p, ProtocolAuto} {
			input := splitStream(p)
			whole := decodeAll(as, input)
			if whole.Frames.OK < 100 || whole.Frames.Malformed == 0 || whole.Frames.InvalidValue == 0 {
				t.Fatalf("%v as %v: frames = %+v", p, as, whole.Frames)
			}
			for cut := 0; cut <= len(input); cut++ {
				s := drivertest.FeedCut(NewDecoder(as), input, cut, testNow)
				if !reflect.DeepEqual(views(s.Readings), views(whole.Readings)) || s.Frames != whole.Frames {
					t.Fatalf("%v as %v, cut at %d: frames %+v; want %+v", p, as, cut, s.Frames, whole.Frames)
				}
			}
			bytewise := decodeByteByByte(as, input)
			if !reflect.DeepEqual(views(bytewise.Readings), views(whole.Readings)) || bytewise.Frames != whole.Frames {
				t.Fatalf("%v as %v: byte by byte differs: %+v", p, as, bytewise.Frames)
			}
		}
	}
}

// Auto reads each generation exactly as the fixed decoder does once it has
// seen commitFrames frames in a row: nothing is lost by probing.
func TestAutoDetect(t *testing.T) {
	for _, p := range []Protocol{ProtocolLegacy, ProtocolV46} {
		input := splitStream(p)
		fixed := decodeAll(p, input)
		d := NewDecoder(ProtocolAuto)
		auto := &drivertest.Recorder{}
		d.Feed(input, testNow, auto)
		if d.Protocol() != p {
			t.Fatalf("auto decided %v, want %v", d.Protocol(), p)
		}
		if !reflect.DeepEqual(views(auto.Readings), views(fixed.Readings)) || auto.Frames != fixed.Frames {
			t.Fatalf("%v: auto %+v, fixed %+v", p, auto.Frames, fixed.Frames)
		}
	}

	// Fewer than commitFrames frames in a row decide nothing, and report
	// nothing yet.
	var in []byte
	for range 10 {
		in = append(in, legacyFrames(commitFrames-1, 97, 72)...)
		in = append(in, 0x85) // cuts the run
	}
	d := NewDecoder(ProtocolAuto)
	s := &drivertest.Recorder{}
	if len(in) >= probeCap {
		t.Fatalf("test input of %d bytes would overflow the probe", len(in))
	}
	d.Feed(in, testNow, s)
	if d.Protocol() != ProtocolAuto || len(s.Events) != 0 {
		t.Fatalf("decided %v after short runs; events %v", d.Protocol(), s.Events)
	}
}

// Bytes that fit neither framing (a wrong baud rate) never decide and are
// reported dropped, probeDrop at a time, so the device shows as silent.
func TestAutoGarbage(t *testing.T) {
	in := make([]byte, 10*probeCap)
	for i := range in {
		in[i] = byte(i*37 + i/3) // deterministic noise
	}
	d := NewDecoder(ProtocolAuto)
	s := &drivertest.Recorder{}
	d.Feed(in, testNow, s)
	if d.Protocol() != ProtocolAuto || len(s.Readings) != 0 {
		t.Fatalf("noise decided %v with readings %v", d.Protocol(), views(s.Readings))
	}
	want := (len(in) - probeCap) / probeDrop
	if s.Frames != (drivertest.FrameCounts{Malformed: want, Dropped: want * probeDrop}) {
		t.Fatalf("frames = %+v, want %d x %d dropped", s.Frames, want, probeDrop)
	}
	// A device that starts after the noise is still found, and the held
	// bytes before its frames are reported as dropped.
	s2 := &drivertest.Recorder{}
	d.Feed(v46Frames(10, 97, 72), testNow, s2)
	if d.Protocol() != ProtocolV46 || s2.Frames.OK != 10 || len(numerics(s2.Readings)) != 2 {
		t.Fatalf("after noise: %v %+v", d.Protocol(), s2.Frames)
	}
	if cap(d.probe.buf) != 0 {
		t.Fatalf("probe buffer kept after deciding")
	}
}

func TestZeroValueDecoderIsAuto(t *testing.T) {
	var d Decoder
	s := &drivertest.Recorder{}
	d.Feed(v46Frames(10, 97, 72), testNow, s)
	if d.Protocol() != ProtocolV46 || s.Frames != (drivertest.FrameCounts{OK: 10}) {
		t.Fatalf("zero Decoder: %v %+v", d.Protocol(), s.Frames)
	}
}

// The decoder must not keep references into the caller's buffer.
func TestDecoderCopiesPartialFrames(t *testing.T) {
	for _, p := range []Protocol{ProtocolLegacy, ProtocolV46, ProtocolAuto} {
		in := v46Frames(8, 97, 72)
		if p == ProtocolLegacy {
			in = legacyFrames(8, 97, 72)
		}
		want := decodeAll(p, in)
		cut := len(in) - 3
		buf := append([]byte(nil), in[:cut]...)
		d := NewDecoder(p)
		s := &drivertest.Recorder{}
		d.Feed(buf, testNow, s)
		copy(buf, bytes.Repeat([]byte{0x00}, len(buf)))
		d.Feed(in[cut:], testNow, s)
		if !reflect.DeepEqual(views(s.Readings), views(want.Readings)) || s.Frames != want.Frames {
			t.Fatalf("%v: the decoder read the caller's overwritten buffer: %+v", p, s.Frames)
		}
	}
}

// Feeding allocates only the pleth batches' sample slices: one per 60
// frames.
func TestFeedAllocations(t *testing.T) {
	for _, p := range []Protocol{ProtocolLegacy, ProtocolV46} {
		in := v46Frames(60, 97, 72)
		if p == ProtocolLegacy {
			in = legacyFrames(60, 97, 72)
		}
		d := NewDecoder(p)
		var sink drivers.Sink = drivertest.Discard
		d.Feed(in, testNow, sink) // align to a batch boundary
		if allocs := testing.AllocsPerRun(100, func() { d.Feed(in, testNow, sink) }); allocs != 1 {
			t.Errorf("%v: %v allocations per 60 frames, want 1 (the batch)", p, allocs)
		}
	}
}
