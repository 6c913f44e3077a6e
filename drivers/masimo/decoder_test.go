package masimo

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
	"github.com/vigil-monitor/vigil/drivers/drivertest"
)

// The worked examples of protocols.md 2.5, verbatim.
const (
	rad8Line     = "02/22/16 22:47:45 SN=0000056661 SPO2=098% BPM=097 PI=03.60% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800"
	radical7Line = "03/17/16 19:19:36 SN=---------- SPO2=098% BPM=123 PI=00.55 SPCO=--% SPMET=--.-% SPHB=--.- SPOC=-- RESVD=--- DESAT=-- PIDELTA=+-- PVI=--- ALARM=000000 EXC=0000C00 EXC1=00000000"
	noSensorLine = "03/19/16 13:37:12 SN=0000093112 SPO2=---% BPM=--- DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000001"
	// MD PnP poxrad_discrete.h's Radical-5 example: 2- and 3-digit hex words.
	radical5Line = "09/15/10 15:10:29 SPO2=097% BPM=064 PI=11.82% ALARM=20 EXC=800"
)

func rv(m drivers.MetricID, value float64, valid bool, when string, flags ...string) readingView {
	if flags == nil {
		flags = []string{}
	}
	return readingView{Metric: m.String(), Value: value, Valid: valid, Flags: flags, DeviceTime: when}
}

func TestWorkedExamples(t *testing.T) {
	tests := []struct {
		name   string
		line   string
		want   []readingView
		result drivers.FrameResult
	}{
		{
			name: "Rad-8 live capture: SET only, good signal",
			line: rad8Line,
			want: []readingView{
				rv(drivers.SpO2, 98, true, "2016-02-22T22:47:45Z"),
				rv(drivers.PulseRate, 97, true, "2016-02-22T22:47:45Z"),
				rv(drivers.PerfusionIndex, 3.60, true, "2016-02-22T22:47:45Z"),
			},
		},
		{
			name: "Radical-7: EXC 0xC00 is low signal IQ + SET, PI without %",
			line: radical7Line,
			want: []readingView{
				rv(drivers.SpO2, 98, true, "2016-03-17T19:19:36Z", "low-signal-quality"),
				rv(drivers.PulseRate, 123, true, "2016-03-17T19:19:36Z", "low-signal-quality"),
				rv(drivers.PerfusionIndex, 0.55, true, "2016-03-17T19:19:36Z", "low-signal-quality"),
			},
		},
		{
			name: "Rad-8 no sensor: no PI field, dashes, EXC 0x001",
			line: noSensorLine,
			want: []readingView{
				rv(drivers.SpO2, 0, false, "2016-03-19T13:37:12Z", "sensor-off", "no-sensor"),
				rv(drivers.PulseRate, 0, false, "2016-03-19T13:37:12Z", "sensor-off", "no-sensor"),
			},
		},
		{
			name: "Radical-5 (MD PnP example): short hex words, ALARM 0x20 silenced",
			line: radical5Line,
			want: []readingView{
				rv(drivers.SpO2, 97, true, "2010-09-15T15:10:29Z", "alarm-silenced"),
				rv(drivers.PulseRate, 64, true, "2010-09-15T15:10:29Z", "alarm-silenced"),
				rv(drivers.PerfusionIndex, 11.82, true, "2010-09-15T15:10:29Z", "alarm-silenced"),
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := decodeAll([]byte(tt.line + "\r\n"))
			if got := views(s.Readings); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("readings:\n got %v\nwant %v", got, tt.want)
			}
			if want := (drivertest.FrameCounts{OK: 1}); s.Frames != want {
				t.Fatalf("frames = %+v, want %+v", s.Frames, want)
			}
			// Readings first, then the frame's verdict.
			var wantEvents []string
			for _, r := range tt.want {
				wantEvents = append(wantEvents, "r:"+r.Metric)
			}
			wantEvents = append(wantEvents, "f:ok/0")
			if !reflect.DeepEqual(s.Events, wantEvents) {
				t.Fatalf("events = %v, want %v", s.Events, wantEvents)
			}
			for _, r := range s.Readings {
				if !r.Received.Equal(testNow) {
					t.Fatalf("Received = %v, want the Feed time %v", r.Received, testNow)
				}
				if r.Device != "" || r.Seq != 0 {
					t.Fatalf("decoder set Device/Seq (%q, %d): those are the agent's", r.Device, r.Seq)
				}
			}
		})
	}
}

