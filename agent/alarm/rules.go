package alarm

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
)

// Rule is one physiological alarm rule: a limit on one metric, with its
// priority, condition delay and hysteresis. Exactly one of AtOrBelow,
// AtOrAbove and RiseOverBaseline is set.
//
// Limits are inclusive, as clinical.md 4 writes them ("<= 90 %", ">= 120
// /min"): AtOrBelow 90 is met by 90 itself. The event's Condition field says
// "below" or "above" for them.
type Rule struct {
	Name   string // unique; with the device it forms the AlarmID ("spo2-low-medium/oximeter-1")
	Metric string // catalogue name (drivers.Metric.Name), e.g. "spo2"

	AtOrBelow *float64 // met when value <= *AtOrBelow
	AtOrAbove *float64 // met when value >= *AtOrAbove
	// RiseOverBaseline is met when value - baseline >= *RiseOverBaseline,
	// with the device's baseline for the metric (Engine.SetBaseline). Without
	// a baseline the rule cannot be evaluated and stays quiet.
	RiseOverBaseline *float64

	Priority Priority
	// Delay is the alarm condition delay (clinical.md 4); 0 raises the alarm
	// on the first violating reading, as for discrete NIBP readings.
	Delay time.Duration
	// ClearMargin and ClearDelay are the hysteresis (clinical.md 5): the
	// condition ends only when the value is back inside the limit by at least
	// ClearMargin, without a break, for ClearDelay.
	ClearMargin float64
	ClearDelay  time.Duration
	// Latching: nil means the default, which latches high-priority rules
	// (clinical.md 1: latch high-priority physiological alarms).
	Latching *bool
	// SatSeconds, on an AtOrBelow rule, replaces Delay with integration
	// (clinical.md 5). Delay must then be 0.
	SatSeconds *SatSeconds
	// Route names the notification route for the dispatcher; the engine
	// does not interpret it.
	Route string
}

// Latches reports whether the rule's alarms latch.
func (r *Rule) Latches() bool {
	if r.Latching != nil {
		return *r.Latching
	}
	return r.Priority == High
}

// Condition is the event's Condition word for the rule.
func (r *Rule) Condition() string {
	switch {
	case r.AtOrBelow != nil:
		return "below"
	case r.AtOrAbove != nil:
		return "above"
	case r.RiseOverBaseline != nil:
		return "rise_over_baseline"
	}
	return ""
}

// clone copies r with its own limits, so a caller changing its Rule after
// handing it over cannot change the rules in force.
func (r Rule) clone() Rule {
	cp := func(p *float64) *float64 {
		if p == nil {
			return nil
		}
		return limit(*p)
	}
	r.AtOrBelow, r.AtOrAbove, r.RiseOverBaseline = cp(r.AtOrBelow), cp(r.AtOrAbove), cp(r.RiseOverBaseline)
	if r.Latching != nil {
		r.Latching = boolean(*r.Latching)
	}
	if r.SatSeconds != nil {
		s := *r.SatSeconds
		r.SatSeconds = &s
	}
	return r
}

func cloneRules(rules []Rule) []Rule {
	out := make([]Rule, len(rules))
	for i := range rules {
		out[i] = rules[i].clone()
	}
	return out
}

// RuleError is a rule that fails validation. Field is the Go field name.
type RuleError struct {
	Rule   string // the rule's name, or "#i" for an unnamed rule
	Field  string
	Reason string
}

func (e *RuleError) Error() string {
	return fmt.Sprintf("alarm rule %s: %s: %s", e.Rule, e.Field, e.Reason)
}

// Validate checks one rule on its own.
func (r *Rule) Validate() error {
	return r.validate(r.Name)
}

