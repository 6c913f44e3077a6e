package simulator

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/vigil-monitor/vigil/drivers"
)

// Scenario is a scripted patient and device: what the simulated device shows
// over time. It is plain data; LoadScenario reads one from YAML and the
// built-in ones (BuiltinScenario) are YAML files embedded from scenarios/.
type Scenario struct {
	Name        string
	Description string
	// Loop restarts the scenario after its last step; without it the device
	// stops sending (Run returns) when the last step ends.
	Loop bool
	// Noise adds small deterministic jitter to the values (see noiseOf), as a
	// real monitor's numbers wobble around the true value.
	Noise bool
	Steps []Step
}

// Step is one phase of a scenario.
type Step struct {
	Name     string
	Duration time.Duration
	// Values are the targets of this step. A metric a step does not list
	// keeps its value from the step before; NaN means the device shows its
	// "no value" form for that metric from this step on.
	Values map[drivers.MetricID]float64
	// Ramp moves every value linearly from the previous step's target to this
	// step's over Duration, instead of jumping at the step's start.
	Ramp bool
	// Flags are the quality conditions the device reports during the step.
	// FlagSensorOff, FlagNoSensor and FlagSensorFault also blank every value:
	// a device without a measurable signal shows no numbers.
	Flags drivers.Flags
	// Garbage is how many random bytes that are not a frame follow every
	// frame of the step; 0 for none.
	Garbage int
	// Silent: the device sends nothing during the step (frozen firmware, a
	// cable with a broken TX wire).
	Silent bool
	// Unplug: the pseudo-terminal disappears for the step and a new one
	// appears (at the same link path) when the step ends.
	Unplug bool
}

// Describe is a one-line account of the step for people watching a demo,
// e.g. `falling (30s): ramp to spo2 84, pulse_rate 88; artifact`.
func (st Step) Describe() string {
	var b strings.Builder
	b.WriteString(st.Name)
	if st.Name == "" {
		b.WriteString("unnamed step")
	}
	fmt.Fprintf(&b, " (%v)", st.Duration)
	var parts []string
	if len(st.Values) > 0 {
		var vals []string
		for _, m := range drivers.Metrics() {
			v, ok := st.Values[m.ID]
			switch {
			case !ok:
			case math.IsNaN(v):
				vals = append(vals, m.Name+" no value")
			default:
				vals = append(vals, m.Name+" "+strconv.FormatFloat(v, 'f', -1, 64))
			}
		}
		verb := "values "
		if st.Ramp {
			verb = "ramp to "
		}
		parts = append(parts, verb+strings.Join(vals, ", "))
	}
	if st.Flags != 0 {
		parts = append(parts, st.Flags.String())
	}
	if st.Garbage > 0 {
		parts = append(parts, fmt.Sprintf("%d garbage bytes after each frame", st.Garbage))
	}
	if st.Silent {
		parts = append(parts, "device silent")
	}
	if st.Unplug {
		parts = append(parts, "cable unplugged")
	}
	if len(parts) > 0 {
		b.WriteString(": ")
		b.WriteString(strings.Join(parts, "; "))
	}
	return b.String()
}

// Event names usable in a scenario file besides the drivers' flag names.
const (
	EventGarbage = "garbage"
	EventSilent  = "silent"
	EventUnplug  = "unplug"
)

// Limits on scenario data. They keep a typo from making a device that never
// changes state or floods the host.
const (
	// DefaultGarbageBytes is the garbage length when a step names the
	// garbage event without garbage_bytes.
	DefaultGarbageBytes = 16
	// MaxGarbageBytes bounds garbage_bytes.
	MaxGarbageBytes = 4096
)

// blankingFlags are the conditions under which a device has no signal to
// measure and shows its "no value" form (protocols.md 7 note 3; Masimo shows
// "---" with EXC sensor-off or no-sensor, protocols.md 2.5).
const blankingFlags = drivers.FlagSensorOff | drivers.FlagNoSensor | drivers.FlagSensorFault

// Duration is the length of one pass through the scenario.
func (s *Scenario) Duration() time.Duration {
	var total time.Duration
	for _, st := range s.Steps {
		if st.Duration > 0 {
			total += st.Duration
		}
	}
	return total
}