// The PI value must be exactly the float64 nearest its decimal text, as
// strconv.ParseFloat would give.
func TestPerfusionIndexDecimals(t *testing.T) {
	for _, tc := range []struct {
		text string
		want float64
	}{
		{"00.55", 0.55}, {"03.60%", 3.6}, {"20.00%", 20}, {"00.02", 0.02}, {"99.99%", 99.99}, {"00.00", 0},
	} {
		line := "01/02/24 03:04:05 SPO2=097% BPM=064 PI=" + tc.text + " EXC=000800\n"
		s := decodeAll([]byte(line))
		if len(s.Readings) != 3 || s.Readings[2].Value != tc.want || !s.Readings[2].Valid {
			t.Errorf("PI=%s: readings %v, want PI %v valid", tc.text, views(s.Readings), tc.want)
		}
	}
}

func TestLineEndings(t *testing.T) {
	tests := []struct {
		name  string
		input string
		ok    int
	}{
		{"CRLF", rad8Line + "\r\n" + radical7Line + "\r\n", 2},
		{"LF only", rad8Line + "\n" + radical7Line + "\n", 2},
		{"CR only", rad8Line + "\r" + radical7Line + "\r", 2},
		{"LFCR", rad8Line + "\n\r" + radical7Line + "\n\r", 2},
		{"mixed, with blank lines", "\r\n\r\n" + rad8Line + "\r\r\n\n" + radical7Line + "\n\r\n" + noSensorLine + "\r", 3},
		{"last line not ended yet", rad8Line + "\r\n" + radical7Line, 1},
		{"only line ends", "\r\n\r\n\n\r\r", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, s := range []*drivertest.Recorder{decodeAll([]byte(tt.input)), decodeByteByByte([]byte(tt.input))} {
				if want := (drivertest.FrameCounts{OK: tt.ok}); s.Frames != want {
					t.Fatalf("frames = %+v, want %+v", s.Frames, want)
				}
			}
		})
	}
}

