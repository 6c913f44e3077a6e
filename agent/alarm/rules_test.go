package alarm

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

// TestDefaultRulesAreClinicalTable pins DefaultRules to clinical.md section
// 4, cell by cell.
func TestDefaultRulesAreClinicalTable(t *testing.T) {
	type row struct {
		name, metric, cond string
		limit              float64
		prio               Priority
		delay              time.Duration
		latches            bool
	}
	want := []row{
		{"spo2-low-medium", "spo2", "below", 90, Medium, 15 * time.Second, false},
		{"spo2-low-high", "spo2", "below", 85, High, 15 * time.Second, true},
		{"pulse-high-medium", "pulse_rate", "above", 120, Medium, 10 * time.Second, false},
		{"pulse-high-high", "pulse_rate", "above", 140, High, 10 * time.Second, true},
		{"pulse-low-medium", "pulse_rate", "below", 50, Medium, 10 * time.Second, false},
		{"pulse-low-high", "pulse_rate", "below", 40, High, 10 * time.Second, true},
		{"systolic-high-medium", "nibp_systolic", "above", 160, Medium, 0, false},
		{"systolic-high-high", "nibp_systolic", "above", 180, High, 0, true},
		{"diastolic-high-medium", "nibp_diastolic", "above", 100, Medium, 0, false},
		{"diastolic-high-high", "nibp_diastolic", "above", 110, High, 0, true},
		{"systolic-low-medium", "nibp_systolic", "below", 90, Medium, 0, false},
		{"systolic-low-high", "nibp_systolic", "below", 80, High, 0, true},
		{"mean-low-medium", "nibp_mean", "below", 65, Medium, 0, false},
		{"mean-low-high", "nibp_mean", "below", 55, High, 0, true},
		{"systolic-rise-medium", "nibp_systolic", "rise_over_baseline", 40, Medium, 0, false},
		{"diastolic-rise-medium", "nibp_diastolic", "rise_over_baseline", 25, Medium, 0, false},
	}
	rules := DefaultRules()
	if len(rules) != len(want) {
		t.Fatalf("%d default rules, want %d", len(rules), len(want))
	}
	for i, r := range rules {
		var lim float64
		switch {
		case r.AtOrBelow != nil:
			lim = *r.AtOrBelow
		case r.AtOrAbove != nil:
			lim = *r.AtOrAbove
		case r.RiseOverBaseline != nil:
			lim = *r.RiseOverBaseline
		}
		got := row{r.Name, r.Metric, r.Condition(), lim, r.Priority, r.Delay, r.Latches()}
		if got != want[i] {
			t.Errorf("rule %d = %+v, want %+v", i, got, want[i])
		}
		if r.SatSeconds != nil {
			t.Errorf("rule %s: SatSeconds is opt-in, not a default", r.Name)
		}
	}
	if err := ValidateRules(rules); err != nil {
		t.Fatalf("default rules do not validate: %v", err)
	}
}

// TestLimitsAreInclusive pins the "<=" and ">=" of clinical.md 4: the limit
// value itself violates, and clearing needs the clear margin.
func TestLimitsAreInclusive(t *testing.T) {
	below := Rule{AtOrBelow: limit(90), ClearMargin: 2}
	above := Rule{AtOrAbove: limit(120), ClearMargin: 5}
	rise := Rule{RiseOverBaseline: limit(40), ClearMargin: 5}
	noMargin := Rule{AtOrBelow: limit(90)}
	cases := []struct {
		name     string
		r        Rule
		v, base  float64
		want     Level
		describe string
	}{
		{"below: the limit itself is met", below, 90, 0, LevelMet, "SpO2 90 % is '<= 90 %'"},
		{"below: under the limit", below, 84, 0, LevelMet, ""},
		{"below: just over the limit is marginal", below, 90.01, 0, LevelMarginal, ""},
		{"below: inside by less than the margin", below, 91.9, 0, LevelMarginal, ""},
		{"below: inside by the margin clears", below, 92, 0, LevelClear, ""},
		{"below without margin: just over clears", noMargin, 90.01, 0, LevelClear, ""},
		{"above: the limit itself is met", above, 120, 0, LevelMet, "pulse 120 is '>= 120'"},
		{"above: just under is marginal", above, 119.9, 0, LevelMarginal, ""},
		{"above: inside by the margin clears", above, 115, 0, LevelClear, ""},
		{"rise: exactly +40 is met", rise, 170, 130, LevelMet, ""},
		{"rise: +39 is marginal", rise, 169, 130, LevelMarginal, ""},
		{"rise: +35 clears", rise, 165, 130, LevelClear, ""},
	}
	for _, c := range cases {
		if got := c.r.level(c.v, c.base); got != c.want {
			t.Errorf("%s: level(%v) = %s, want %s %s", c.name, c.v, got, c.want, c.describe)
		}
	}
}

