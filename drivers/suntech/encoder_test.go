package suntech

import (
	"math"
	"math/rand"
	"reflect"
	"testing"
	"testing/quick"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
)

func nibpValues(sys, dia, mean, pr float64) map[drivers.MetricID]float64 {
	return map[drivers.MetricID]float64{drivers.NIBPSystolic: sys, drivers.NIBPDiastolic: dia, drivers.NIBPMean: mean, drivers.NIBPPulseRate: pr}
}

func TestEncodeWorkedExample(t *testing.T) {
	// The worked result with beats, status and test codes zero (the
	// Encoder has no source for them), so a different checksum.
	want := resultWith(t, func(data []byte) {
		data[4], data[5] = 0, 0
		for i := 6; i < 14; i++ {
			data[i] = 0
		}
	})
	got := Encoder{}.Encode(nil, drivers.Frame{Time: testNow, Values: nibpValues(115, 74, 88, 85)})
	if hexOf(got) != hexOf(want) {
		t.Fatalf("Encode:\n got % X\nwant % X", got, want)
	}
}

func TestEncodeNoValueForms(t *testing.T) {
	tests := []struct {
		name string
		f    drivers.Frame
		code uint8
	}{
		{"cuff error flag, values ignored", drivers.Frame{Flags: drivers.FlagCuffError, Values: nibpValues(120, 80, 93, 70)}, 0x87},
		{"missing pulse rate", drivers.Frame{Values: map[drivers.MetricID]float64{drivers.NIBPSystolic: 120, drivers.NIBPDiastolic: 80, drivers.NIBPMean: 93}}, 0x01},
		{"no values", drivers.Frame{}, 0x01},
		{"NaN", drivers.Frame{Values: nibpValues(math.NaN(), 80, 93, 70)}, 0x03},
		{"negative", drivers.Frame{Values: nibpValues(120, -1, 93, 70)}, 0x03},
		{"pulse above one byte", drivers.Frame{Values: nibpValues(120, 80, 93, 256)}, 0x03},
		{"pressure above u16", drivers.Frame{Values: nibpValues(70000, 80, 93, 70)}, 0x03},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ResultFor(tt.f); got != (Result{ErrorCode: tt.code}) {
				t.Fatalf("ResultFor = %+v, want error 0x%02X", got, tt.code)
			}
			s := decodeAll(Encoder{}.Encode(nil, tt.f))
			if got := views(s.Readings); !reflect.DeepEqual(got, failedResult) {
				t.Fatalf("decoded %v", got)
			}
		})
	}
}

func TestEncoderInterval(t *testing.T) {
	if got := (Encoder{}).Interval(); got != 10*time.Second || got >= silentAfter {
		t.Fatalf("Interval = %v, want 10s, below SilentAfter %v", got, silentAfter)
	}
}

// TestRoundTrip: decode(encode(frame)) gives back the values, rounded to
// whole units, with Valid as the catalogue range says.
func TestRoundTrip(t *testing.T) {
	check := func(sys, dia, mean uint16, pr uint8, cuffError bool) bool {
		f := drivers.Frame{Time: testNow, Values: nibpValues(float64(sys), float64(dia), float64(mean), float64(pr))}
		if cuffError {
			f.Flags = drivers.FlagCuffError
		}
		s := decodeAll(Encoder{}.Encode(nil, f))
		if cuffError {
			return reflect.DeepEqual(views(s.Readings), failedResult)
		}
		if len(s.Readings) != 4 {
			return false
		}
		for i, want := range []float64{float64(sys), float64(dia), float64(mean), float64(pr)} {
			r := s.Readings[i]
			inRange := r.Metric.Info().InRange(want)
			if r.Value != want || r.Valid != inRange || (r.Flags == drivers.FlagOutOfRange) == inRange {
				return false
			}
		}
		return true
	}
	cfg := &quick.Config{MaxCount: 5000, Rand: rand.New(rand.NewSource(1)),
		Values: func(v []reflect.Value, r *rand.Rand) {
			// Half the pressures in the physiological range, half anywhere.
			p := func() uint16 {
				if r.Intn(2) == 0 {
					return uint16(r.Intn(320))
				}
				return uint16(r.Intn(65536))
			}
			v[0], v[1], v[2] = reflect.ValueOf(p()), reflect.ValueOf(p()), reflect.ValueOf(p())
			v[3] = reflect.ValueOf(uint8(r.Intn(256)))
			v[4] = reflect.ValueOf(r.Intn(10) == 0)
		}}
	if err := quick.Check(check, cfg); err != nil {
		t.Fatal(err)
	}
}

func TestEncodeRounds(t *testing.T) {
	r := ResultFor(drivers.Frame{Values: nibpValues(119.6, 80.4, 93.5, 69.5)})
	if r != (Result{Systolic: 120, Diastolic: 80, Mean: 94, HeartRate: 70}) {
		t.Fatalf("%+v", r)
	}
}

func TestEncodeDoesNotAllocate(t *testing.T) {
	f := drivers.Frame{Values: nibpValues(120, 80, 93, 70)}
	buf := make([]byte, 0, 64)
	if n := testing.AllocsPerRun(100, func() { buf = Encoder{}.Encode(buf[:0], f) }); n != 0 {
		t.Fatalf("Encode allocates %.1f times", n)
	}
}
