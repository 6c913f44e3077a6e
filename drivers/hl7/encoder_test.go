package hl7

import (
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
)

func TestEncoderMindrayMessage(t *testing.T) {
	e := NewEncoder("MR-BED-7", StyleMindray)
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.FixedZone("", 3600))
	got := string(e.Encode(nil, drivers.Frame{Time: at, Values: map[drivers.MetricID]float64{
		drivers.SpO2: 97, drivers.PulseRate: 61, drivers.NIBPSystolic: 121, drivers.NIBPDiastolic: 79, drivers.NIBPMean: 93,
	}}))
	want := "\x0bMSH|^~\\&|Vigil-Sim|MR-BED-7|||20260301120000+0100||ORU^R01^ORU_R01|202603011200000001|P|2.6||||||UNICODE UTF-8\r" +
		"PID|||\rPV1||I\r" +
		"OBR|1|||182777000^monitoring of patient^SCT|||20260301120000+0100\r" +
		"OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.3.1.150456|97|262688^MDC_DIM_PERCENT^MDC|||||F|||20260301120000+0100\r" +
		"OBX|2|NM|149530^MDC_PULS_OXIM_PULS_RATE^MDC|1.3.1.149530|61|264864^MDC_DIM_BEAT_PER_MIN^MDC|||||F|||20260301120000+0100\r" +
		"OBX|3|NM|150301^MDC_PRESS_CUFF_SYS^MDC|1.1.9.150301|121|266016^MDC_DIM_MMHG^MDC|||||F|||20260301120000+0100\r" +
		"OBX|4|NM|150302^MDC_PRESS_CUFF_DIA^MDC|1.1.9.150302|79|266016^MDC_DIM_MMHG^MDC|||||F|||20260301120000+0100\r" +
		"OBX|5|NM|150303^MDC_PRESS_CUFF_MEAN^MDC|1.1.9.150303|93|266016^MDC_DIM_MMHG^MDC|||||F|||20260301120000+0100\r" +
		"\x1c\r"
	if got != want {
		t.Fatalf("Encode\n got %q\nwant %q", got, want)
	}
	// The control id counts up.
	if next := string(e.Encode(nil, drivers.Frame{Time: at})); !strings.Contains(next, "|202603011200000002|") {
		t.Fatalf("second message %q", next)
	}
}

func TestEncoderNoValueForms(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	for _, style := range []Style{StyleMindray, StyleComen} {
		e := NewEncoder("S", style)
		// Sensor off: the oximeter values go out empty, NIBP as given.
		s := decodeAll(e.Encode(nil, drivers.Frame{Time: at, Flags: drivers.FlagSensorOff, Values: map[drivers.MetricID]float64{
			drivers.SpO2: 97, drivers.PulseRate: 61, drivers.PerfusionIndex: 2, drivers.NIBPSystolic: 120,
		}}))
		want := []readingView{
			rv(drivers.SpO2, 0, false, "2026-03-01T12:00:00Z"),
			rv(drivers.PulseRate, 0, false, "2026-03-01T12:00:00Z"),
			rv(drivers.PerfusionIndex, 0, false, "2026-03-01T12:00:00Z"),
			rv(drivers.NIBPSystolic, 120, true, "2026-03-01T12:00:00Z"),
		}
		if got := views(s.Readings); !reflect.DeepEqual(got, want) {
			t.Fatalf("style %d sensor off: %v", style, got)
		}
		// Missing SpO2/PR are sent empty; NaN empty; -100 as a monitor sends it.
		s = decodeAll(e.Encode(nil, drivers.Frame{Time: at, Values: map[drivers.MetricID]float64{
			drivers.RespirationRate: math.NaN(), drivers.NIBPMean: -100,
		}}))
		want = []readingView{
			rv(drivers.SpO2, 0, false, "2026-03-01T12:00:00Z"),
			rv(drivers.PulseRate, 0, false, "2026-03-01T12:00:00Z"),
			rv(drivers.NIBPMean, 0, false, "2026-03-01T12:00:00Z"),
			rv(drivers.RespirationRate, 0, false, "2026-03-01T12:00:00Z"),
		}
		if got := views(s.Readings); !reflect.DeepEqual(got, want) {
			t.Fatalf("style %d missing values: %v", style, got)
		}
	}
}

// decode(encode(frame)) gives back every value, for both styles, with the
// sender routed as configured.
func TestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, style := range []Style{StyleMindray, StyleComen} {
		e := NewEncoder("BED-7", style)
		d := NewDecoder(Config{})
		for i := range 2000 {
			at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC).Add(time.Duration(i) * time.Second)
			values := map[drivers.MetricID]float64{}
			for _, m := range metrics {
				if rng.IntN(4) == 0 {
					continue
				}
				info := m.Info()
				v := info.Min + rng.Float64()*(info.Max-info.Min)
				if m != drivers.PerfusionIndex {
					v = math.Round(v)
				}
				values[m] = v
			}
			var got []*Message
			d.FeedMessages(e.Encode(nil, drivers.Frame{Time: at, Values: values}), testNow, func(m *Message, err error) {
				if err != nil {
					t.Fatalf("style %d: %v", style, err)
				}
				got = append(got, m)
			})
			if len(got) != 1 || got[0].Sender != "BED-7" || !got[0].Time.Equal(at) {
				t.Fatalf("style %d: %+v", style, got)
			}
			decoded := map[drivers.MetricID]float64{}
			for _, r := range got[0].Readings {
				if !r.DeviceTime.Equal(at) {
					t.Fatalf("device time %v", r.DeviceTime)
				}
				if r.Valid {
					decoded[r.Metric] = r.Value
				} else if _, sent := values[r.Metric]; sent {
					t.Fatalf("style %d: %v sent as %v, decoded invalid", style, r.Metric, values[r.Metric])
				}
			}
			if !reflect.DeepEqual(decoded, values) {
				t.Fatalf("style %d: sent %v, decoded %v", style, values, decoded)
			}
		}
	}
}

func TestEncodeDoesNotAllocate(t *testing.T) {
	e := NewEncoder("BED-7", StyleMindray)
	f := drivers.Frame{Time: testNow, Values: map[drivers.MetricID]float64{drivers.SpO2: 97, drivers.PulseRate: 61, drivers.NIBPSystolic: 120}}
	buf := make([]byte, 0, 4096)
	if n := testing.AllocsPerRun(200, func() { buf = e.Encode(buf[:0], f) }); n != 0 {
		t.Fatalf("%v allocations per Encode", n)
	}
}
