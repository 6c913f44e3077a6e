package suntech

import (
	"reflect"
	"testing"

	"github.com/vigil-monitor/vigil/drivers"
	"github.com/vigil-monitor/vigil/drivers/drivertest"
)

// The worked examples of protocols.md 4.1 (ak-git NIBPBytesInterceptorTest),
// verbatim.
const (
	workedPressure    = "3E 05 02 01 BA"
	workedBadChecksum = "3E 05 02 01 B1"
	workedDone        = "3E 04 4B 73"
	workedResult      = "3E 18 73 00 4A 00 1E 01 00 00 00 00 00 00 31 07 55 00 58 00 00 00 00 E9"
)

func TestWorkedExamples(t *testing.T) {
	t.Run("cuff pressure 258 mmHg", func(t *testing.T) {
		d := NewDecoder(PatientAdult)
		s := &drivertest.Recorder{}
		d.Feed(hexBytes(t, workedPressure), testNow, s)
		if s.Frames != (drivertest.FrameCounts{OK: 1}) || len(s.Readings) != 0 {
			t.Fatalf("frames %+v readings %v", s.Frames, views(s.Readings))
		}
		mmHg, at, ok := d.CuffPressure()
		if !ok || mmHg != 258 || !at.Equal(testNow) {
			t.Fatalf("CuffPressure = %d, %v, %v; want 258 at %v", mmHg, at, ok, testNow)
		}
	})
	t.Run("same bytes with CHK B1 rejected", func(t *testing.T) {
		d := NewDecoder(PatientAdult)
		s := &drivertest.Recorder{}
		d.Feed(hexBytes(t, workedBadChecksum), testNow, s)
		if s.Frames != (drivertest.FrameCounts{Checksum: 1, Dropped: 5}) || len(s.Readings) != 0 {
			t.Fatalf("frames %+v readings %v", s.Frames, views(s.Readings))
		}
		if _, _, ok := d.CuffPressure(); ok {
			t.Fatal("a frame failing its checksum set the cuff pressure")
		}
	})
	t.Run("measurement done K", func(t *testing.T) {
		s := decodeAll(hexBytes(t, workedDone))
		if s.Frames != (drivertest.FrameCounts{OK: 1}) || len(s.Readings) != 0 {
			t.Fatalf("frames %+v readings %v", s.Frames, views(s.Readings))
		}
	})
	t.Run("result SYS 115 DIA 74 HR 85 MAP 88", func(t *testing.T) {
		d := NewDecoder(PatientAdult)
		s := &drivertest.Recorder{}
		d.Feed(hexBytes(t, workedResult), testNow, s)
		if got := views(s.Readings); !reflect.DeepEqual(got, goodResult) {
			t.Fatalf("readings\n got %v\nwant %v", got, goodResult)
		}
		if s.Frames != (drivertest.FrameCounts{OK: 1}) {
			t.Fatalf("frames %+v", s.Frames)
		}
		if want := []string{"r:nibp_systolic", "r:nibp_diastolic", "r:nibp_mean", "r:nibp_pulse_rate", "f:ok/0"}; !reflect.DeepEqual(s.Events, want) {
			t.Fatalf("events %v, want readings before their frame", s.Events)
		}
		for _, r := range s.Readings {
			if !r.Received.Equal(testNow) || !r.DeviceTime.IsZero() {
				t.Fatalf("times: %+v", r)
			}
		}
		if code, text := d.LastError(); code != 0 || text != "" {
			t.Fatalf("LastError = %d %q", code, text)
		}
	})
}

// resultWith returns the worked result with some bytes of its data changed
// and the checksum recomputed.
func resultWith(t *testing.T, edit func(data []byte)) []byte {
	t.Helper()
	p := hexBytes(t, workedResult)
	edit(p[2 : 2+resultDataLen])
	p[len(p)-1] = Checksum(p[:len(p)-1])
	return p
}