// Every one of these is one malformed frame, dropping the whole line, with
// no reading.
func TestMalformedLines(t *testing.T) {
	tests := []struct{ name, line string }{
		{"garbage", "\x13\x37garbage!! 42"},
		{"no fields after the time", "02/22/16 22:47:45"},
		{"truncated after SPO2", "02/22/16 22:47:45 SN=0000056661 SPO2=098%"},
		{"truncated inside the time", "02/22/16 22:4"},
		{"started mid-line", "PI=03.60% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800"},
		{"missing SPO2", "02/22/16 22:47:45 BPM=097 PI=03.60% ALARM=0000 EXC=000800"},
		{"missing BPM", "02/22/16 22:47:45 SPO2=098% PI=03.60% ALARM=0000 EXC=000800"},
		{"missing SPO2 and BPM", "02/22/16 22:47:45 SN=0000056661 ALARM=0000 EXC=000800"},
		{"missing EXC", "02/22/16 22:47:45 SPO2=098% BPM=097 PI=03.60% ALARM=0000"},
		{"month 13", "13/22/16 22:47:45 SPO2=098% BPM=097 EXC=000800"},
		{"February 30", "02/30/16 22:47:45 SPO2=098% BPM=097 EXC=000800"},
		{"February 29 of 2023", "02/29/23 22:47:45 SPO2=098% BPM=097 EXC=000800"},
		{"hour 24", "02/22/16 24:47:45 SPO2=098% BPM=097 EXC=000800"},
		{"second 60", "02/22/16 22:47:60 SPO2=098% BPM=097 EXC=000800"},
		{"letters in the date", "O2/22/16 22:47:45 SPO2=098% BPM=097 EXC=000800"},
		{"date with dashes", "02-22-16 22:47:45 SPO2=098% BPM=097 EXC=000800"},
		{"no space after the time", "02/22/16 22:47:45SPO2=098% BPM=097 EXC=000800"},
		{"key without =", "02/22/16 22:47:45 SPO2=098% BPM=097 PI EXC=000800"},
		{"empty key", "02/22/16 22:47:45 =5 SPO2=098% BPM=097 EXC=000800"},
		{"empty value", "02/22/16 22:47:45 SPO2= BPM=097 EXC=000800"},
		{"two =", "02/22/16 22:47:45 SPO2=098%=1 BPM=097 EXC=000800"},
		{"SPO2 lost a digit", "02/22/16 22:47:45 SPO2=98% BPM=097 EXC=000800"},
		{"BPM with four digits", "02/22/16 22:47:45 SPO2=098% BPM=0097 EXC=000800"},
		{"PI without leading zero", "02/22/16 22:47:45 SPO2=098% BPM=097 PI=3.60% EXC=000800"},
		{"PI with a comma", "02/22/16 22:47:45 SPO2=098% BPM=097 PI=03,60% EXC=000800"},
		{"SPO2 with letters", "02/22/16 22:47:45 SPO2=O98% BPM=097 EXC=000800"},
		{"SPO2 with two %", "02/22/16 22:47:45 SPO2=098%% BPM=097 EXC=000800"},
		{"EXC not hex", "02/22/16 22:47:45 SPO2=098% BPM=097 EXC=00080G"},
		{"EXC longer than 32 bits", "02/22/16 22:47:45 SPO2=098% BPM=097 EXC=000000800"},
		{"ALARM not hex", "02/22/16 22:47:45 SPO2=098% BPM=097 ALARM=---- EXC=000800"},
		{"EXC1 not hex", "02/22/16 22:47:45 SPO2=098% BPM=097 EXC=000800 EXC1=zz"},
		{"duplicate SPO2", "02/22/16 22:47:45 SPO2=098% SPO2=080% BPM=097 EXC=000800"},
		{"duplicate EXC", "02/22/16 22:47:45 SPO2=098% BPM=097 EXC=000800 EXC=000001"},
		{"lower-case unknown key", "02/22/16 22:47:45 SPO2=098% BPM=097 foo=1 EXC=000800"},
		{"tab separator", "02/22/16 22:47:45 SPO2=098%\tBPM=097 EXC=000800"},
		{"NUL inside", "02/22/16 22:47:45 SPO2=098% BPM=0\x007 EXC=000800"},
		{"high-bit byte", "02/22/16 22:47:45 SPO2=098% BPM=097 \xffEXC=000800"},
		{"NUL before the line", "\x0002/22/16 22:47:45 SPO2=098% BPM=097 EXC=000800"},
		{"only spaces", "   "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, s := range []*drivertest.Recorder{decodeAll([]byte(tt.line + "\r\n")), decodeByteByByte([]byte(tt.line + "\r\n"))} {
				if len(s.Readings) != 0 {
					t.Fatalf("readings from a malformed line: %v", views(s.Readings))
				}
				if want := (drivertest.FrameCounts{Malformed: 1, Dropped: len(tt.line)}); s.Frames != want {
					t.Fatalf("frames = %+v, want %+v", s.Frames, want)
				}
			}
		})
	}
}

