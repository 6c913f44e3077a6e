package dashboards

import (
	"math"
	"slices"

	"github.com/grafana/grafana-foundation-sdk/go/dashboard"

	"github.com/vigil-monitor/vigil/agent/alarm"
)

// Colours of the priorities, from clinical.md 1 (IEC 60601-1-8): high red,
// medium yellow, low cyan; green where no limit is crossed.
const (
	colourNormal = "green"
	colourHigh   = "red"
	colourMedium = "yellow"
	colourLow    = "#00bcd4" // cyan: Grafana's palette has no named cyan
	colourNone   = "text"    // no value, or a state that is no alarm
)

func priorityColour(p alarm.Priority) string {
	switch p {
	case alarm.High:
		return colourHigh
	case alarm.Medium:
		return colourMedium
	case alarm.Low:
		return colourLow
	}
	return colourNormal
}

// limit is one fixed alarm limit of a metric, in the metric's catalogue
// unit (SpO2 in %, pressures in mmHg). Rise-over-baseline rules have no
// fixed limit and are not drawn: the baseline is the patient's.
type limit struct {
	value    float64
	below    bool // met at or below value; else at or above
	priority alarm.Priority
}

// limitsOf returns the fixed limits the rules set on metric, in rule order.
func limitsOf(rules []alarm.Rule, metric string) []limit {
	var out []limit
	for _, r := range rules {
		if r.Metric != metric {
			continue
		}
		switch {
		case r.AtOrBelow != nil:
			out = append(out, limit{value: *r.AtOrBelow, below: true, priority: r.Priority})
		case r.AtOrAbove != nil:
			out = append(out, limit{value: *r.AtOrAbove, priority: r.Priority})
		}
	}
	return out
}

// worstAt is the highest priority of the limits met by v; 0 when none.
func worstAt(limits []limit, v float64) alarm.Priority {
	var worst alarm.Priority
	for _, l := range limits {
		if (l.below && v <= l.value) || (!l.below && v >= l.value) {
			worst = max(worst, l.priority)
		}
	}
	return worst
}

// colourSteps turns the limits into Grafana threshold steps that colour a
// value as the alarm engine judges it. Grafana gives a value the colour of
// the highest step at or below it, so an "at or above 120" limit is a step
// at 120, but an "at or below 90" limit (met by 90 itself, clinical.md 4)
// ends at the next value up. The readings are whole numbers (every
// supported oximeter and NIBP reports integer %, /min and mmHg,
// protocols.md), so that step is at limit + resolution: 91 for SpO2 <= 90.
// A value between 90 and 91 (an HL7 monitor sending decimals) is shown in
// the alarm colour: the dashboard errs towards showing the alarm.
func colourSteps(limits []limit, resolution float64) []dashboard.Threshold {
	var points []float64
	for _, l := range limits {
		if l.below {
			points = append(points, l.value+resolution)
		} else {
			points = append(points, l.value)
		}
	}
	slices.Sort(points)
	points = slices.Compact(points)

	steps := []dashboard.Threshold{{Value: nil, Color: priorityColour(worstAt(limits, math.Inf(-1)))}}
	for _, p := range points {
		c := priorityColour(worstAt(limits, p))
		if c == steps[len(steps)-1].Color {
			continue
		}
		steps = append(steps, dashboard.Threshold{Value: ptr(p), Color: c})
	}
	return steps
}

// lineSteps are the threshold steps a time series draws as limit lines: one
// line at each limit's own value, coloured by its priority. Grafana draws a
// line at every step but the base one, whose colour fills the area no line
// reaches (transparent here: a trend panel paints no areas).
func lineSteps(limits []limit) []dashboard.Threshold {
	sorted := slices.Clone(limits)
	slices.SortStableFunc(sorted, func(a, b limit) int {
		switch {
		case a.value < b.value:
			return -1
		case a.value > b.value:
			return 1
		}
		return 0
	})
	steps := []dashboard.Threshold{{Value: nil, Color: "transparent"}}
	for _, l := range sorted {
		steps = append(steps, dashboard.Threshold{Value: ptr(l.value), Color: priorityColour(l.priority)})
	}
	return steps
}

func ptr[T any](v T) *T { return &v }