// TestErrorCodeGivesNoValues: a non-zero error code invalidates all four
// values, even when the module left numbers in them (protocols.md 4.1).
func TestErrorCodeGivesNoValues(t *testing.T) {
	for _, code := range append([]uint8{0x42}, documentedErrorCodes...) {
		p := resultWith(t, func(data []byte) { data[18] = code })
		d := NewDecoder(PatientAdult)
		s := &drivertest.Recorder{}
		d.Feed(p, testNow, s)
		if got := views(s.Readings); !reflect.DeepEqual(got, failedResult) {
			t.Fatalf("code 0x%02X: readings %v", code, got)
		}
		if s.Frames != (drivertest.FrameCounts{OK: 1}) {
			t.Fatalf("code 0x%02X: frames %+v", code, s.Frames)
		}
		if c, text := d.LastError(); c != int(code) || text != ErrorText(int(code)) {
			t.Fatalf("code 0x%02X: LastError = %#x %q", code, c, text)
		}
	}
}

// TestHeartRateIsOneByte pins protocols.md's u8 heart rate: the spare byte
// after it (which nPM reads as the high byte) is ignored.
func TestHeartRateIsOneByte(t *testing.T) {
	p := resultWith(t, func(data []byte) { data[15] = 0x01 })
	s := decodeAll(p)
	if got := views(s.Readings); !reflect.DeepEqual(got, goodResult) {
		t.Fatalf("readings %v", got)
	}
}

func TestOutOfRangeResult(t *testing.T) {
	// SYS 400, MAP 0: outside the catalogue, not Valid, flagged; DIA and HR
	// stay good; the frame is FrameInvalidValue.
	p := resultWith(t, func(data []byte) {
		data[0], data[1] = 0x90, 0x01
		data[16], data[17] = 0, 0
	})
	s := decodeAll(p)
	want := []readingView{
		rv(drivers.NIBPSystolic, 400, false, "out-of-range"),
		rv(drivers.NIBPDiastolic, 74, true),
		rv(drivers.NIBPMean, 0, false, "out-of-range"),
		rv(drivers.NIBPPulseRate, 85, true),
	}
	if got := views(s.Readings); !reflect.DeepEqual(got, want) {
		t.Fatalf("readings\n got %v\nwant %v", got, want)
	}
	if s.Frames != (drivertest.FrameCounts{InvalidValue: 1}) {
		t.Fatalf("frames %+v", s.Frames)
	}
}

func TestCuffPressureSentinels(t *testing.T) {
	d := NewDecoder(PatientAdult)
	s := &drivertest.Recorder{}
	d.Feed(AppendPressureReply(nil, 120), testNow, s)
	if p, _, ok := d.CuffPressure(); !ok || p != 120 {
		t.Fatalf("120: %d %v", p, ok)
	}
	d.Feed(AppendPressureReply(nil, 0xFFFF), testNow, s)
	if _, _, ok := d.CuffPressure(); ok {
		t.Fatal("0xFFFF (int16 -1, nPM's no value) taken as a pressure")
	}
	d.Feed(AppendPressureReply(nil, 351), testNow, s)
	if _, _, ok := d.CuffPressure(); ok {
		t.Fatal("351 mmHg taken as a pressure")
	}
	d.Feed(AppendPressureReply(nil, 350), testNow, s)
	if p, _, ok := d.CuffPressure(); !ok || p != 350 {
		t.Fatalf("350: %d %v", p, ok)
	}
	d.Feed(AppendPressureReply(nil, 0), testNow, s)
	if p, _, ok := d.CuffPressure(); !ok || p != 0 {
		t.Fatalf("0 (deflated cuff): %d %v", p, ok)
	}
	if s.Frames != (drivertest.FrameCounts{OK: 4, InvalidValue: 1}) || len(s.Readings) != 0 {
		t.Fatalf("frames %+v readings %v", s.Frames, views(s.Readings))
	}
}

