package nonin

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

// The encoder renders the pufferfish worked packet exactly, except that it
// shows a green perfusion colour (STATUS bit 1, checksum + 2) where the
// test vector shows none.
func TestEncodeWorkedPacket(t *testing.T) {
	f := drivers.Frame{
		Values:  map[drivers.MetricID]float64{drivers.SpO2: 97, drivers.PulseRate: 72},
		Samples: repeat(1, 25),
	}
	want := bytes.Clone(pufferfishPacket)
	for i := 0; i < packetLen; i += frameLen {
		want[i+1] |= 0x02
		want[i+4] += 0x02
	}
	if got := NewDF2Encoder().Encode(nil, f); !bytes.Equal(got, want) {
		t.Fatalf("Encode:\n got % X\nwant % X", got, want)
	}
}

func TestEncodeDF8WorkedExamples(t *testing.T) {
	got := DF8Encoder{}.Encode(nil, drivers.Frame{Values: map[drivers.MetricID]float64{drivers.SpO2: 97, drivers.PulseRate: 72}})
	if !bytes.Equal(got, df8Normal) {
		t.Errorf("normal: % X, want % X", got, df8Normal)
	}
	got = DF8Encoder{}.Encode(nil, drivers.Frame{Flags: drivers.FlagNoSensor | drivers.FlagSensorFault,
		Values: map[drivers.MetricID]float64{drivers.SpO2: 97}})
	if !bytes.Equal(got, df8Disconnect) {
		t.Errorf("disconnected: % X, want % X", got, df8Disconnect)
	}
}

func TestEncodeASCII(t *testing.T) {
	tests := []struct {
		f    drivers.Frame
		want string
	}{
		{drivers.Frame{Values: map[drivers.MetricID]float64{drivers.SpO2: 97, drivers.PulseRate: 72}}, "SPO2=097 HR=072\r\n"},
		{drivers.Frame{Values: map[drivers.MetricID]float64{drivers.SpO2: 96.6, drivers.PulseRate: 999.4}}, "SPO2=097 HR=999\r\n"},
		{drivers.Frame{Values: map[drivers.MetricID]float64{drivers.SpO2: math.NaN(), drivers.PulseRate: -1}}, "SPO2=--- HR=---\r\n"},
		{drivers.Frame{Values: map[drivers.MetricID]float64{drivers.PulseRate: 1000}}, "SPO2=--- HR=---\r\n"},
		{drivers.Frame{Flags: drivers.FlagSensorOff, Values: map[drivers.MetricID]float64{drivers.SpO2: 97, drivers.PulseRate: 72}}, "SPO2=--- HR=---\r\n"},
	}
	for _, tt := range tests {
		if got := string(ASCIIEncoder{}.Encode(nil, tt.f)); got != tt.want {
			t.Errorf("%+v: %q, want %q", tt.f, got, tt.want)
		}
	}
}

// Pleth samples: flat mid-scale without samples, rounded and clamped, NaN
// mid-scale, the last one held when fewer than 25, extra ones cut.
func TestEncodePleth(t *testing.T) {
	many := ramp(0)
	many = append(many, 999, 999)
	tests := []struct {
		name    string
		samples []float64
		df2     []float64
		df7     []float64
	}{
		{"none: flat mid-scale", nil, repeat(128, 25), repeat(32768, 25)},
		{"fewer than 25: last held", []float64{5, 6.4, 7.6}, append([]float64{5, 6, 8}, repeat(8, 22)...), append([]float64{5, 6, 8}, repeat(8, 22)...)},
		{"clamped and NaN", []float64{-4, 300, 70000, math.NaN(), math.Inf(1)},
			append([]float64{0, 255, 255, 128}, repeat(255, 21)...), append([]float64{0, 300, 65535, 32768}, repeat(65535, 21)...)},
		{"more than 25: cut", many, ramp(0), ramp(0)},
	}
	for _, tt := range tests {
		f := drivers.Frame{Samples: tt.samples}
		for _, c := range []struct {
			enc  PacketEncoder
			dec  func() drivers.Decoder
			want []float64
		}{{NewDF2Encoder(), df2, tt.df2}, {NewDF7Encoder(), df7, tt.df7}} {
			s := decodeAll(c.dec, c.enc.Encode(nil, f))
			if len(s.Readings) != 3 || !reflect.DeepEqual(s.Readings[2].Samples, c.want) {
				t.Errorf("%s df7=%v: %v, want %v", tt.name, c.enc.df7, views(s.Readings), c.want)
			}
		}
	}
}

func TestEncodeDoesNotAllocate(t *testing.T) {
	f := drivers.Frame{Values: map[drivers.MetricID]float64{drivers.SpO2: 97, drivers.PulseRate: 72}, Samples: ramp(100)}
	buf := make([]byte, 0, 256)
	for name, enc := range map[string]drivers.Encoder{"df2": NewDF2Encoder(), "df7": NewDF7Encoder(), "df8": DF8Encoder{}, "ascii": ASCIIEncoder{}} {
		if allocs := testing.AllocsPerRun(100, func() { buf = enc.Encode(buf[:0], f) }); allocs != 0 {
			t.Errorf("%s: Encode allocates %v times", name, allocs)
		}
	}
}

// quickFrame is a Frame with SpO2 0-130, pulse 0-520, samples in and out of
// range, any flags (also ones no format carries). Each metric is missing a
// quarter of the time; samples a third.
type quickFrame struct{ drivers.Frame }

