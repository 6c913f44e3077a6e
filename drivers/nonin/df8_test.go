package nonin

import (
	"reflect"
	"testing"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
	"github.com/vigil-monitor/vigil/drivers/drivertest"
)

// The worked examples of protocols.md 1.4 (built from the layout [I]).
var (
	df8Normal     = []byte{0x80, 0x48, 0x61, 0x00}
	df8Disconnect = []byte{0xC3, 0x7F, 0x7F, 0x08}
)

func TestDF8WorkedExamples(t *testing.T) {
	tests := []struct {
		name  string
		frame []byte
		want  []readingView
	}{
		{"80 48 61 00: HR 72, SpO2 97, no flags", df8Normal,
			[]readingView{rv(drivers.SpO2, 97, true), rv(drivers.PulseRate, 72, true)}},
		{"C3 7F 7F 08: SNSD, HR 511 and SpO2 127 missing, sensor alarm", df8Disconnect,
			[]readingView{rv(drivers.SpO2, 0, false, "sensor-off", "no-sensor", "sensor-fault"),
				rv(drivers.PulseRate, 0, false, "sensor-off", "no-sensor", "sensor-fault")}},
	}
	for _, tt := range tests {
		s := decodeAll(df8, tt.frame)
		if got := views(s.Readings); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s:\n got %v\nwant %v", tt.name, got, tt.want)
		}
		if want := []string{"r:spo2", "r:pulse_rate", "f:ok/0"}; !reflect.DeepEqual(s.Events, want) {
			t.Errorf("%s: events %v", tt.name, s.Events)
		}
	}
}

func TestDF8HeartRateBits(t *testing.T) {
	for _, tt := range []struct {
		status, lsb byte
		want        float64
	}{
		{0x80, 0x00, 0}, {0x81, 0x00, 128}, {0x82, 0x2C, 300}, {0x82, 0x5E, 350},
	} {
		s := decodeAll(df8, []byte{tt.status, tt.lsb, 0x61, 0x00})
		if r := s.Readings[1]; r.Value != tt.want || !r.Valid {
			t.Errorf("%#x %#x: %v, want %v", tt.status, tt.lsb, viewOf(r), tt.want)
		}
	}
}

func TestDF8Flags(t *testing.T) {
	tests := []struct {
		status, status2 byte
		valid           bool
		flags           []string
	}{
		{0x80, 0x00, true, []string{}},
		{0x80 | df8SNSD, 0x00, false, []string{"sensor-off", "no-sensor"}},
		{0x80 | df8OOT, 0x00, true, []string{"searching"}},
		{0x80 | df8LPRF, 0x00, true, []string{"low-perfusion"}},
		{0x80 | df8MPRF, 0x00, true, []string{"low-signal-quality"}},
		{0x80 | df8ARTF, 0x00, true, []string{"artifact"}},
		{0x80, df8SNSA, false, []string{"sensor-fault"}},
		// SmartPoint, spot check, critical and low battery: no flag [U].
		{0x80, 0x20 | 0x04 | 0x02 | 0x01, true, []string{}},
	}
	for _, tt := range tests {
		s := decodeAll(df8, []byte{tt.status, 0x48, 0x61, tt.status2})
		for _, r := range views(s.Readings) {
			if r.Valid != tt.valid || !reflect.DeepEqual(r.Flags, tt.flags) {
				t.Errorf("%#x %#x: %v, want valid=%v flags=%v", tt.status, tt.status2, r, tt.valid, tt.flags)
			}
		}
	}
}

func TestDF8OutOfRange(t *testing.T) {
	s := decodeAll(df8, []byte{0x82, 0x60, 0x65, 0x00}) // HR 352, SpO2 101
	want := []readingView{rv(drivers.SpO2, 101, false, "out-of-range"), rv(drivers.PulseRate, 352, false, "out-of-range")}
	if got := views(s.Readings); !reflect.DeepEqual(got, want) || s.Frames != (drivertest.FrameCounts{InvalidValue: 1}) {
		t.Fatalf("got %v %+v", got, s.Frames)
	}
}

