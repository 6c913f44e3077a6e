package contec

import (
	"bytes"
	"math"
	"math/rand"
	"reflect"
	"testing"
	"testing/quick"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
	"github.com/vigil-monitor/vigil/drivers/drivertest"
)

// encodeTime is away from a beat boundary at 72/min, so no beat marker
// lands on the first frame.
var encodeTime = testNow.Add(300 * time.Millisecond)

func TestEncodeLayout(t *testing.T) {
	f := drivers.Frame{Time: encodeTime, Samples: []float64{60},
		Values: map[drivers.MetricID]float64{drivers.SpO2: 97, drivers.PulseRate: 72}}
	// protocols.md 3.2's layout example, with the encoder's bar graph
	// (pleth / 8 = 7; the device's own bar graph is not specified).
	if got, want := NewEncoder(ProtocolLegacy).Encode(nil, f), hexBytes("85 3C 07 48 61"); !bytes.Equal(got, want) {
		t.Errorf("legacy: % X, want % X", got, want)
	}
	// The headrotor packet, with the encoder's second wave (pleth / 2).
	f.Samples = []float64{0x33}
	f.Values[drivers.PulseRate] = 65
	if got, want := NewEncoder(ProtocolV46).Encode(nil, f), hexBytes("01 E0 85 B3 99 C1 E1 FF FF"); !bytes.Equal(got, want) {
		t.Errorf("v4.6: % X, want % X", got, want)
	}
	// No values, sensor off: finger-out bits, sentinels, flat pleth.
	off := drivers.Frame{Time: encodeTime, Samples: []float64{80}, Flags: drivers.FlagSensorOff,
		Values: map[drivers.MetricID]float64{drivers.SpO2: 97}}
	if got, want := NewEncoder(ProtocolLegacy).Encode(nil, off), hexBytes("90 00 40 7F 7F"); !bytes.Equal(got, want) {
		t.Errorf("legacy sensor off: % X, want % X", got, want)
	}
	if got, want := NewEncoder(ProtocolV46).Encode(nil, off), hexBytes("01 E9 80 80 80 FF FF FF FF"); !bytes.Equal(got, want) {
		t.Errorf("v4.6 sensor off: % X, want % X", got, want)
	}
	// Values a frame cannot carry go out as no value.
	odd := drivers.Frame{Time: encodeTime, Samples: []float64{-3},
		Values: map[drivers.MetricID]float64{drivers.SpO2: math.NaN(), drivers.PulseRate: 255}}
	if got, want := NewEncoder(ProtocolLegacy).Encode(nil, odd), hexBytes("85 00 40 7F 7F"); !bytes.Equal(got, want) {
		t.Errorf("legacy odd values: % X, want % X", got, want)
	}
}

func TestEncoderInterval(t *testing.T) {
	for _, p := range []Protocol{ProtocolAuto, ProtocolLegacy, ProtocolV46} {
		if got := NewEncoder(p).Interval(); got != time.Second {
			t.Errorf("%v: Interval = %v, want 1s (one Encode is one second of frames)", p, got)
		}
	}
}

// Without samples, Encode draws one second of pleth: 60 frames, one beat
// marker per beat, a flat line while the sensor is off.
func TestEncodeSynthesisedPleth(t *testing.T) {
	for _, pulse := range []float64{60, 120} {
		f := drivers.Frame{Time: encodeTime, Values: map[drivers.MetricID]float64{drivers.SpO2: 97, drivers.PulseRate: pulse}}
		legacy := NewEncoder(ProtocolLegacy).Encode(nil, f)
		v46 := NewEncoder(ProtocolV46).Encode(nil, f)
		if len(legacy) != 60*5 || len(v46) != 60*9 {
			t.Fatalf("lengths %d, %d", len(legacy), len(v46))
		}
		beeps, markers := 0, 0
		for i := 0; i < len(legacy); i += 5 {
			if legacy[i]&legacyBeep != 0 {
				beeps++
			}
		}
		for i := 0; i < len(v46); i += 9 {
			if v46[i+2]&v46Beat != 0 {
				markers++
			}
		}
		if beeps != int(pulse/60) || markers != 2*int(pulse/60) {
			t.Errorf("pulse %v: %d beeps, %d v4.6 markers in one second", pulse, beeps, markers)
		}
		s := decodeAll(ProtocolV46, v46)
		p := pleths(s.Readings)
		if len(p) != 1 {
			t.Fatalf("pulse %v: %v", pulse, views(s.Readings))
		}
		lo, hi := 127.0, 0.0
		for _, v := range p[0].Samples {
			lo, hi = math.Min(lo, v), math.Max(hi, v)
		}
		if lo < 10 || hi > 110 || hi-lo < 50 {
			t.Errorf("pulse %v: pleth spans %v..%v, want a visible pulse wave", pulse, lo, hi)
		}
	}
	off := drivers.Frame{Time: encodeTime, Flags: drivers.FlagSensorOff}
	s := decodeAll(ProtocolLegacy, NewEncoder(ProtocolLegacy).Encode(nil, off))
	for _, v := range pleths(s.Readings)[0].Samples {
		if v != 0 {
			t.Fatalf("sensor off: pleth %v, want flat 0", pleths(s.Readings)[0].Samples)
		}
	}
	// Consecutive seconds join up: the curve continues across calls.
	f := drivers.Frame{Time: encodeTime, Values: map[drivers.MetricID]float64{drivers.PulseRate: 72}}
	two := NewEncoder(ProtocolV46).Encode(nil, f)
	f.Time = f.Time.Add(time.Second)
	two = NewEncoder(ProtocolV46).Encode(two, f)
	f.Time = encodeTime
	f.Samples = nil
	long := NewEncoder(ProtocolV46)
	var want []byte
	for i := range 120 {
		g := f
		g.Time = encodeTime.Add(time.Duration(i) * samplePeriod)
		g.Samples = nil
		one := long.Encode(nil, g)[:9] // the first frame of a second starting at i
		want = append(want, one...)
	}
	for i := 0; i < len(two); i += 9 {
		if two[i+3] != want[i+3] {
			t.Fatalf("frame %d: pleth %#x, want %#x (curve depends on time only)", i/9, two[i+3], want[i+3])
		}
	}
}