// Lines that vary from the worked examples in ways the device may produce
// are still read.
func TestTolerantLines(t *testing.T) {
	tests := []struct {
		name string
		line string
		want []readingView
	}{
		{"extra spaces and trailing space",
			"02/22/16 22:47:45  SPO2=098%   BPM=097 EXC=800  ",
			[]readingView{rv(drivers.SpO2, 98, true, "2016-02-22T22:47:45Z"), rv(drivers.PulseRate, 97, true, "2016-02-22T22:47:45Z")}},
		{"values without %, lower-case hex",
			"02/22/16 22:47:45 SPO2=098 BPM=097% PI=01.25 ALARM=00 EXC=000c00",
			[]readingView{
				rv(drivers.SpO2, 98, true, "2016-02-22T22:47:45Z", "low-signal-quality"),
				rv(drivers.PulseRate, 97, true, "2016-02-22T22:47:45Z", "low-signal-quality"),
				rv(drivers.PerfusionIndex, 1.25, true, "2016-02-22T22:47:45Z", "low-signal-quality")}},
		{"unknown upper-case field from another firmware",
			"02/22/16 22:47:45 SPO2=098% NEWFIELD7=x.y BPM=097 EXC=000800",
			[]readingView{rv(drivers.SpO2, 98, true, "2016-02-22T22:47:45Z"), rv(drivers.PulseRate, 97, true, "2016-02-22T22:47:45Z")}},
		{"no-value forms without %",
			"02/22/16 22:47:45 SPO2=--- BPM=--- PI=--.-- EXC=000800",
			[]readingView{rv(drivers.SpO2, 0, false, "2016-02-22T22:47:45Z"), rv(drivers.PulseRate, 0, false, "2016-02-22T22:47:45Z"),
				rv(drivers.PerfusionIndex, 0, false, "2016-02-22T22:47:45Z")}},
		{"any value with '-' is no value (protocols.md 2.2)",
			"02/22/16 22:47:45 SPO2=0-8% BPM=- PI=-% EXC=000800",
			[]readingView{rv(drivers.SpO2, 0, false, "2016-02-22T22:47:45Z"), rv(drivers.PulseRate, 0, false, "2016-02-22T22:47:45Z"),
				rv(drivers.PerfusionIndex, 0, false, "2016-02-22T22:47:45Z")}},
		{"February 29 of a leap year, year 2000",
			"02/29/00 00:00:00 SPO2=100% BPM=000 EXC=000800",
			[]readingView{rv(drivers.SpO2, 100, true, "2000-02-29T00:00:00Z"), rv(drivers.PulseRate, 0, true, "2000-02-29T00:00:00Z")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := decodeAll([]byte(tt.line + "\n"))
			if got := views(s.Readings); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("readings:\n got %v\nwant %v", got, tt.want)
			}
			if want := (drivertest.FrameCounts{OK: 1}); s.Frames != want {
				t.Fatalf("frames = %+v, want %+v", s.Frames, want)
			}
		})
	}
}

func TestOutOfRangeValue(t *testing.T) {
	const when = "2016-02-22T22:47:45Z"
	tests := []struct {
		name string
		line string
		want []readingView
	}{
		{"SPO2 150%", "02/22/16 22:47:45 SPO2=150% BPM=097 PI=03.60% EXC=000800",
			[]readingView{rv(drivers.SpO2, 150, false, when, "out-of-range"), rv(drivers.PulseRate, 97, true, when), rv(drivers.PerfusionIndex, 3.6, true, when)}},
		{"BPM 400", "02/22/16 22:47:45 SPO2=098% BPM=400 EXC=000C00",
			[]readingView{rv(drivers.SpO2, 98, true, when, "low-signal-quality"), rv(drivers.PulseRate, 400, false, when, "low-signal-quality", "out-of-range")}},
		{"both, with no sensor", "02/22/16 22:47:45 SPO2=999% BPM=999 EXC=000001",
			[]readingView{rv(drivers.SpO2, 999, false, when, "sensor-off", "no-sensor", "out-of-range"),
				rv(drivers.PulseRate, 999, false, when, "sensor-off", "no-sensor", "out-of-range")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := decodeAll([]byte(tt.line + "\r\n"))
			if got := views(s.Readings); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("readings:\n got %v\nwant %v", got, tt.want)
			}
			if want := (drivertest.FrameCounts{InvalidValue: 1}); s.Frames != want {
				t.Fatalf("frames = %+v, want %+v", s.Frames, want)
			}
		})
	}
}

