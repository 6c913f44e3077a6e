package masimo

import (
	"math"
	"math/rand"
	"reflect"
	"testing"
	"testing/quick"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
	"github.com/vigil-monitor/vigil/drivers/drivertest"
)

func TestEncodeWorkedExample(t *testing.T) {
	f := drivers.Frame{
		Time:     time.Date(2016, 2, 22, 22, 47, 45, 0, time.UTC),
		Values:   map[drivers.MetricID]float64{drivers.SpO2: 98, drivers.PulseRate: 97, drivers.PerfusionIndex: 3.6},
		DeviceSN: "0000056661",
	}
	got := string(Encoder{}.Encode(nil, f))
	if want := rad8Line + "\r\n"; got != want {
		t.Fatalf("Encode:\n got %q\nwant %q", got, want)
	}
}

func TestEncodeNoValueForms(t *testing.T) {
	when := time.Date(2016, 3, 19, 13, 37, 12, 0, time.FixedZone("UTC+2", 2*3600))
	tests := []struct {
		name string
		f    drivers.Frame
		want string
	}{
		{"no sensor: dashes and no SET bit, even with values",
			drivers.Frame{Time: when, Flags: drivers.FlagNoSensor, Values: map[drivers.MetricID]float64{drivers.SpO2: 97}},
			"03/19/16 11:37:12 SN=---------- SPO2=---% BPM=--- PI=--.--% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000001\r\n"},
		{"sensor off the patient: SET stays on",
			drivers.Frame{Time: when, Flags: drivers.FlagSensorOff | drivers.FlagSearching, Values: map[drivers.MetricID]float64{drivers.SpO2: 97}},
			"03/19/16 11:37:12 SN=---------- SPO2=---% BPM=--- PI=--.--% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000828\r\n"},
		{"values the line cannot hold",
			drivers.Frame{Time: when, Values: map[drivers.MetricID]float64{drivers.SpO2: math.NaN(), drivers.PulseRate: -1, drivers.PerfusionIndex: 100}},
			"03/19/16 11:37:12 SN=---------- SPO2=---% BPM=--- PI=--.--% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800\r\n"},
		{"rounding, alarm bits, short and bad serials",
			drivers.Frame{Time: when, DeviceSN: "42", Flags: drivers.FlagDeviceAlarm | drivers.FlagAlarmSilenced | drivers.FlagLowSignalQuality,
				Values: map[drivers.MetricID]float64{drivers.SpO2: 96.6, drivers.PulseRate: 999.4, drivers.PerfusionIndex: 0.555}},
			"03/19/16 11:37:12 SN=0000000042 SPO2=097% BPM=999 PI=00.56% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0030 EXC=000C00\r\n"},
		{"serial with a space is not printed",
			drivers.Frame{Time: when, DeviceSN: "12 34", Values: map[drivers.MetricID]float64{drivers.PulseRate: 1000}},
			"03/19/16 11:37:12 SN=---------- SPO2=---% BPM=--- PI=--.--% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800\r\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := string(Encoder{}.Encode(nil, tt.f)); got != tt.want {
				t.Fatalf("Encode:\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestEncoderInterval(t *testing.T) {
	if got := (Encoder{}).Interval(); got != time.Second {
		t.Fatalf("Interval = %v, want 1s (protocols.md 2.1)", got)
	}
}

func TestEncodeDoesNotAllocate(t *testing.T) {
	f := drivers.Frame{
		Time:   time.Date(2016, 2, 22, 22, 47, 45, 0, time.UTC),
		Values: map[drivers.MetricID]float64{drivers.SpO2: 98, drivers.PulseRate: 97, drivers.PerfusionIndex: 3.6},
	}
	buf := make([]byte, 0, 256)
	if allocs := testing.AllocsPerRun(100, func() { buf = Encoder{}.Encode(buf[:0], f) }); allocs != 0 {
		t.Fatalf("Encode allocates %v times, want 0", allocs)
	}
}

// encodableFlags are the flags an ASCII 1 line can carry.
const encodableFlags = drivers.FlagSensorOff | drivers.FlagNoSensor | drivers.FlagSensorFault | drivers.FlagSearching |
	drivers.FlagArtifact | drivers.FlagLowPerfusion | drivers.FlagLowSignalQuality | drivers.FlagAmbientLight |
	drivers.FlagDeviceAlarm | drivers.FlagAlarmSilenced

// quickFrame is a Frame the line format can represent: integer SpO2 and
// pulse up to 999, PI in hundredths below 100, a time in 2000-2099 to the
// second, any flags. Each metric is missing a quarter of the time.
type quickFrame struct{ drivers.Frame }

func (quickFrame) Generate(r *rand.Rand, _ int) reflect.Value {
	f := drivers.Frame{
		Time:   time.Unix(946684800+r.Int63n(100*365*86400), 0).UTC(), // from 2000-01-01
		Values: map[drivers.MetricID]float64{},
		Flags:  drivers.Flags(r.Uint32()) & (drivers.Flags(1)<<16 - 1), // also flags the line cannot carry
	}
	if r.Intn(4) > 0 {
		f.Values[drivers.SpO2] = float64(r.Intn(1000))
	}
	if r.Intn(4) > 0 {
		f.Values[drivers.PulseRate] = float64(r.Intn(1000))
	}
	if r.Intn(4) > 0 {
		f.Values[drivers.PerfusionIndex] = float64(r.Intn(10000)) / 100
	}
	return reflect.ValueOf(quickFrame{f})
}

// decode(encode(frame)) gives back the frame's time, values and flags:
// values are Valid exactly when present, in range and measured with a
// sensor on; flags come back as the line can carry them (no sensor implies
// sensor off; out-of-range is added per reading by the decoder).
func TestRoundTrip(t *testing.T) {
	property := func(q quickFrame) bool {
		f := q.Frame
		s := decodeAll(Encoder{}.Encode(nil, f))
		if len(s.Readings) != 3 {
			t.Logf("%d readings from %+v", len(s.Readings), f)
			return false
		}
		wantFlags := f.Flags & encodableFlags
		if wantFlags&drivers.FlagNoSensor != 0 {
			wantFlags |= drivers.FlagSensorOff
		}
		measuring := wantFlags&sensorAbsentFlags == 0
		invalidFrame := false
		for i, m := range []drivers.MetricID{drivers.SpO2, drivers.PulseRate, drivers.PerfusionIndex} {
			r := s.Readings[i]
			v, present := f.Values[m]
			inRange := !present || !measuring || m.Info().InRange(v)
			flags := wantFlags
			if !inRange {
				flags |= drivers.FlagOutOfRange
				invalidFrame = true
			}
			wantValid := present && measuring && inRange
			if r.Metric != m || r.Valid != wantValid || r.Flags != flags || !r.DeviceTime.Equal(f.Time) ||
				(present && measuring && math.Abs(r.Value-v) > 1e-9) {
				t.Logf("frame %+v: reading %d = %v", f, i, viewOf(r))
				return false
			}
		}
		want := drivertest.FrameCounts{OK: 1}
		if invalidFrame {
			want = drivertest.FrameCounts{InvalidValue: 1}
		}
		return s.Frames == want
	}
	if err := quick.Check(property, &quick.Config{MaxCount: 5000, Rand: rand.New(rand.NewSource(1))}); err != nil {
		t.Fatal(err)
	}
}