// Bit7 marks the first byte and only it: garbage, a truncated frame (a new
// STATUS byte arriving early) and bytes after a frame are dropped.
func TestDF8GarbageAndResync(t *testing.T) {
	input := concat(
		[]byte{0x48, 0x61, 0x00}, // connected mid-frame
		df8Normal,
		[]byte{0x80, 0x48}, // truncated: the next STATUS comes early
		df8Disconnect,
		[]byte{0x01, 0x02}, // stray bytes
		[]byte{0xFF, 0xFE}, // two STATUS-like bytes: the first is truncated
		[]byte{0x48, 0x61, 0x00},
		df8Normal[:3], // unfinished at the end: kept
	)
	want := drivertest.FrameCounts{OK: 3, Malformed: 3, Dropped: 3 + 2 + 2 + 1}
	for how, s := range map[string]*drivertest.Recorder{"one call": decodeAll(df8, input), "byte by byte": decodeByteByByte(df8, input)} {
		if s.Frames != want {
			t.Errorf("%s: frames %+v, want %+v", how, s.Frames, want)
		}
		if len(s.Readings) != 6 {
			t.Errorf("%s: %d readings", how, len(s.Readings))
		}
	}
}

// Decision [I]: a partial frame older than MaxDF8FrameSpan lost its other
// bytes; it is dropped, not completed by the next second's bytes.
func TestDF8StalePartialFrame(t *testing.T) {
	d := NewDF8Decoder()
	s := &drivertest.Recorder{}
	d.Feed(df8Normal[:2], testNow, s)
	d.Feed(df8Normal[2:], testNow.Add(MaxDF8FrameSpan), s) // just in time
	if s.Frames != (drivertest.FrameCounts{OK: 1}) {
		t.Fatalf("frames %+v, want one good frame", s.Frames)
	}

	d.Feed(df8Normal[:2], testNow.Add(time.Second), s)
	// The rest arrives too late: the two old bytes and these two (bit7
	// clear) are dropped, and reported with the next good frame.
	late := testNow.Add(time.Second + MaxDF8FrameSpan + time.Millisecond)
	d.Feed(df8Normal[2:], late, s)
	d.Feed(df8Normal, late, s)
	if want := (drivertest.FrameCounts{OK: 2, Malformed: 1, Dropped: 4}); s.Frames != want {
		t.Fatalf("frames %+v, want %+v", s.Frames, want)
	}
}

func TestDF8LongGarbage(t *testing.T) {
	garbage := make([]byte, 1000) // all bit7 clear
	s := decodeAll(df8, concat(garbage, df8Normal))
	if want := (drivertest.FrameCounts{OK: 1, Malformed: 1000/MaxDF8DropRun + 1, Dropped: 1000}); s.Frames != want {
		t.Fatalf("frames %+v, want %+v", s.Frames, want)
	}
}

func TestDF8SplitAnywhere(t *testing.T) {
	input := concat([]byte{0x00, 0x61}, df8Normal, df8Disconnect, []byte{0x80}, df8Normal, []byte{0x82, 0x60, 0x65, 0x00}, df8Normal[:2])
	whole := decodeAll(df8, input)
	if whole.Frames != (drivertest.FrameCounts{OK: 3, InvalidValue: 1, Malformed: 2, Dropped: 3}) {
		t.Fatalf("frames %+v", whole.Frames)
	}
	for cut := 0; cut <= len(input); cut++ {
		s := drivertest.FeedCut(NewDF8Decoder(), input, cut, testNow)
		if !reflect.DeepEqual(s.Events, whole.Events) || !reflect.DeepEqual(views(s.Readings), views(whole.Readings)) {
			t.Fatalf("cut at %d: %v; want %v", cut, s.Events, whole.Events)
		}
	}
}

func TestDF8FeedDoesNotAllocate(t *testing.T) {
	input := concat(df8Normal, []byte{1}, df8Disconnect, df8Normal)
	d := NewDF8Decoder()
	var sink drivers.Sink = drivertest.Discard
	if allocs := testing.AllocsPerRun(200, func() { d.Feed(input, testNow, sink) }); allocs != 0 {
		t.Fatalf("Feed allocates %v times, want 0", allocs)
	}
}