func TestGarbageAndResync(t *testing.T) {
	tests := []struct {
		name   string
		input  []byte
		want   []readingView
		frames drivertest.FrameCounts
	}{
		{"garbage before a frame is one malformed run",
			cat([]byte{0x00, 0xFF, 0x3A, 0x20}, hexBytes(t, workedResult)),
			goodResult, drivertest.FrameCounts{OK: 1, Malformed: 1, Dropped: 4}},
		{"'>' with an impossible LEN is garbage",
			cat([]byte{0x3E, 0x00, 0x3E, 0x3E, 0x07}, hexBytes(t, workedDone)),
			nil, drivertest.FrameCounts{OK: 1, Malformed: 1, Dropped: 5}},
		{"false start swallowing a real frame: rescanned from the next '>'",
			// '>' 0x18 claims 24 bytes covering the K and the pressure reply;
			// its sum fails, the decoder drops 2 bytes and finds both.
			cat([]byte{0x3E, 0x18}, hexBytes(t, workedDone), hexBytes(t, workedPressure), hexBytes(t, workedResult)),
			goodResult, drivertest.FrameCounts{OK: 3, Checksum: 1, Dropped: 2}},
		{"truncated result then a good one",
			cat(hexBytes(t, workedResult)[:10], hexBytes(t, workedResult)),
			goodResult, drivertest.FrameCounts{OK: 1, Checksum: 1, Dropped: 10}},
		{"checksum error then good frames",
			cat(hexBytes(t, workedBadChecksum), hexBytes(t, workedDone), hexBytes(t, workedResult)),
			goodResult, drivertest.FrameCounts{OK: 2, Checksum: 1, Dropped: 5}},
		{"long garbage is reported every 256 bytes",
			cat(make([]byte, 1000), hexBytes(t, workedDone)),
			nil, drivertest.FrameCounts{OK: 1, Malformed: 4, Dropped: 1000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.want == nil {
				tt.want = []readingView{}
			}
			for how, s := range map[string]*drivertest.Recorder{"one call": decodeAll(tt.input), "byte by byte": decodeByteByByte(tt.input)} {
				if got := views(s.Readings); !reflect.DeepEqual(got, tt.want) {
					t.Errorf("%s: readings\n got %v\nwant %v", how, got, tt.want)
				}
				if s.Frames != tt.frames {
					t.Errorf("%s: frames %+v, want %+v", how, s.Frames, tt.frames)
				}
			}
		})
	}
}

// TestUnfinishedFrameWaits: a frame's first bytes are kept, not reported,
// until the rest arrives.
func TestUnfinishedFrameWaits(t *testing.T) {
	d := NewDecoder(PatientAdult)
	s := &drivertest.Recorder{}
	p := hexBytes(t, workedResult)
	d.Feed(p[:23], testNow, s)
	if len(s.Events) != 0 {
		t.Fatalf("reported %v before the frame was complete", s.Events)
	}
	d.Feed(p[23:], testNow, s)
	if got := views(s.Readings); !reflect.DeepEqual(got, goodResult) {
		t.Fatalf("readings %v", got)
	}
}

func TestSplitAnywhere(t *testing.T) {
	input := cat([]byte{0x01, 0x3E}, hexBytes(t, workedPressure), hexBytes(t, workedBadChecksum),
		hexBytes(t, workedDone), []byte{0x3E, 0x18}, hexBytes(t, workedResult), []byte{0x99})
	whole := decodeAll(input)
	if whole.Frames.OK != 3 || len(whole.Readings) != 4 {
		t.Fatalf("whole: frames %+v readings %v", whole.Frames, views(whole.Readings))
	}
	for cut := 0; cut <= len(input); cut++ {
		s := drivertest.FeedCut(NewDecoder(PatientAdult), input, cut, testNow)
		if s.Frames != whole.Frames || !reflect.DeepEqual(s.Events, whole.Events) || !reflect.DeepEqual(views(s.Readings), views(whole.Readings)) {
			t.Fatalf("cut at %d: frames %+v events %v; whole %+v %v", cut, s.Frames, s.Events, whole.Frames, whole.Events)
		}
	}
	if b := decodeByteByByte(input); b.Frames != whole.Frames || !reflect.DeepEqual(views(b.Readings), views(whole.Readings)) {
		t.Fatalf("byte by byte: %+v %v", b.Frames, views(b.Readings))
	}
}

func TestFeedDoesNotAllocate(t *testing.T) {
	input := cat(hexBytes(t, workedPressure), hexBytes(t, workedDone), hexBytes(t, workedResult), []byte{0, 0x3E})
	d := NewDecoder(PatientAdult)
	var sink drivers.Sink = drivertest.Discard
	allocs := testing.AllocsPerRun(200, func() {
		d.Feed(input, testNow, sink)
	})
	if allocs != 0 {
		t.Fatalf("Feed allocates %.1f times per call", allocs)
	}
}

func TestZeroValueDecoder(t *testing.T) {
	var d Decoder
	s := &drivertest.Recorder{}
	d.Feed(hexBytes(t, workedResult), testNow, s)
	if got := views(s.Readings); !reflect.DeepEqual(got, goodResult) {
		t.Fatalf("readings %v", got)
	}
}