// Decision [I] (README "EXC and ALARM"): while EXC says no sensor, sensor
// off or a sensor/cable fault, a number on the line is not a patient value.
func TestSensorConditionsInvalidateValues(t *testing.T) {
	tests := []struct {
		exc   string
		valid bool
		flags []string
	}{
		{"000800", true, []string{}},
		{"000820", false, []string{"sensor-off"}},
		{"000001", false, []string{"sensor-off", "no-sensor"}},
		{"000802", false, []string{"sensor-fault"}},
		{"000880", false, []string{"sensor-fault"}},
		{"001800", false, []string{"sensor-off", "no-sensor"}},
		{"010800", false, []string{"sensor-fault"}},
		{"000804", true, []string{"low-perfusion"}},
		{"000808", true, []string{"searching"}},
		{"000810", true, []string{"artifact"}},
		{"000840", true, []string{"ambient-light"}},
		{"000C00", true, []string{"low-signal-quality"}},
	}
	for _, tt := range tests {
		s := decodeAll([]byte("02/22/16 22:47:45 SPO2=098% BPM=097 PI=03.60% EXC=" + tt.exc + "\n"))
		if len(s.Readings) != 3 || s.Frames != (drivertest.FrameCounts{OK: 1}) {
			t.Fatalf("EXC=%s: readings %v frames %+v", tt.exc, views(s.Readings), s.Frames)
		}
		for _, r := range views(s.Readings) {
			if r.Valid != tt.valid || !reflect.DeepEqual(r.Flags, tt.flags) {
				t.Errorf("EXC=%s: %v, want valid=%v flags=%v", tt.exc, r, tt.valid, tt.flags)
			}
		}
	}
}

func TestExcFlags(t *testing.T) {
	tests := []struct {
		exc  uint32
		want drivers.Flags
	}{
		{0x000, 0},
		{0x800, 0}, // SET alone: normal
		{0x001, drivers.FlagNoSensor | drivers.FlagSensorOff},
		{0x002, drivers.FlagSensorFault},
		{0x004, drivers.FlagLowPerfusion},
		{0x008, drivers.FlagSearching},
		{0x010, drivers.FlagArtifact},
		{0x020, drivers.FlagSensorOff},
		{0x040, drivers.FlagAmbientLight},
		{0x080, drivers.FlagSensorFault},
		{0x100, drivers.FlagSensorFault}, // [U] incompatible sensor (MD PnP)
		{0x200, 0},                       // reserved
		{0x400, drivers.FlagLowSignalQuality},
		{0x828, drivers.FlagSearching | drivers.FlagSensorOff}, // manual: Search,OffPat,SET
		{0xC00, drivers.FlagLowSignalQuality},                  // manual: LowSigIQ,SET
		{0x1000, drivers.FlagNoSensor | drivers.FlagSensorOff}, // [U] no cable
		{0x2000, 0},                        // [U] cable life expired: ignored
		{0x4000, drivers.FlagSensorFault},  // [U] incompatible cable
		{0x8000, drivers.FlagSensorFault},  // [U] unrecognised cable
		{0x10000, drivers.FlagSensorFault}, // [U] defective cable
		{0x20000 | 0x40000 | 0x80000 | 0x100000 | 0x200000 | 0x400000 | 0x800000, 0}, // [U] ignored
		{0xF0000000, 0}, // nothing known up there
	}
	for _, tt := range tests {
		if got := excFlags(tt.exc); got != tt.want {
			t.Errorf("excFlags(%#x) = %v, want %v", tt.exc, got, tt.want)
		}
	}
}