// ScenarioError is a problem with scenario data. Line is the 1-based line in
// the file, 0 when the scenario was not read from a file or the line is not
// known.
type ScenarioError struct {
	File string // file name, or "builtin:<name>"; empty for Go-built scenarios
	Line int
	Msg  string
}

func (e *ScenarioError) Error() string {
	switch {
	case e.File != "" && e.Line > 0:
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	case e.File != "":
		return e.File + ": " + e.Msg
	case e.Line > 0:
		return fmt.Sprintf("line %d: %s", e.Line, e.Msg)
	}
	return "scenario: " + e.Msg
}

// Validate reports the first problem that would make the scenario
// misbehave: no steps, a step without a duration, an unknown or waveform
// metric, a value outside the metric's possible range, a ramp on the first
// step, contradictory events.
func (s *Scenario) Validate() error {
	return s.validate(func(int, string) int { return 0 }, "")
}

// validate checks s; lineOf maps (step index, field) to a file line so the
// errors of a file point at the offending line.
func (s *Scenario) validate(lineOf func(step int, field string) int, file string) error {
	fail := func(step int, field, format string, args ...any) error {
		msg := fmt.Sprintf(format, args...)
		if step >= 0 {
			msg = fmt.Sprintf("step %d (%s): %s", step+1, s.stepName(step), msg)
		}
		return &ScenarioError{File: file, Line: lineOf(step, field), Msg: msg}
	}
	if strings.TrimSpace(s.Name) == "" {
		return fail(-1, "name", "the scenario needs a name")
	}
	if len(s.Steps) == 0 {
		return fail(-1, "steps", "the scenario needs at least one step")
	}
	for i, st := range s.Steps {
		if st.Duration <= 0 {
			return fail(i, "duration", "duration must be positive, e.g. 20s")
		}
		if i == 0 && st.Ramp {
			return fail(i, "ramp", "the first step cannot ramp: there is no previous value to ramp from")
		}
		for id, v := range st.Values {
			m := id.Info()
			if m.ID == drivers.MetricUnknown {
				return fail(i, "values", "unknown metric id %d", id)
			}
			if m.Waveform {
				return fail(i, "values", "%s is a waveform; scenarios script numeric values only", m.Name)
			}
			if !math.IsNaN(v) && !m.InRange(v) {
				return fail(i, "values", "%s %g is outside its possible range %g..%g", m.Name, v, m.Min, m.Max)
			}
		}
		if st.Garbage < 0 || st.Garbage > MaxGarbageBytes {
			return fail(i, "garbage_bytes", "garbage must be 0..%d bytes", MaxGarbageBytes)
		}
		if st.Unplug && (st.Silent || st.Garbage > 0) {
			return fail(i, "events", "unplug cannot be combined with silent or garbage: an unplugged device sends nothing")
		}
		if st.Silent && st.Garbage > 0 {
			return fail(i, "events", "silent cannot be combined with garbage")
		}
	}
	return nil
}

func (s *Scenario) stepName(i int) string {
	if i >= 0 && i < len(s.Steps) && s.Steps[i].Name != "" {
		return s.Steps[i].Name
	}
	return "unnamed"
}

// The YAML form. Fields needing conversion are strings or pointers so that
// the converter, not the YAML library, reports them with a clear message.
type scenarioFile struct {
	Name        string     `yaml:"name"`
	Description string     `yaml:"description"`
	Loop        bool       `yaml:"loop"`
	Noise       *bool      `yaml:"noise"` // default true
	Steps       []stepFile `yaml:"steps"`
}

type stepFile struct {
	Name         string              `yaml:"name"`
	Duration     string              `yaml:"duration"`
	Ramp         bool                `yaml:"ramp"`
	Values       map[string]*float64 `yaml:"values"` // null = no value
	Events       []string            `yaml:"events"`
	GarbageBytes int                 `yaml:"garbage_bytes"`
}

// LoadScenario reads a scenario file. Errors are *ScenarioError carrying the
// file name and line.
func LoadScenario(name string) (*Scenario, error) {
	data, err := os.ReadFile(name)
	if err != nil {
		return nil, err
	}
	base := strings.TrimSuffix(filepath.Base(name), filepath.Ext(name))
	return ParseScenario(data, name, base)
}