func TestEncodeDoesNotAllocate(t *testing.T) {
	f := drivers.Frame{Time: encodeTime, Values: map[drivers.MetricID]float64{drivers.SpO2: 97, drivers.PulseRate: 72}}
	buf := make([]byte, 0, 1024)
	for _, p := range []Protocol{ProtocolLegacy, ProtocolV46} {
		enc := NewEncoder(p)
		if allocs := testing.AllocsPerRun(100, func() { buf = enc.Encode(buf[:0], f) }); allocs != 0 {
			t.Errorf("%v: Encode allocates %v times, want 0", p, allocs)
		}
	}
}

// quickFrame is a Frame for the round trip: SpO2 and pulse anywhere from
// -10 to 300 (a quarter missing each), any flags, and either no samples
// or 60 samples from -20 to 150.
type quickFrame struct{ drivers.Frame }

func (quickFrame) Generate(r *rand.Rand, _ int) reflect.Value {
	f := drivers.Frame{
		Time:   testNow.Add(time.Duration(r.Int63n(int64(24 * time.Hour)))),
		Values: map[drivers.MetricID]float64{},
		Flags:  drivers.Flags(r.Uint32()) & (drivers.Flags(1)<<16 - 1),
	}
	if r.Intn(4) > 0 {
		f.Values[drivers.SpO2] = float64(r.Intn(311)-10) + r.Float64()*0.98 - 0.49
	}
	if r.Intn(4) > 0 {
		f.Values[drivers.PulseRate] = float64(r.Intn(311)-10) + r.Float64()*0.98 - 0.49
	}
	if r.Intn(2) == 0 {
		f.Samples = make([]float64, 60)
		for i := range f.Samples {
			f.Samples[i] = r.Float64()*170 - 20
		}
	}
	return reflect.ValueOf(quickFrame{f})
}

// decode(encode(frame)) gives back one second: 60 good frames, SpO2 and
// pulse (Valid exactly when present, encodable, in range and measured),
// the flags each generation carries, and the samples as 7-bit values.
func TestRoundTrip(t *testing.T) {
	for _, p := range []Protocol{ProtocolLegacy, ProtocolV46} {
		property := func(q quickFrame) bool {
			f := q.Frame
			s := decodeAll(p, NewEncoder(p).Encode(nil, f))
			measuring := f.Flags&sensorAbsentFlags == 0
			var flags drivers.Flags
			if p == ProtocolLegacy {
				if f.Flags&(drivers.FlagSensorOff|drivers.FlagNoSensor) != 0 {
					flags |= drivers.FlagSensorOff
				}
				flags |= f.Flags & (drivers.FlagSensorFault | drivers.FlagSearching)
			} else {
				if !measuring {
					flags |= drivers.FlagSensorOff
				}
				flags |= f.Flags & drivers.FlagSearching
			}
			invalidFrame := false
			want := []readingView{}
			for _, m := range []struct {
				id       drivers.MetricID
				sentinel int
			}{{drivers.SpO2, noSpO2}, {drivers.PulseRate, noPulse}} {
				v, present := f.Values[m.id]
				raw := math.Round(v)
				if !present || !measuring || !(raw >= 0 && raw < float64(m.sentinel)) {
					want = append(want, readingView{Metric: m.id.String(), Flags: flags.Names()})
					continue
				}
				r := readingView{Metric: m.id.String(), Value: raw, Flags: flags.Names()}
				if m.id.Info().InRange(raw) {
					r.Valid = flags&invalidatingFlags == 0
				} else {
					r.Flags = (flags | drivers.FlagOutOfRange).Names()
					invalidFrame = true
				}
				want = append(want, r)
			}
			for i := range want {
				if want[i].Flags == nil {
					want[i].Flags = []string{}
				}
			}
			if got := numerics(s.Readings); !reflect.DeepEqual(got, want) {
				t.Logf("%v frame %+v: numerics %v, want %v", p, f, got, want)
				return false
			}
			frames := drivertest.FrameCounts{OK: 60}
			if invalidFrame {
				frames = drivertest.FrameCounts{InvalidValue: 60}
			}
			pl := pleths(s.Readings)
			if s.Frames != frames || len(pl) != 1 || len(pl[0].Samples) != 60 || pl[0].Flags != flags {
				t.Logf("%v frame %+v: frames %+v pleth %v", p, f, s.Frames, views(s.Readings))
				return false
			}
			for i, got := range pl[0].Samples {
				want := 0.0
				if len(f.Samples) > 0 && measuring {
					want = float64(clampSample(f.Samples[i]))
				} else if len(f.Samples) == 0 && measuring && f.Values[drivers.PulseRate] >= 0.5 &&
					math.Round(f.Values[drivers.PulseRate]) < noPulse {
					want = got // drawn curve: checked in TestEncodeSynthesisedPleth
				}
				if got != want {
					t.Logf("%v frame %+v: sample %d = %v, want %v", p, f, i, got, want)
					return false
				}
			}
			return true
		}
		if err := quick.Check(property, &quick.Config{MaxCount: 3000, Rand: rand.New(rand.NewSource(1))}); err != nil {
			t.Fatalf("%v: %v", p, err)
		}
	}
}
