package simulator

import (
	"math"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
)

// scripted is a scenario with every kind of step, noise off.
func scripted() *Scenario {
	v := func(spo2, pulse, pi float64) map[drivers.MetricID]float64 {
		return map[drivers.MetricID]float64{drivers.SpO2: spo2, drivers.PulseRate: pulse, drivers.PerfusionIndex: pi}
	}
	return &Scenario{
		Name: "scripted",
		Steps: []Step{
			{Name: "base", Duration: 10 * time.Second, Values: v(98, 70, 3.5)},                                                 // 0-10
			{Name: "fall", Duration: 20 * time.Second, Ramp: true, Values: v(86, 90, 1.5)},                                     // 10-30
			{Name: "hold", Duration: 5 * time.Second, Flags: drivers.FlagArtifact | drivers.FlagLowPerfusion},                  // 30-35
			{Name: "off", Duration: 5 * time.Second, Flags: drivers.FlagSensorOff},                                             // 35-40
			{Name: "noisy", Duration: 5 * time.Second, Garbage: 7},                                                             // 40-45
			{Name: "quiet", Duration: 5 * time.Second, Silent: true},                                                           // 45-50
			{Name: "gone", Duration: 5 * time.Second, Unplug: true},                                                            // 50-55
			{Name: "no pulse", Duration: 5 * time.Second, Values: map[drivers.MetricID]float64{drivers.PulseRate: math.NaN()}}, // 55-60
		},
	}
}

func TestFrameAtFollowsTheScript(t *testing.T) {
	s := scripted()
	cases := []struct {
		at     time.Duration
		step   string
		values map[drivers.MetricID]float64
		flags  drivers.Flags
	}{
		{0, "base", map[drivers.MetricID]float64{drivers.SpO2: 98, drivers.PulseRate: 70, drivers.PerfusionIndex: 3.5}, 0},
		{9 * time.Second, "base", map[drivers.MetricID]float64{drivers.SpO2: 98, drivers.PulseRate: 70, drivers.PerfusionIndex: 3.5}, 0},
		// A quarter into the ramp: 98-3, 70+5, 3.5-0.5.
		{15 * time.Second, "fall", map[drivers.MetricID]float64{drivers.SpO2: 95, drivers.PulseRate: 75, drivers.PerfusionIndex: 3}, 0},
		// Halfway: 92, 80, 2.5.
		{20 * time.Second, "fall", map[drivers.MetricID]float64{drivers.SpO2: 92, drivers.PulseRate: 80, drivers.PerfusionIndex: 2.5}, 0},
		// 3/20 of the way: 98-1.8=96.2 rounds to 96, PI 3.5-0.3=3.2.
		{13 * time.Second, "fall", map[drivers.MetricID]float64{drivers.SpO2: 96, drivers.PulseRate: 73, drivers.PerfusionIndex: 3.2}, 0},
		// Values carry over into a step that lists none.
		{31 * time.Second, "hold", map[drivers.MetricID]float64{drivers.SpO2: 86, drivers.PulseRate: 90, drivers.PerfusionIndex: 1.5},
			drivers.FlagArtifact | drivers.FlagLowPerfusion},
		// Sensor off: no values at all.
		{36 * time.Second, "off", map[drivers.MetricID]float64{}, drivers.FlagSensorOff},
		{41 * time.Second, "noisy", map[drivers.MetricID]float64{drivers.SpO2: 86, drivers.PulseRate: 90, drivers.PerfusionIndex: 1.5}, 0},
		// NaN removes one metric and keeps the others.
		{57 * time.Second, "no pulse", map[drivers.MetricID]float64{drivers.SpO2: 86, drivers.PerfusionIndex: 1.5}, 0},
	}
	for _, c := range cases {
		f, m := s.FrameAt(c.at, nil)
		if m.StepName != c.step {
			t.Errorf("at %v: step %q, want %q", c.at, m.StepName, c.step)
		}
		if !reflect.DeepEqual(f.Values, c.values) {
			t.Errorf("at %v: values %v, want %v", c.at, f.Values, c.values)
		}
		if f.Flags != c.flags {
			t.Errorf("at %v: flags %v, want %v", c.at, f.Flags, c.flags)
		}
	}
}

func TestMomentEvents(t *testing.T) {
	s := scripted()
	if m := s.At(42 * time.Second); m.Garbage != 7 || m.Silent || m.Unplug {
		t.Errorf("noisy: %+v", m)
	}
	if m := s.At(47 * time.Second); !m.Silent {
		t.Errorf("quiet: %+v", m)
	}
	if m := s.At(50 * time.Second); !m.Unplug || m.Step != 6 || m.Elapsed != 0 {
		t.Errorf("gone: %+v", m)
	}
	if m := s.At(55*time.Second - 1); !m.Unplug {
		t.Errorf("just before the end of gone: %+v", m)
	}
	if m := s.At(60 * time.Second); !m.Ended || m.Step != 7 {
		t.Errorf("past the end of a non-looping scenario: %+v", m)
	}
	if m := s.At(-time.Second); m.Step != 0 || m.Ended {
		t.Errorf("before the start: %+v", m)
	}

	s.Loop = true
	m := s.At(2*60*time.Second + 16*time.Second)
	if m.Ended || m.Pass != 2 || m.StepName != "fall" || m.Elapsed != 6*time.Second {
		t.Errorf("looping: %+v", m)
	}
	// Every pass starts again from the first step's own values.
	f, _ := s.FrameAt(60*time.Second, nil)
	if f.Values[drivers.PulseRate] != 70 {
		t.Errorf("second pass starts with pulse %v, want 70", f.Values[drivers.PulseRate])
	}
}