func (quickFrame) Generate(r *rand.Rand, _ int) reflect.Value {
	f := drivers.Frame{
		Time:   time.Unix(1700000000+r.Int63n(1e6), 0),
		Values: map[drivers.MetricID]float64{},
		Flags:  drivers.Flags(r.Uint32()) & (drivers.Flags(1)<<16 - 1),
	}
	if r.Intn(3) > 0 {
		// Mostly without flags, so values are exercised too.
		f.Flags &= drivers.Flags(r.Uint32())
		f.Flags &= drivers.Flags(r.Uint32())
	}
	if r.Intn(4) > 0 {
		f.Values[drivers.SpO2] = float64(r.Intn(131))
	}
	if r.Intn(4) > 0 {
		f.Values[drivers.PulseRate] = float64(r.Intn(521))
	}
	if r.Intn(3) > 0 {
		f.Samples = make([]float64, packetFrames)
		for i := range f.Samples {
			f.Samples[i] = float64(r.Intn(70000))
		}
	}
	return reflect.ValueOf(quickFrame{f})
}

// roundTrip checks decode(encode(f)) for one format: values are Valid
// exactly when present, encodable, in range and measured with a sensor on;
// flags come back as the format carries them.
func roundTrip(t *testing.T, enc drivers.Encoder, newDec func() drivers.Decoder, carried drivers.Flags, spo2Max, hrMax float64, top float64) {
	t.Helper()
	property := func(q quickFrame) bool {
		f := q.Frame
		s := decodeAll(newDec, enc.Encode(nil, f))
		withPleth := top > 0
		want := 2
		if withPleth {
			want = 3
		}
		if len(s.Readings) != want {
			t.Logf("%d readings from %+v", len(s.Readings), f)
			return false
		}
		wantFlags := f.Flags & carried
		if wantFlags&(drivers.FlagNoSensor|drivers.FlagSensorOff) != 0 && carried&drivers.FlagNoSensor != 0 {
			wantFlags |= drivers.FlagNoSensor | drivers.FlagSensorOff
		}
		if withPleth && wantFlags&drivers.FlagNoSensor != 0 {
			// No colour is sent while SNSD.
			wantFlags &^= drivers.FlagLowPerfusion | drivers.FlagLowSignalQuality
		}
		if withPleth && wantFlags&drivers.FlagLowPerfusion != 0 {
			wantFlags &^= drivers.FlagLowSignalQuality // red wins over yellow
		}
		measuring := f.Flags&sensorAbsentFlags == 0
		invalidFrame := false
		for i, m := range []drivers.MetricID{drivers.SpO2, drivers.PulseRate} {
			r := s.Readings[i]
			v, present := f.Values[m]
			limit := spo2Max
			if m == drivers.PulseRate {
				limit = hrMax
			}
			sent := present && measuring && v <= limit
			inRange := !sent || m.Info().InRange(v)
			flags := wantFlags
			if !inRange {
				flags |= drivers.FlagOutOfRange
				invalidFrame = true
			}
			if r.Metric != m || r.Valid != (sent && inRange) || r.Flags != flags || (sent && r.Value != v) {
				t.Logf("frame %+v: reading %d = %v (want flags %v)", f, i, viewOf(r), flags)
				return false
			}
		}
		if withPleth {
			p := s.Readings[2]
			if p.Metric != drivers.Pleth || len(p.Samples) != packetFrames || p.SampleRate != PlethRate || p.Flags != wantFlags {
				t.Logf("frame %+v: pleth %v", f, viewOf(p))
				return false
			}
			for i, v := range p.Samples {
				want := math.Ceil(top / 2)
				if len(f.Samples) > 0 {
					want = math.Min(f.Samples[i], top)
				}
				if v != want {
					t.Logf("sample %d = %v, want %v", i, v, want)
					return false
				}
			}
		}
		wantCounts := drivertest.FrameCounts{OK: 1}
		if invalidFrame {
			wantCounts = drivertest.FrameCounts{InvalidValue: 1}
		}
		return s.Frames == wantCounts
	}
	if err := quick.Check(property, &quick.Config{MaxCount: 3000, Rand: rand.New(rand.NewSource(1))}); err != nil {
		t.Fatal(err)
	}
}

const packetFlagsCarried = drivers.FlagSensorOff | drivers.FlagNoSensor | drivers.FlagSensorFault | drivers.FlagSearching |
	drivers.FlagArtifact | drivers.FlagLowPerfusion | drivers.FlagLowSignalQuality

func TestRoundTripDF2(t *testing.T) {
	roundTrip(t, NewDF2Encoder(), df2, packetFlagsCarried, 126, 510, 255)
}

func TestRoundTripDF7(t *testing.T) {
	roundTrip(t, NewDF7Encoder(), df7, packetFlagsCarried, 126, 510, 65535)
}

func TestRoundTripDF8(t *testing.T) {
	roundTrip(t, DF8Encoder{}, df8, packetFlagsCarried, 126, 510, 0)
}

func TestRoundTripASCII(t *testing.T) {
	roundTrip(t, ASCIIEncoder{}, asciiDc, 0, 999, 999, 0)
}

// A stream of encoded packets decodes packet for packet, each a new
// decoder's colour state aside.
func TestEncodedStream(t *testing.T) {
	enc := NewDF7Encoder()
	var stream []byte
	for i := range 30 {
		stream = enc.Encode(stream, drivers.Frame{Values: map[drivers.MetricID]float64{drivers.SpO2: float64(70 + i), drivers.PulseRate: float64(40 + i)}})
	}
	s := decodeAll(df7, stream)
	if s.Frames != (drivertest.FrameCounts{OK: 30}) || len(s.Readings) != 90 {
		t.Fatalf("frames %+v, %d readings", s.Frames, len(s.Readings))
	}
	for i := range 30 {
		if s.Readings[3*i].Value != float64(70+i) || s.Readings[3*i+1].Value != float64(40+i) {
			t.Fatalf("packet %d: %v", i, views(s.Readings)[3*i:3*i+3])
		}
	}
}
