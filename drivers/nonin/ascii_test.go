package nonin

import (
	"reflect"
	"strings"
	"testing"

	"github.com/vigil-monitor/vigil/drivers"
	"github.com/vigil-monitor/vigil/drivers/drivertest"
)

// The worked example of protocols.md 1.6 (9847 manual layout).
const asciiWorked = "12:00:01 SPO2=097 HR=072"

func TestASCIILines(t *testing.T) {
	ok := []readingView{rv(drivers.SpO2, 97, true), rv(drivers.PulseRate, 72, true)}
	none := []readingView{rv(drivers.SpO2, 0, false), rv(drivers.PulseRate, 0, false)}
	tests := []struct {
		name string
		line string
		want []readingView
	}{
		{"worked example, 9847 time prefix", asciiWorked, ok},
		{"8500 / 2500 / BT4000 plain", "SPO2=097 HR=072", ok},
		{"BT4000 fast-response, DIP 8 up", "SPO2=097 HR=072 F", ok},
		{"BT4000 event marker", "SPO2=097 HR=072*", ok},
		{"9847 event and breath", "12:00:01 SPO2=097 HR=072*B", ok},
		{"9847 breath after a space", "23:59:59 SPO2=097 HR=072 B", ok},
		{"fast and event", "SPO2=097 HR=072 F*", ok},
		{"extra spaces", "  SPO2=097   HR=072  ", ok},
		{"no data", "SPO2=--- HR=---", none},
		{"no data with time", "00:00:00 SPO2=--- HR=---", none},
		{"only SpO2 missing", "SPO2=--- HR=072", []readingView{rv(drivers.SpO2, 0, false), rv(drivers.PulseRate, 72, true)}},
		{"boundaries", "SPO2=100 HR=000", []readingView{rv(drivers.SpO2, 100, true), rv(drivers.PulseRate, 0, true)}},
	}
	for _, tt := range tests {
		s := decodeAll(asciiDc, []byte(tt.line+"\r\n"))
		if got := views(s.Readings); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("%s:\n got %v\nwant %v", tt.name, got, tt.want)
		}
		if want := []string{"r:spo2", "r:pulse_rate", "f:ok/0"}; !reflect.DeepEqual(s.Events, want) {
			t.Errorf("%s: events %v", tt.name, s.Events)
		}
	}
}

func TestASCIIOutOfRange(t *testing.T) {
	s := decodeAll(asciiDc, []byte("SPO2=101 HR=400\r\n"))
	want := []readingView{rv(drivers.SpO2, 101, false, "out-of-range"), rv(drivers.PulseRate, 400, false, "out-of-range")}
	if got := views(s.Readings); !reflect.DeepEqual(got, want) || s.Frames != (drivertest.FrameCounts{InvalidValue: 1}) {
		t.Fatalf("got %v %+v", got, s.Frames)
	}
}

// Every one of these is one malformed frame dropping the whole line.
func TestASCIIMalformedLines(t *testing.T) {
	tests := []struct{ name, line string }{
		{"power-up header", "NONIN 9847 V1.2  01/02/24 12:00:00"},
		{"SpO2 lost a digit", "SPO2=97 HR=072"},
		{"HR lost a digit", "SPO2=097 HR=72"},
		{"four digits", "SPO2=0097 HR=072"},
		{"two dashes", "SPO2=-- HR=072"},
		{"dash mixed with digits", "SPO2=0-7 HR=072"},
		{"space-padded value", "SPO2= 97 HR=072"},
		{"lower case", "spo2=097 hr=072"},
		{"HR first", "HR=072 SPO2=097"},
		{"missing HR", "SPO2=097"},
		{"missing SpO2", "HR=072"},
		{"no space between fields", "SPO2=097HR=072"},
		{"unknown marker", "SPO2=097 HR=072 X"},
		{"digit after HR", "SPO2=097 HR=0721"},
		{"bad hour", "24:00:00 SPO2=097 HR=072"},
		{"bad minute", "12:60:00 SPO2=097 HR=072"},
		{"time without space", "12:00:01SPO2=097 HR=072"},
		{"time with letters", "12:0a:01 SPO2=097 HR=072"},
		{"tab", "SPO2=097\tHR=072"},
		{"NUL", "SPO2=097 HR=0\x002"},
		{"high-bit byte", "\xffSPO2=097 HR=072"},
		{"started mid-line", "2=097 HR=072"},
		{"only spaces", "   "},
	}
	for _, tt := range tests {
		for how, s := range map[string]*drivertest.Recorder{
			"one call":     decodeAll(asciiDc, []byte(tt.line+"\r\n")),
			"byte by byte": decodeByteByByte(asciiDc, []byte(tt.line+"\r\n")),
		} {
			if len(s.Readings) != 0 {
				t.Errorf("%s %s: readings %v", tt.name, how, views(s.Readings))
			}
			if want := (drivertest.FrameCounts{Malformed: 1, Dropped: len(tt.line)}); s.Frames != want {
				t.Errorf("%s %s: frames %+v, want %+v", tt.name, how, s.Frames, want)
			}
		}
	}
}