func TestAlarmFlags(t *testing.T) {
	tests := []struct {
		alarm uint32
		want  drivers.Flags
	}{
		{0x00, 0},
		{0x01, 0}, {0x02, 0}, {0x04, 0}, {0x08, 0}, // limit bits: Vigil uses its own limits
		{0x10, drivers.FlagDeviceAlarm},
		{0x20, drivers.FlagAlarmSilenced},
		{0x32, drivers.FlagDeviceAlarm | drivers.FlagAlarmSilenced},
		{0xFFC0, 0},
	}
	for _, tt := range tests {
		if got := alarmFlags(tt.alarm); got != tt.want {
			t.Errorf("alarmFlags(%#x) = %v, want %v", tt.alarm, got, tt.want)
		}
	}
	// And through a line: the flags reach every reading of it.
	s := decodeAll([]byte("02/22/16 22:47:45 SPO2=098% BPM=097 PI=03.60% ALARM=0012 EXC=000804\n"))
	for _, r := range s.Readings {
		if r.Flags != drivers.FlagDeviceAlarm|drivers.FlagLowPerfusion || !r.Valid {
			t.Errorf("%v: want valid with device-alarm,low-perfusion", viewOf(r))
		}
	}
}

func TestGarbageAndResync(t *testing.T) {
	const midLine = "47:44 SN=0000056661 SPO2=098% BPM=097 PI=03.60% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800"
	input := "\x00\xff\xfe" + "garbage\x01\x02" + "\r\n" + // garbage before the first line
		midLine + "\r\n" + // connected mid-line
		rad8Line + "\r\n" +
		"\x80\x81\x82\x83 noise\n" + // garbage between lines
		radical7Line + "\r" +
		rad8Line[:40] + "\r\n" + // truncated by a byte loss that hit the line end
		noSensorLine + "\r\n"
	want := drivertest.FrameCounts{
		OK:        3,
		Malformed: 4,
		Dropped:   len("\x00\xff\xfegarbage\x01\x02") + len(midLine) + len("\x80\x81\x82\x83 noise") + 40,
	}
	for name, s := range map[string]*drivertest.Recorder{
		"one call":     decodeAll([]byte(input)),
		"byte by byte": decodeByteByByte([]byte(input)),
	} {
		if s.Frames != want {
			t.Errorf("%s: frames = %+v, want %+v", name, s.Frames, want)
		}
		if got := len(s.Readings); got != 3+3+2 {
			t.Errorf("%s: %d readings, want 8: %v", name, got, views(s.Readings))
		}
	}
}

func TestOverlongLines(t *testing.T) {
	padded := func(n int) string { // a good line padded with spaces to n bytes
		return rad8Line + strings.Repeat(" ", n-len(rad8Line))
	}
	tests := []struct {
		name  string
		input string
		want  drivertest.FrameCounts
		// readings expected: from the good lines only
		readings int
	}{
		{"exactly MaxLineLen is read", padded(MaxLineLen) + "\r\n", drivertest.FrameCounts{OK: 1}, 3},
		{"one byte over is dropped", padded(MaxLineLen+1) + "\r\n" + rad8Line + "\r\n",
			drivertest.FrameCounts{OK: 1, Malformed: 1, Dropped: MaxLineLen + 1}, 3},
		{"long garbage, then resync", strings.Repeat("A", 5000) + "\n" + rad8Line + "\n",
			drivertest.FrameCounts{OK: 1, Malformed: 1, Dropped: 5000}, 3},
		{"several overlong lines counted once each",
			strings.Repeat("x", 600) + "\r" + strings.Repeat("y", 2000) + "\r\n" + rad8Line + "\r",
			drivertest.FrameCounts{OK: 1, Malformed: 2, Dropped: 2600}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// One call, byte by byte, and in 100-byte chunks exercise the
			// three paths: a whole line in p, a pending line overflowing,
			// and a pending line completed past the cap.
			chunked := &drivertest.Recorder{}
			d := NewDecoder()
			for in := []byte(tt.input); len(in) > 0; {
				n := min(100, len(in))
				d.Feed(in[:n], testNow, chunked)
				in = in[n:]
			}
			for name, s := range map[string]*drivertest.Recorder{
				"one call":     decodeAll([]byte(tt.input)),
				"byte by byte": decodeByteByByte([]byte(tt.input)),
				"chunks":       chunked,
			} {
				if s.Frames != tt.want || len(s.Readings) != tt.readings {
					t.Errorf("%s: frames = %+v, %d readings; want %+v, %d", name, s.Frames, len(s.Readings), tt.want, tt.readings)
				}
			}
			if d.lines.BufferCap() > MaxLineLen {
				t.Errorf("line buffer grew to %d bytes", d.lines.BufferCap())
			}
		})
	}
}