func (r *Rule) validate(label string) error {
	bad := func(field, format string, args ...any) error {
		return &RuleError{Rule: label, Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	if r.Name == "" {
		return bad("Name", "is empty")
	}
	if strings.ContainsAny(r.Name, "/ \t\n") {
		return bad("Name", "%q must not contain '/' or white space (it is part of the alarm id)", r.Name)
	}
	id, ok := drivers.MetricByName(r.Metric)
	if !ok {
		return bad("Metric", "%q is not a metric of the catalogue", r.Metric)
	}
	m := id.Info()
	if m.Waveform {
		return bad("Metric", "%q is a waveform; alarm rules take numeric metrics", r.Metric)
	}
	set := 0
	for _, p := range []*float64{r.AtOrBelow, r.AtOrAbove, r.RiseOverBaseline} {
		if p != nil {
			set++
		}
	}
	if set != 1 {
		return bad("AtOrBelow/AtOrAbove/RiseOverBaseline", "exactly one must be set, found %d", set)
	}
	for _, f := range []struct {
		name string
		v    *float64
	}{{"AtOrBelow", r.AtOrBelow}, {"AtOrAbove", r.AtOrAbove}} {
		if f.v == nil {
			continue
		}
		if !m.InRange(*f.v) {
			return bad(f.name, "%v is outside the possible range of %s (%v to %v %s)", *f.v, m.Name, m.Min, m.Max, m.Unit)
		}
	}
	if r.RiseOverBaseline != nil && (!finite(*r.RiseOverBaseline) || *r.RiseOverBaseline <= 0) {
		return bad("RiseOverBaseline", "must be a positive number, got %v", *r.RiseOverBaseline)
	}
	if r.Priority < Low || r.Priority > High {
		return bad("Priority", "must be low, medium or high, got %d", r.Priority)
	}
	if r.Delay < 0 {
		return bad("Delay", "must not be negative, got %v", r.Delay)
	}
	if r.ClearDelay < 0 {
		return bad("ClearDelay", "must not be negative, got %v", r.ClearDelay)
	}
	if !finite(r.ClearMargin) || r.ClearMargin < 0 {
		return bad("ClearMargin", "must be a number >= 0, got %v", r.ClearMargin)
	}
	if s := r.SatSeconds; s != nil {
		if r.AtOrBelow == nil {
			return bad("SatSeconds", "needs an AtOrBelow limit (it integrates the depth below it)")
		}
		if r.Delay != 0 {
			return bad("SatSeconds", "replaces Delay, which must then be 0 (got %v)", r.Delay)
		}
		if !finite(s.Budget) || s.Budget <= 0 {
			return bad("SatSeconds.Budget", "must be a positive number of %%·s, got %v", s.Budget)
		}
		if s.Violations < 0 {
			return bad("SatSeconds.Violations", "must not be negative, got %d", s.Violations)
		}
		if s.Window < 0 {
			return bad("SatSeconds.Window", "must not be negative, got %v", s.Window)
		}
	}
	return nil
}

// ValidateRules checks every rule and that names are unique. It returns
// all problems joined (errors.Join), each a *RuleError.
func ValidateRules(rules []Rule) error {
	var errs []error
	seen := make(map[string]bool, len(rules))
	for i := range rules {
		label := rules[i].Name
		if label == "" {
			label = "#" + strconv.Itoa(i+1)
		}
		if err := rules[i].validate(label); err != nil {
			errs = append(errs, err)
			continue
		}
		if seen[rules[i].Name] {
			errs = append(errs, &RuleError{Rule: label, Field: "Name", Reason: "is used by another rule"})
		}
		seen[rules[i].Name] = true
	}
	return errors.Join(errs...)
}

func finite(v float64) bool { return !math.IsNaN(v) && !math.IsInf(v, 0) }

func limit(v float64) *float64 { return &v }
func boolean(v bool) *bool     { return &v }

// Hysteresis defaults. clinical.md 5 asks for a clear margin held for some
// seconds but gives no numbers: these are Vigil's choices, configurable like
// every threshold, for the clinic's medical director to confirm.
const (
	spo2ClearMargin     = 2                // % SpO2: 90 clears at 92
	pulseClearMargin    = 5                // /min
	pressureClearMargin = 5                // mmHg
	continuousClearFor  = 10 * time.Second // oximeter values arrive every second
	// NIBP readings are discrete (minutes apart): the next reading inside
	// the margin clears at once, a delay would only wait for the one after.
	discreteClearFor = 0
)

// DefaultRules is the table of clinical.md section 4, one rule per cell.
// Every value is a default for the clinic's medical director to confirm.
func DefaultRules() []Rule {
	return []Rule{
		// clinical.md 4, SpO2 low: <= 90 % medium, <= 85 % high, 15 s delay
		// (the delay that cuts low-SpO2 alarms by 60-70 %, clinical.md 5).
		{Name: "spo2-low-medium", Metric: "spo2", AtOrBelow: limit(90), Priority: Medium,
			Delay: 15 * time.Second, ClearMargin: spo2ClearMargin, ClearDelay: continuousClearFor},
		{Name: "spo2-low-high", Metric: "spo2", AtOrBelow: limit(85), Priority: High,
			Delay: 15 * time.Second, ClearMargin: spo2ClearMargin, ClearDelay: continuousClearFor},
		// clinical.md 4, pulse high: >= 120 /min medium, >= 140 /min high, 10 s.
		{Name: "pulse-high-medium", Metric: "pulse_rate", AtOrAbove: limit(120), Priority: Medium,
			Delay: 10 * time.Second, ClearMargin: pulseClearMargin, ClearDelay: continuousClearFor},
		{Name: "pulse-high-high", Metric: "pulse_rate", AtOrAbove: limit(140), Priority: High,
			Delay: 10 * time.Second, ClearMargin: pulseClearMargin, ClearDelay: continuousClearFor},
		// clinical.md 4, pulse low: <= 50 /min medium, <= 40 /min high, 10 s.
		{Name: "pulse-low-medium", Metric: "pulse_rate", AtOrBelow: limit(50), Priority: Medium,
			Delay: 10 * time.Second, ClearMargin: pulseClearMargin, ClearDelay: continuousClearFor},
		{Name: "pulse-low-high", Metric: "pulse_rate", AtOrBelow: limit(40), Priority: High,
			Delay: 10 * time.Second, ClearMargin: pulseClearMargin, ClearDelay: continuousClearFor},
		// clinical.md 4, systolic high: >= 160 mmHg medium, >= 180 mmHg high,
		// no delay (a discrete reading).
		{Name: "systolic-high-medium", Metric: "nibp_systolic", AtOrAbove: limit(160), Priority: Medium,
			ClearMargin: pressureClearMargin, ClearDelay: discreteClearFor},
		{Name: "systolic-high-high", Metric: "nibp_systolic", AtOrAbove: limit(180), Priority: High,
			ClearMargin: pressureClearMargin, ClearDelay: discreteClearFor},
		// clinical.md 4, diastolic high: >= 100 mmHg medium, >= 110 mmHg high, no delay.
		{Name: "diastolic-high-medium", Metric: "nibp_diastolic", AtOrAbove: limit(100), Priority: Medium,
			ClearMargin: pressureClearMargin, ClearDelay: discreteClearFor},
		{Name: "diastolic-high-high", Metric: "nibp_diastolic", AtOrAbove: limit(110), Priority: High,
			ClearMargin: pressureClearMargin, ClearDelay: discreteClearFor},
		// clinical.md 4, systolic low: <= 90 mmHg medium, <= 80 mmHg high, no delay.
		{Name: "systolic-low-medium", Metric: "nibp_systolic", AtOrBelow: limit(90), Priority: Medium,
			ClearMargin: pressureClearMargin, ClearDelay: discreteClearFor},
		{Name: "systolic-low-high", Metric: "nibp_systolic", AtOrBelow: limit(80), Priority: High,
			ClearMargin: pressureClearMargin, ClearDelay: discreteClearFor},
		// clinical.md 4, mean low: <= 65 mmHg medium, <= 55 mmHg high, no delay.
		{Name: "mean-low-medium", Metric: "nibp_mean", AtOrBelow: limit(65), Priority: Medium,
			ClearMargin: pressureClearMargin, ClearDelay: discreteClearFor},
		{Name: "mean-low-high", Metric: "nibp_mean", AtOrBelow: limit(55), Priority: High,
			ClearMargin: pressureClearMargin, ClearDelay: discreteClearFor},
		// clinical.md 4, rise over the pre-dose baseline: +40 systolic or +25
		// diastolic, medium, no delay (the esketamine label's threshold,
		// clinical.md 3).
		{Name: "systolic-rise-medium", Metric: "nibp_systolic", RiseOverBaseline: limit(40), Priority: Medium,
			ClearMargin: pressureClearMargin, ClearDelay: discreteClearFor},
		{Name: "diastolic-rise-medium", Metric: "nibp_diastolic", RiseOverBaseline: limit(25), Priority: Medium,
			ClearMargin: pressureClearMargin, ClearDelay: discreteClearFor},
	}
}

// level says where value stands against the rule. For a rise rule, baseline
// must be known (the caller passes LevelUnknown otherwise).
func (r *Rule) level(v, baseline float64) Level {
	switch {
	case r.AtOrBelow != nil:
		l := *r.AtOrBelow
		if v <= l {
			return LevelMet
		}
		if v >= l+r.ClearMargin {
			return LevelClear
		}
	case r.AtOrAbove != nil:
		l := *r.AtOrAbove
		if v >= l {
			return LevelMet
		}
		if v <= l-r.ClearMargin {
			return LevelClear
		}
	case r.RiseOverBaseline != nil:
		rise := v - baseline
		if rise >= *r.RiseOverBaseline {
			return LevelMet
		}
		if rise <= *r.RiseOverBaseline-r.ClearMargin {
			return LevelClear
		}
	}
	return LevelMarginal
}

// limitText describes the limit for the event text; unit is the metric's.
func (r *Rule) limitText(unit string, baseline float64) string {
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) + " " + unit }
	switch {
	case r.AtOrBelow != nil:
		return "at or below " + f(*r.AtOrBelow)
	case r.AtOrAbove != nil:
		return "at or above " + f(*r.AtOrAbove)
	case r.RiseOverBaseline != nil:
		return "rise of " + f(*r.RiseOverBaseline) + " or more over baseline " + f(baseline)
	}
	return ""
}