func TestASCIILineEndsAndSplits(t *testing.T) {
	input := "\r\nNONIN HEADER\r\n" + asciiWorked + "\r\n" + "SPO2=098 HR=070\n" + "SPO2=--- HR=---\r" +
		"junk\r\n" + "SPO2=101 HR=070\r\n" + "SPO2=099"
	whole := decodeAll(asciiDc, []byte(input))
	if want := (drivertest.FrameCounts{OK: 3, InvalidValue: 1, Malformed: 2, Dropped: len("NONIN HEADER") + 4}); whole.Frames != want {
		t.Fatalf("frames %+v, want %+v", whole.Frames, want)
	}
	for cut := 0; cut <= len(input); cut++ {
		s := drivertest.FeedCut(NewASCIIDecoder(), []byte(input), cut, testNow)
		if !reflect.DeepEqual(s.Events, whole.Events) || !reflect.DeepEqual(views(s.Readings), views(whole.Readings)) {
			t.Fatalf("cut %d: %v; want %v", cut, s.Events, whole.Events)
		}
	}
	bytewise := decodeByteByByte(asciiDc, []byte(input))
	if !reflect.DeepEqual(bytewise.Events, whole.Events) {
		t.Fatalf("byte by byte: %v", bytewise.Events)
	}
}

func TestASCIIOverlongLines(t *testing.T) {
	padded := "SPO2=097 HR=072" + strings.Repeat(" ", MaxASCIILineLen-len("SPO2=097 HR=072"))
	tests := []struct {
		name  string
		input string
		want  drivertest.FrameCounts
	}{
		{"exactly the cap", padded + "\r\n", drivertest.FrameCounts{OK: 1}},
		{"one over", padded + " \r\nSPO2=097 HR=072\r\n", drivertest.FrameCounts{OK: 1, Malformed: 1, Dropped: MaxASCIILineLen + 1}},
		{"long garbage", strings.Repeat("A", 3000) + "\nSPO2=097 HR=072\n", drivertest.FrameCounts{OK: 1, Malformed: 1, Dropped: 3000}},
	}
	for _, tt := range tests {
		chunked := &drivertest.Recorder{}
		d := NewASCIIDecoder()
		for in := []byte(tt.input); len(in) > 0; {
			n := min(50, len(in))
			d.Feed(in[:n], testNow, chunked)
			in = in[n:]
		}
		for how, s := range map[string]*drivertest.Recorder{
			"one call": decodeAll(asciiDc, []byte(tt.input)), "byte by byte": decodeByteByByte(asciiDc, []byte(tt.input)), "chunks": chunked,
		} {
			if s.Frames != tt.want {
				t.Errorf("%s %s: frames %+v, want %+v", tt.name, how, s.Frames, tt.want)
			}
		}
		if d.lines.BufferCap() > MaxASCIILineLen {
			t.Errorf("%s: buffer grew to %d", tt.name, d.lines.BufferCap())
		}
	}
}

func TestASCIIZeroValueAndNoAllocs(t *testing.T) {
	var d ASCIIDecoder
	s := &drivertest.Recorder{}
	d.Feed([]byte(asciiWorked[:10]), testNow, s)
	d.Feed([]byte(asciiWorked[10:]+"\r\n"), testNow, s)
	if s.Frames != (drivertest.FrameCounts{OK: 1}) {
		t.Fatalf("zero decoder: %+v", s.Frames)
	}
	input := []byte(asciiWorked + "\r\nSPO2=--- HR=---\r\n")
	dec := NewASCIIDecoder()
	var sink drivers.Sink = drivertest.Discard
	allocs := testing.AllocsPerRun(200, func() {
		dec.Feed(input[:12], testNow, sink)
		dec.Feed(input[12:], testNow, sink)
	})
	if allocs != 0 {
		t.Fatalf("Feed allocates %v times, want 0", allocs)
	}
}