func TestNextBoundary(t *testing.T) {
	tl := newTimeline(scripted())
	for _, c := range []struct {
		at, want time.Duration
		ok       bool
	}{
		{0, 10 * time.Second, true},
		{10 * time.Second, 30 * time.Second, true},
		{54 * time.Second, 55 * time.Second, true},
		{59 * time.Second, 60 * time.Second, true},
		{60 * time.Second, 0, false},
	} {
		got, ok := tl.nextBoundary(c.at)
		if got != c.want || ok != c.ok {
			t.Errorf("nextBoundary(%v) = %v, %v; want %v, %v", c.at, got, ok, c.want, c.ok)
		}
	}
	tl.loop = true
	if got, ok := tl.nextBoundary(125 * time.Second); !ok || got != 130*time.Second {
		t.Errorf("looping nextBoundary(125s) = %v, %v", got, ok)
	}
}

func TestNoiseIsSmallRoundedAndDeterministic(t *testing.T) {
	s, ok := BuiltinScenario("normal")
	if !ok {
		t.Fatal("no normal scenario")
	}
	seen := map[float64]bool{}
	pulses := map[float64]bool{}
	for k := range 2000 {
		at := time.Duration(k) * 10 * time.Millisecond
		f1, _ := s.FrameAt(at, rand.New(rand.NewPCG(7, uint64(k))))
		f2, _ := s.FrameAt(at, rand.New(rand.NewPCG(7, uint64(k))))
		if !reflect.DeepEqual(f1, f2) {
			t.Fatalf("frame %d differs for the same seed: %v vs %v", k, f1, f2)
		}
		spo2, pulse, pi := f1.Values[drivers.SpO2], f1.Values[drivers.PulseRate], f1.Values[drivers.PerfusionIndex]
		if spo2 != 97 && spo2 != 98 {
			t.Fatalf("normal SpO2 %v, want 97 or 98", spo2)
		}
		if pulse < 70 || pulse > 74 || pulse != math.Round(pulse) {
			t.Fatalf("normal pulse %v, want a whole number within 72±2", pulse)
		}
		if pi < 3.3 || pi > 3.7 || math.Abs(pi*100-math.Round(pi*100)) > 1e-9 {
			t.Fatalf("normal PI %v, want about 3.5 with two decimals", pi)
		}
		seen[spo2] = true
		pulses[pulse] = true
	}
	if len(seen) != 2 || len(pulses) < 3 {
		t.Errorf("noise too regular: SpO2 values %v, pulse values %v", seen, pulses)
	}
	s.Noise = false
	f, _ := s.FrameAt(time.Second, rand.New(rand.NewPCG(1, 1)))
	if f.Values[drivers.SpO2] != 98 || f.Values[drivers.PulseRate] != 72 {
		t.Errorf("noise off: %v", f.Values)
	}
}

func TestValuesStayInsideTheCatalogueRange(t *testing.T) {
	s := &Scenario{Name: "edge", Noise: true, Steps: []Step{{
		Duration: time.Second,
		Values:   map[drivers.MetricID]float64{drivers.SpO2: 100, drivers.PulseRate: 0, drivers.PerfusionIndex: 0},
	}}}
	for k := range 500 {
		f, _ := s.FrameAt(0, rand.New(rand.NewPCG(3, uint64(k))))
		for id, v := range f.Values {
			if !id.Info().InRange(v) {
				t.Fatalf("%v = %v outside its range", id, v)
			}
		}
	}
}

// An invalid scenario must play harmlessly, not crash the player.
func TestTimelineOfInvalidScenario(t *testing.T) {
	for _, s := range []*Scenario{
		{},
		{Steps: []Step{{Duration: -time.Second}}},
		{Loop: true, Steps: []Step{{Duration: 0}}},
		{Steps: []Step{{Duration: time.Second, Ramp: true, Values: map[drivers.MetricID]float64{drivers.Pleth: 1, 250: 3}}}},
	} {
		tl := newTimeline(s)
		for _, at := range []time.Duration{-1, 0, time.Second, time.Hour} {
			f, _ := tl.frame(at, rand.New(rand.NewPCG(1, 2)))
			for id := range f.Values {
				if id.Info().Waveform || id.Info().ID == drivers.MetricUnknown {
					t.Errorf("frame carries %v", id)
				}
			}
			tl.nextBoundary(at)
		}
	}
}

func TestAppendGarbage(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	g := appendGarbage(nil, 4000, rng, []byte("\r\n"))
	if len(g) != 4002 || string(g[4000:]) != "\r\n" {
		t.Fatalf("garbage length %d, tail %q", len(g), g[len(g)-2:])
	}
	for _, b := range g[:4000] {
		if b == '\r' || b == '\n' {
			t.Fatal("line garbage contains a line end")
		}
	}
	bin := appendGarbage([]byte{1}, 10, rng, nil)
	if len(bin) != 11 {
		t.Fatalf("binary garbage length %d", len(bin))
	}
	if d := frameDelimiter([]byte("ABC\r\n")); string(d) != "\r\n" {
		t.Errorf("delimiter %q", d)
	}
	if d := frameDelimiter([]byte{0x01, 0x80}); len(d) != 0 {
		t.Errorf("binary delimiter %q", d)
	}
}