// ParseScenario parses scenario YAML. file names the source in errors;
// defaultName is used when the document has no name.
func ParseScenario(data []byte, file, defaultName string) (*Scenario, error) {
	var raw scenarioFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&raw); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &ScenarioError{File: file, Msg: "scenario file is empty"}
		}
		return nil, yamlError(file, err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, &ScenarioError{File: file, Line: extra.Line, Msg: "a scenario file holds one YAML document"}
	}
	// A second, untyped parse gives the line of every node for the semantic
	// errors the typed decode cannot see.
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, yamlError(file, err)
	}
	lines := nodeLines{doc: &root}

	if raw.Name == "" {
		raw.Name = defaultName
	}
	s := &Scenario{
		Name:        raw.Name,
		Description: raw.Description,
		Loop:        raw.Loop,
		Noise:       raw.Noise == nil || *raw.Noise,
		Steps:       make([]Step, 0, len(raw.Steps)),
	}
	for i, rs := range raw.Steps {
		st := Step{Name: rs.Name, Ramp: rs.Ramp}
		if st.Name == "" {
			st.Name = "step " + strconv.Itoa(i+1)
		}
		fail := func(line int, format string, args ...any) error {
			return &ScenarioError{File: file, Line: line,
				Msg: fmt.Sprintf("step %d (%s): ", i+1, st.Name) + fmt.Sprintf(format, args...)}
		}
		if rs.Duration == "" {
			return nil, fail(lines.step(i), "duration is missing, e.g. duration: 20s")
		}
		d, err := time.ParseDuration(rs.Duration)
		if err != nil {
			return nil, fail(lines.field(i, "duration"), "duration %q is not a duration such as 20s or 1m30s", rs.Duration)
		}
		st.Duration = d
		if len(rs.Values) > 0 {
			st.Values = make(map[drivers.MetricID]float64, len(rs.Values))
		}
		for mname, v := range rs.Values {
			id, ok := drivers.MetricByName(mname)
			if !ok {
				return nil, fail(lines.valueKey(i, mname), "unknown metric %q (known: %s)", mname, strings.Join(scriptableMetricNames(), ", "))
			}
			if v == nil {
				st.Values[id] = math.NaN()
			} else {
				st.Values[id] = *v
			}
		}
		garbage := false
		for j, ev := range rs.Events {
			line := lines.event(i, j)
			switch ev {
			case EventGarbage:
				if garbage {
					return nil, fail(line, "event %q listed twice", ev)
				}
				garbage = true
			case EventSilent:
				if st.Silent {
					return nil, fail(line, "event %q listed twice", ev)
				}
				st.Silent = true
			case EventUnplug:
				if st.Unplug {
					return nil, fail(line, "event %q listed twice", ev)
				}
				st.Unplug = true
			default:
				f, ok := drivers.FlagByName(ev)
				if !ok {
					return nil, fail(line, "unknown event %q (events: %s, or a flag: %s)", ev,
						strings.Join([]string{EventGarbage, EventSilent, EventUnplug}, ", "), allFlagNames())
				}
				if st.Flags.Has(f) {
					return nil, fail(line, "event %q listed twice", ev)
				}
				st.Flags |= f
			}
		}
		switch {
		case rs.GarbageBytes != 0 && !garbage:
			return nil, fail(lines.field(i, "garbage_bytes"), "garbage_bytes needs the garbage event")
		case garbage && rs.GarbageBytes == 0:
			st.Garbage = DefaultGarbageBytes
		case garbage:
			st.Garbage = rs.GarbageBytes
		}
		s.Steps = append(s.Steps, st)
	}
	lineOf := func(step int, field string) int {
		if step < 0 {
			return lines.top(field)
		}
		if l := lines.field(step, field); l > 0 {
			return l
		}
		return lines.step(step)
	}
	if err := s.validate(lineOf, file); err != nil {
		return nil, err
	}
	return s, nil
}