// A stream of all worked examples must decode the same however it is cut.
func TestSplitAnywhere(t *testing.T) {
	input := []byte(rad8Line + "\r\n" + radical7Line + "\r" + noSensorLine + "\n" + radical5Line + "\r\n" +
		"junk\r\n" + "02/22/16 22:47:45 SPO2=150% BPM=097 EXC=000800\r\n")
	whole := decodeAll(input)
	if whole.Frames != (drivertest.FrameCounts{OK: 4, Malformed: 1, InvalidValue: 1, Dropped: 4}) {
		t.Fatalf("frames = %+v", whole.Frames)
	}
	for cut := 0; cut <= len(input); cut++ {
		s := drivertest.FeedCut(NewDecoder(), input, cut, testNow)
		if !reflect.DeepEqual(views(s.Readings), views(whole.Readings)) || s.Frames != whole.Frames {
			t.Fatalf("cut at %d: frames %+v readings %v; want %+v %v", cut, s.Frames, views(s.Readings), whole.Frames, views(whole.Readings))
		}
	}
	bytewise := decodeByteByByte(input)
	if !reflect.DeepEqual(views(bytewise.Readings), views(whole.Readings)) || bytewise.Frames != whole.Frames {
		t.Fatalf("byte by byte differs: %+v %v", bytewise.Frames, views(bytewise.Readings))
	}
}

func TestZeroValueDecoder(t *testing.T) {
	var d Decoder
	s := &drivertest.Recorder{}
	d.Feed([]byte(rad8Line[:50]), testNow, s)
	d.Feed([]byte(rad8Line[50:]+"\r\n"), testNow, s)
	if s.Frames != (drivertest.FrameCounts{OK: 1}) || len(s.Readings) != 3 {
		t.Fatalf("zero Decoder: frames %+v readings %v", s.Frames, views(s.Readings))
	}
}

// The decoder must not keep references into the caller's buffer: the
// agent reuses its read buffer.
func TestDecoderCopiesPartialLines(t *testing.T) {
	buf := []byte(rad8Line[:60])
	d := NewDecoder()
	s := &drivertest.Recorder{}
	d.Feed(buf, testNow, s)
	copy(buf, bytes.Repeat([]byte{'Z'}, len(buf)))
	d.Feed([]byte(rad8Line[60:]+"\n"), testNow, s)
	if s.Frames != (drivertest.FrameCounts{OK: 1}) {
		t.Fatalf("frames %+v: the decoder read the caller's overwritten buffer", s.Frames)
	}
}

func TestFeedDoesNotAllocate(t *testing.T) {
	input := []byte(rad8Line + "\r\n" + radical7Line + "\r\n" + noSensorLine + "\r\n")
	d := NewDecoder()
	var sink drivers.Sink = drivertest.Discard
	allocs := testing.AllocsPerRun(200, func() {
		d.Feed(input, testNow, sink)
		d.Feed(input[:70], testNow, sink) // leaves a partial line ...
		d.Feed(input[70:], testNow, sink) // ... completed here
	})
	if allocs != 0 {
		t.Fatalf("Feed allocates %v times per run, want 0", allocs)
	}
}

func TestDeviceTimeIsUTC(t *testing.T) {
	s := decodeAll([]byte(rad8Line + "\n"))
	want := time.Date(2016, 2, 22, 22, 47, 45, 0, time.UTC)
	for _, r := range s.Readings {
		if !r.DeviceTime.Equal(want) || r.DeviceTime.Location() != time.UTC {
			t.Fatalf("DeviceTime = %v, want %v", r.DeviceTime, want)
		}
	}
}