func TestRuleValidation(t *testing.T) {
	ok := func() Rule {
		return Rule{Name: "r", Metric: "spo2", AtOrBelow: limit(90), Priority: Medium, Delay: time.Second}
	}
	cases := []struct {
		name   string
		edit   func(r *Rule)
		field  string
		reason string
	}{
		{"no name", func(r *Rule) { r.Name = "" }, "Name", "empty"},
		{"slash in name", func(r *Rule) { r.Name = "a/b" }, "Name", "must not contain"},
		{"unknown metric", func(r *Rule) { r.Metric = "spO2" }, "Metric", "not a metric"},
		{"waveform metric", func(r *Rule) { r.Metric = "pleth" }, "Metric", "waveform"},
		{"no limit", func(r *Rule) { r.AtOrBelow = nil }, "AtOrBelow/AtOrAbove/RiseOverBaseline", "found 0"},
		{"two limits", func(r *Rule) { r.AtOrAbove = limit(99) }, "AtOrBelow/AtOrAbove/RiseOverBaseline", "found 2"},
		{"three limits", func(r *Rule) { r.AtOrAbove = limit(99); r.RiseOverBaseline = limit(1) }, "AtOrBelow/AtOrAbove/RiseOverBaseline", "found 3"},
		{"limit out of range", func(r *Rule) { r.AtOrBelow = limit(900) }, "AtOrBelow", "outside the possible range"},
		{"NaN limit", func(r *Rule) { r.AtOrBelow = limit(math.NaN()) }, "AtOrBelow", "outside the possible range"},
		{"above out of range", func(r *Rule) { r.AtOrBelow, r.AtOrAbove = nil, limit(-1) }, "AtOrAbove", "outside"},
		{"rise not positive", func(r *Rule) { r.AtOrBelow, r.RiseOverBaseline = nil, limit(0) }, "RiseOverBaseline", "positive"},
		{"rise infinite", func(r *Rule) { r.AtOrBelow, r.RiseOverBaseline = nil, limit(math.Inf(1)) }, "RiseOverBaseline", "positive"},
		{"priority zero", func(r *Rule) { r.Priority = 0 }, "Priority", "low, medium or high"},
		{"priority too high", func(r *Rule) { r.Priority = 4 }, "Priority", "low, medium or high"},
		{"negative delay", func(r *Rule) { r.Delay = -time.Second }, "Delay", "negative"},
		{"negative clear delay", func(r *Rule) { r.ClearDelay = -time.Second }, "ClearDelay", "negative"},
		{"negative margin", func(r *Rule) { r.ClearMargin = -1 }, "ClearMargin", ">= 0"},
		{"NaN margin", func(r *Rule) { r.ClearMargin = math.NaN() }, "ClearMargin", ">= 0"},
		{"satseconds on a high limit", func(r *Rule) {
			r.AtOrBelow, r.AtOrAbove, r.Delay, r.SatSeconds = nil, limit(99), 0, &SatSeconds{Budget: 25}
		}, "SatSeconds", "needs an AtOrBelow"},
		{"satseconds with a delay", func(r *Rule) { r.SatSeconds = &SatSeconds{Budget: 25} }, "SatSeconds", "replaces Delay"},
		{"satseconds without budget", func(r *Rule) { r.Delay, r.SatSeconds = 0, &SatSeconds{} }, "SatSeconds.Budget", "positive"},
		{"satseconds negative violations", func(r *Rule) { r.Delay, r.SatSeconds = 0, &SatSeconds{Budget: 10, Violations: -1} }, "SatSeconds.Violations", "negative"},
		{"satseconds negative window", func(r *Rule) { r.Delay, r.SatSeconds = 0, &SatSeconds{Budget: 10, Window: -1} }, "SatSeconds.Window", "negative"},
	}
	good := ok()
	if err := good.Validate(); err != nil {
		t.Fatalf("base rule: %v", err)
	}
	for _, c := range cases {
		r := ok()
		c.edit(&r)
		err := r.Validate()
		var re *RuleError
		if !errors.As(err, &re) {
			t.Errorf("%s: err = %v, want a *RuleError", c.name, err)
			continue
		}
		if re.Field != c.field || !strings.Contains(re.Reason, c.reason) {
			t.Errorf("%s: got field %q reason %q, want field %q reason containing %q", c.name, re.Field, re.Reason, c.field, c.reason)
		}
	}
}

func TestValidateRulesReportsEveryProblem(t *testing.T) {
	rules := []Rule{
		{Name: "a", Metric: "spo2", AtOrBelow: limit(90), Priority: Medium},
		{Name: "a", Metric: "spo2", AtOrBelow: limit(85), Priority: High},
		{Metric: "spo2", AtOrBelow: limit(85), Priority: High},
	}
	err := ValidateRules(rules)
	if err == nil {
		t.Fatal("no error")
	}
	want := "alarm rule a: Name: is used by another rule\nalarm rule #3: Name: is empty"
	if err.Error() != want {
		t.Errorf("error\n%s\nwant\n%s", err, want)
	}
}

func TestLatchingOverride(t *testing.T) {
	r := Rule{Priority: High, Latching: boolean(false)}
	if r.Latches() {
		t.Error("explicit false on a high rule latches")
	}
	r = Rule{Priority: Medium, Latching: boolean(true)}
	if !r.Latches() {
		t.Error("explicit true on a medium rule does not latch")
	}
}