var (
	yamlLineRe     = regexp.MustCompile(`^(?:yaml: )?line (\d+): (.*)$`)
	yamlUnknownKey = regexp.MustCompile(`field (\S+) not found in type \S+`)
)

// yamlError turns the YAML library's errors into a ScenarioError with the
// line number as a field, and names unknown keys the way a user wrote them.
func yamlError(file string, err error) error {
	msg := err.Error()
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		msg = te.Errors[0]
	}
	line := 0
	if m := yamlLineRe.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = m[2]
	}
	msg = yamlUnknownKey.ReplaceAllString(msg, "unknown field $1")
	return &ScenarioError{File: file, Line: line, Msg: msg}
}

// nodeLines finds the lines of scenario fields in the untyped YAML tree.
type nodeLines struct{ doc *yaml.Node }

func (l nodeLines) rootMap() *yaml.Node {
	if l.doc == nil || l.doc.Kind != yaml.DocumentNode || len(l.doc.Content) == 0 {
		return nil
	}
	if m := l.doc.Content[0]; m.Kind == yaml.MappingNode {
		return m
	}
	return nil
}

// mapEntry returns the key and value nodes of key in mapping m.
func mapEntry(m *yaml.Node, key string) (k, v *yaml.Node) {
	if m == nil || m.Kind != yaml.MappingNode {
		return nil, nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i], m.Content[i+1]
		}
	}
	return nil, nil
}

func (l nodeLines) top(field string) int {
	if k, _ := mapEntry(l.rootMap(), field); k != nil {
		return k.Line
	}
	return 0
}

func (l nodeLines) stepNode(i int) *yaml.Node {
	_, steps := mapEntry(l.rootMap(), "steps")
	if steps == nil || steps.Kind != yaml.SequenceNode || i < 0 || i >= len(steps.Content) {
		return nil
	}
	return steps.Content[i]
}

func (l nodeLines) step(i int) int {
	if n := l.stepNode(i); n != nil {
		return n.Line
	}
	return 0
}

func (l nodeLines) field(i int, field string) int {
	if k, _ := mapEntry(l.stepNode(i), field); k != nil {
		return k.Line
	}
	return 0
}

func (l nodeLines) valueKey(i int, metric string) int {
	_, vals := mapEntry(l.stepNode(i), "values")
	if k, _ := mapEntry(vals, metric); k != nil {
		return k.Line
	}
	return l.field(i, "values")
}

func (l nodeLines) event(i, j int) int {
	_, evs := mapEntry(l.stepNode(i), "events")
	if evs != nil && evs.Kind == yaml.SequenceNode && j < len(evs.Content) {
		return evs.Content[j].Line
	}
	return l.field(i, "events")
}

func scriptableMetricNames() []string {
	var out []string
	for _, m := range drivers.Metrics() {
		if !m.Waveform {
			out = append(out, m.Name)
		}
	}
	return out
}

func allFlagNames() string {
	return strings.Join(drivers.Flags(math.MaxUint32).Names(), ", ")
}

//go:embed scenarios/*.yaml
var builtinFS embed.FS

// BuiltinNames lists the built-in scenarios, sorted.
func BuiltinNames() []string {
	entries, err := builtinFS.ReadDir("scenarios")
	if err != nil {
		return nil
	}
	var out []string
	for _, e := range entries {
		if n, ok := strings.CutSuffix(e.Name(), ".yaml"); ok {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// BuiltinScenario returns a fresh copy of the built-in scenario called name.
// Built-ins are checked by the package's tests, so a parse failure here
// cannot happen in a released binary; it still reports false, not a panic.
func BuiltinScenario(name string) (*Scenario, bool) {
	s, err := builtinScenario(name)
	return s, err == nil
}

func builtinScenario(name string) (*Scenario, error) {
	if name == "" || strings.ContainsAny(name, `/\.`) {
		return nil, fs404(name)
	}
	data, err := builtinFS.ReadFile(path.Join("scenarios", name+".yaml"))
	if err != nil {
		return nil, fs404(name)
	}
	return ParseScenario(data, "builtin:"+name, name)
}

func fs404(name string) error {
	return &ScenarioError{File: "builtin:" + name, Msg: "no such built-in scenario"}
}
