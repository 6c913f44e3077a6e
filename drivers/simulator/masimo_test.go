package simulator

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
	_ "github.com/vigil-monitor/vigil/drivers/all"
)

// collectingSink keeps what a real decoder reports.
type collectingSink struct {
	readings []drivers.Reading
	results  map[drivers.FrameResult]int
}

func (s *collectingSink) Reading(r drivers.Reading) { s.readings = append(s.readings, r) }

func (s *collectingSink) Frame(r drivers.FrameResult, _ int) {
	if s.results == nil {
		s.results = map[drivers.FrameResult]int{}
	}
	s.results[r]++
}

func masimoDriver(t *testing.T) *drivers.Driver {
	t.Helper()
	drv, ok := drivers.Lookup("masimo-ascii")
	if !ok {
		t.Fatal("masimo-ascii is not registered")
	}
	return drv
}

// Every built-in scenario, rendered by the Masimo encoder and read back by
// the Masimo decoder, yields the scenario's values and flags.
func TestBuiltinScenariosRoundTripThroughMasimo(t *testing.T) {
	drv := masimoDriver(t)
	enc, err := drv.NewEncoder(nil)
	if err != nil {
		t.Fatal(err)
	}
	carried := drivers.FlagSensorOff | drivers.FlagNoSensor | drivers.FlagSensorFault | drivers.FlagSearching |
		drivers.FlagArtifact | drivers.FlagLowPerfusion | drivers.FlagLowSignalQuality | drivers.FlagAmbientLight
	base := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	for _, name := range BuiltinNames() {
		s, _ := BuiltinScenario(name)
		dec, err := drv.NewDecoder(nil)
		if err != nil {
			t.Fatal(err)
		}
		for k := 0; time.Duration(k)*time.Second < s.Duration(); k++ {
			at := time.Duration(k) * time.Second
			f, _ := s.FrameAt(at, rand.New(rand.NewPCG(9, uint64(k))))
			f.Time = base.Add(at)
			var sink collectingSink
			dec.Feed(enc.Encode(nil, f), f.Time, &sink)
			if sink.results[drivers.FrameOK] != 1 || len(sink.results) != 1 {
				t.Fatalf("%s at %v: frame results %v", name, at, sink.results)
			}
			got := map[drivers.MetricID]drivers.Reading{}
			for _, r := range sink.readings {
				got[r.Metric] = r
			}
			for _, id := range []drivers.MetricID{drivers.SpO2, drivers.PulseRate, drivers.PerfusionIndex} {
				want, has := f.Values[id]
				r := got[id]
				switch {
				case has && (!r.Valid || r.Value != want):
					t.Errorf("%s at %v: %v decoded as %v (valid %v), want %v", name, at, id, r.Value, r.Valid, want)
				case !has && r.Valid:
					t.Errorf("%s at %v: %v decoded as %v, want no value", name, at, id, r.Value)
				}
				if r.Flags&carried != f.Flags&carried {
					t.Errorf("%s at %v: %v flags %v, want %v", name, at, id, r.Flags, f.Flags&carried)
				}
			}
		}
	}
}

// The desaturation scenario played at 20x over a pty, read through
// go.bug.st/serial and the real Masimo decoder, shows the SpO2 fall, the
// hold at 84 % and the recovery.
func TestDesaturationOverPtyWithMasimo(t *testing.T) {
	drv := masimoDriver(t)
	s, _ := BuiltinScenario("desaturation")
	d, err := NewDevice(Options{Driver: drv, Scenario: s, Rate: 20, Speed: 20, Seed: 1, DeviceSN: "0000056661"})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	h := openHost(t, d.Path())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- d.Run(ctx) }()

	dec, err := drv.NewDecoder(nil)
	if err != nil {
		t.Fatal(err)
	}
	var sink collectingSink
	buf := make([]byte, 1024)
	ended := false
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		n, err := h.port.Read(buf) // 100 ms timeout
		if err != nil {
			t.Fatal(err)
		}
		dec.Feed(buf[:n], time.Now(), &sink)
		if ended && n == 0 {
			break
		}
		select {
		case err := <-errc:
			if err != nil {
				t.Fatal(err)
			}
			ended = true
		default:
		}
	}
	if !ended {
		t.Fatal("the scenario did not end")
	}
	// 100 frames, fewer only if a starved player skipped some.
	if sink.results[drivers.FrameOK] < 60 || len(sink.results) != 1 {
		t.Fatalf("frame results %v, want about 100 ok frames only", sink.results)
	}
	var spo2 []float64
	for _, r := range sink.readings {
		if r.Metric != drivers.SpO2 {
			continue
		}
		if !r.Valid {
			t.Fatalf("SpO2 reading without a value: %+v", r)
		}
		spo2 = append(spo2, r.Value)
	}
	lowest, lowAt, lowCount := 100.0, -1, 0
	for i, v := range spo2 {
		if v < 83 || v > 99 {
			t.Fatalf("SpO2 %v outside the scenario's 84..98 (with noise)", v)
		}
		if v < lowest {
			lowest, lowAt = v, i
		}
		if v <= 85 {
			lowCount++
		}
	}
	for _, v := range spo2[:5] {
		if v != 97 && v != 98 {
			t.Errorf("baseline SpO2 %v, want 97-98; all: %v", v, spo2)
		}
	}
	if lowest > 85 || lowCount < 15 {
		t.Errorf("lowest SpO2 %v with %d values at or below 85, want the 30 s hold at 84; all: %v", lowest, lowCount, spo2)
	}
	if last := spo2[len(spo2)-1]; last < 96 || lowAt > len(spo2)-10 {
		t.Errorf("no recovery: last SpO2 %v; all: %v", last, spo2)
	}
}
