package simulator

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
)

func TestBuiltinScenariosParseAndValidate(t *testing.T) {
	names := BuiltinNames()
	for _, want := range []string{"normal", "desaturation", "hypertension", "sensor-off", "unplug", "garbage", "demo"} {
		if !slices.Contains(names, want) {
			t.Errorf("built-in scenario %q missing; have %v", want, names)
		}
	}
	for _, name := range names {
		s, err := builtinScenario(name)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if s.Name != name {
			t.Errorf("%s: name field %q differs from the file name", name, s.Name)
		}
		if s.Description == "" {
			t.Errorf("%s: no description", name)
		}
		if err := s.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if _, ok := BuiltinScenario(name); !ok {
			t.Errorf("BuiltinScenario(%q) not found", name)
		}
	}
	if _, ok := BuiltinScenario("no-such"); ok {
		t.Error("BuiltinScenario found a scenario that does not exist")
	}
	if _, ok := BuiltinScenario("../scenario"); ok {
		t.Error("BuiltinScenario accepted a path")
	}
}

func TestBuiltinScenarioShapes(t *testing.T) {
	get := func(name string) *Scenario {
		s, ok := BuiltinScenario(name)
		if !ok {
			t.Fatalf("no %s", name)
		}
		return s
	}
	desat := get("desaturation")
	if desat.Loop {
		t.Error("desaturation loops")
	}
	wantDur := []time.Duration{20 * time.Second, 30 * time.Second, 30 * time.Second, 20 * time.Second}
	for i, st := range desat.Steps {
		if i >= len(wantDur) || st.Duration != wantDur[i] {
			t.Errorf("desaturation step %d lasts %v", i, st.Duration)
		}
	}
	if f, _ := desat.FrameAt(65*time.Second, nil); f.Values[drivers.SpO2] != 84 {
		t.Errorf("desaturation holds SpO2 %v, want 84", f.Values[drivers.SpO2])
	}
	if !get("demo").Loop {
		t.Error("demo does not loop")
	}
	hyp := get("hypertension")
	end, _ := hyp.FrameAt(hyp.Duration()-time.Second, nil)
	if end.Values[drivers.NIBPSystolic] <= 180 || end.Values[drivers.NIBPDiastolic] <= 110 {
		t.Errorf("hypertension ends at %v/%v, want past 180/110", end.Values[drivers.NIBPSystolic], end.Values[drivers.NIBPDiastolic])
	}
	so := get("sensor-off")
	if f, _ := so.FrameAt(30*time.Second, nil); !f.Flags.Has(drivers.FlagSensorOff) || len(f.Values) != 0 {
		t.Errorf("sensor-off at 30 s: %v %v", f.Flags, f.Values)
	}
	if m := get("unplug").At(12 * time.Second); !m.Unplug {
		t.Errorf("unplug at 12 s: %+v", m)
	}
	if m := get("garbage").At(10 * time.Second); m.Garbage != 24 {
		t.Errorf("garbage at 10 s: %+v", m)
	}
}

func TestParseScenarioErrorsCarryLines(t *testing.T) {
	cases := []struct {
		name, yaml string
		line       int
		want       string
	}{
		{"unknown top field", "name: x\nlooop: true\nsteps:\n  - duration: 1s\n", 2, "unknown field looop"},
		{"unknown step field", "name: x\nsteps:\n  - duration: 1s\n    rampe: true\n", 4, "unknown field rampe"},
		// The YAML library's syntax errors give the line of the enclosing
		// construct, which may be above the bad one: any line will do.
		{"syntax", "name: x\nsteps:\n  - duration: 1s\n\tvalues: {spo2: 97}\n", -1, "tab character"},
		{"bad duration", "name: x\nsteps:\n  - duration: 1s\n  - name: b\n    duration: twenty\n", 5, "not a duration"},
		{"missing duration", "name: x\nsteps:\n  - duration: 1s\n  - name: b\n", 4, "duration is missing"},
		{"zero duration", "name: x\nsteps:\n  - duration: 0s\n", 3, "positive"},
		{"unknown metric", "name: x\nsteps:\n  - duration: 1s\n    values:\n      spo2: 97\n      sp02: 97\n", 6, `unknown metric "sp02"`},
		{"waveform metric", "name: x\nsteps:\n  - duration: 1s\n    values:\n      pleth: 97\n", 4, "waveform"},
		{"value out of range", "name: x\nsteps:\n  - duration: 1s\n    values: {spo2: 140}\n", 4, "outside its possible range"},
		{"value not a number", "name: x\nsteps:\n  - duration: 1s\n    values: {spo2: high}\n", 4, "cannot unmarshal"},
		{"unknown event", "name: x\nsteps:\n  - duration: 1s\n    events:\n      - artifact\n      - snow\n", 6, `unknown event "snow"`},
		{"duplicate event", "name: x\nsteps:\n  - duration: 1s\n    events: [silent, silent]\n", 4, "twice"},
		{"ramp on first step", "name: x\nsteps:\n  - duration: 1s\n    ramp: true\n", 4, "first step cannot ramp"},
		{"garbage bytes without event", "name: x\nsteps:\n  - duration: 1s\n    garbage_bytes: 8\n", 4, "needs the garbage event"},
		{"garbage too long", "name: x\nsteps:\n  - duration: 1s\n    events: [garbage]\n    garbage_bytes: 100000\n", 5, "garbage must be"},
		{"unplug and silent", "name: x\nsteps:\n  - duration: 1s\n    events: [unplug, silent]\n", 4, "cannot be combined"},
		{"no steps", "name: x\ndescription: nothing\n", 0, "at least one step"},
		{"two documents", "name: x\nsteps:\n  - duration: 1s\n---\nname: y\n", 4, "one YAML document"},
		{"empty", "", 0, "empty"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseScenario([]byte(c.yaml), "test.yaml", "test")
			var se *ScenarioError
			if !errors.As(err, &se) {
				t.Fatalf("err = %v (%T), want *ScenarioError", err, err)
			}
			if (c.line == -1 && se.Line <= 0) || (c.line != -1 && se.Line != c.line) {
				t.Errorf("line = %d, want %d (%v)", se.Line, c.line, err)
			}
			if se.File != "test.yaml" {
				t.Errorf("file = %q", se.File)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("err = %q, want it to contain %q", err, c.want)
			}
			if c.line != 0 && !strings.HasPrefix(err.Error(), "test.yaml:") {
				t.Errorf("err = %q does not start with file:line", err)
			}
		})
	}
}

func TestLoadScenarioFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "ward-round.yaml")
	src := `description: a file without a name takes the file's
noise: false
steps:
  - name: calm
    duration: 1m30s
    values: {spo2: 95, pulse_rate: 80, perfusion_index: 1.25, nibp_systolic: 120}
  - name: probe trouble
    duration: 10s
    ramp: true
    values: {spo2: 90, perfusion_index: null}
    events: [artifact, low-perfusion, garbage]
  - name: quiet
    duration: 5s
    events: [silent]
`
	if err := os.WriteFile(file, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := LoadScenario(file)
	if err != nil {
		t.Fatal(err)
	}
	if s.Name != "ward-round" || s.Noise || s.Loop || len(s.Steps) != 3 {
		t.Fatalf("scenario = %+v", s)
	}
	if s.Duration() != 105*time.Second {
		t.Errorf("duration = %v", s.Duration())
	}
	st := s.Steps[1]
	if !st.Ramp || st.Flags != drivers.FlagArtifact|drivers.FlagLowPerfusion || st.Garbage != DefaultGarbageBytes {
		t.Errorf("step 2 = %+v", st)
	}
	if v := st.Values[drivers.PerfusionIndex]; !math.IsNaN(v) {
		t.Errorf("perfusion_index: null read as %v, want NaN", v)
	}
	if !s.Steps[2].Silent || s.Steps[2].Unplug {
		t.Errorf("step 3 = %+v", s.Steps[2])
	}

	if _, err := LoadScenario(filepath.Join(dir, "missing.yaml")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestValidateGoBuiltScenario(t *testing.T) {
	ok := steady(false, time.Second)
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	bad := []*Scenario{
		{Steps: []Step{{Duration: time.Second}}},
		{Name: "no steps"},
		{Name: "neg", Steps: []Step{{Duration: -time.Second}}},
		{Name: "unknown metric", Steps: []Step{{Duration: time.Second, Values: map[drivers.MetricID]float64{200: 1}}}},
		{Name: "nan ok but inf not", Steps: []Step{{Duration: time.Second, Values: map[drivers.MetricID]float64{drivers.SpO2: math.Inf(1)}}}},
		{Name: "garbage", Steps: []Step{{Duration: time.Second, Garbage: -1}}},
		{Name: "silent garbage", Steps: []Step{{Duration: time.Second, Garbage: 3, Silent: true}}},
	}
	for _, s := range bad {
		var se *ScenarioError
		if err := s.Validate(); !errors.As(err, &se) {
			t.Errorf("%q: Validate = %v, want a ScenarioError", s.Name, err)
		}
	}
	nan := &Scenario{Name: "nan", Steps: []Step{{Duration: time.Second, Values: map[drivers.MetricID]float64{drivers.SpO2: math.NaN()}}}}
	if err := nan.Validate(); err != nil {
		t.Errorf("NaN (no value) rejected: %v", err)
	}
}

func TestStepDescribe(t *testing.T) {
	for _, c := range []struct {
		step Step
		want string
	}{
		{Step{Name: "falling", Duration: 30 * time.Second, Ramp: true,
			Values: map[drivers.MetricID]float64{drivers.PulseRate: 88, drivers.SpO2: 84, drivers.PerfusionIndex: math.NaN()},
			Flags:  drivers.FlagArtifact},
			"falling (30s): ramp to spo2 84, pulse_rate 88, perfusion_index no value; artifact"},
		{Step{Name: "gone", Duration: 5 * time.Second, Unplug: true}, "gone (5s): cable unplugged"},
		{Step{Duration: time.Second, Garbage: 3, Values: map[drivers.MetricID]float64{drivers.SpO2: 97.5}},
			"unnamed step (1s): values spo2 97.5; 3 garbage bytes after each frame"},
		{Step{Name: "quiet", Duration: time.Minute, Silent: true}, "quiet (1m0s): device silent"},
	} {
		if got := c.step.Describe(); got != c.want {
			t.Errorf("Describe = %q, want %q", got, c.want)
		}
	}
}
