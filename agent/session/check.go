package session

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"time"
)

// Result is the outcome of one vital in the end check.
type Result string

const (
	ResultPass       Result = "pass"
	ResultFail       Result = "fail"
	ResultNoBaseline Result = "no_baseline" // no valid reading before the first dose
	ResultNoValue    Result = "no_value"    // no valid reading after the last dose
)

// VitalCheck is one vital of the end check.
type VitalCheck struct {
	Metric   string       `json:"metric"`
	Baseline *Measurement `json:"baseline,omitempty"`
	// Latest is the latest valid value after the last dose.
	Latest *Measurement `json:"latest,omitempty"`
	// ChangePercent is (latest - baseline) / baseline x 100, when both exist
	// and the baseline is not 0.
	ChangePercent *float64 `json:"change_percent,omitempty"`
	Result        Result   `json:"result"`
	Reason        string   `json:"reason"`
}

// Check is the end-of-session check (clinical.md 3): each vital against its
// baseline, and whether the minimum observation time had passed.
type Check struct {
	At     time.Time    `json:"at"`
	Vitals []VitalCheck `json:"vitals"`
	// VitalsPass: every vital checked passed.
	VitalsPass bool    `json:"vitals_pass"`
	Tolerance  float64 `json:"tolerance"` // the fraction used, 0.2 for 20%
	// ObservedSeconds runs from the last dose to the end.
	ObservedSeconds       float64 `json:"observed_seconds"`
	MinObservationSeconds float64 `json:"min_observation_seconds"`
	ObservationComplete   bool    `json:"observation_complete"`
	// Pass: a dose was given, every vital passed and the observation was
	// complete.
	Pass  bool     `json:"pass"`
	Notes []string `json:"notes,omitempty"`
}

func (c Check) clone() Check {
	c.Vitals = slices.Clone(c.Vitals)
	for i := range c.Vitals {
		v := &c.Vitals[i]
		if v.Baseline != nil {
			b := *v.Baseline
			v.Baseline = &b
		}
		if v.Latest != nil {
			l := *v.Latest
			v.Latest = &l
		}
		if v.ChangePercent != nil {
			p := *v.ChangePercent
			v.ChangePercent = &p
		}
	}
	c.Notes = slices.Clone(c.Notes)
	return c
}

// tolerancePrecision absorbs floating-point error at exactly the tolerance:
// 20% of 120 is 24, and 144 is within it.
const tolerancePrecision = 1e-9

// endCheck computes the check of s at now with protocol p.
func endCheck(s *Session, now time.Time, p *Protocol) Check {
	c := Check{
		At:                    now,
		Tolerance:             p.CheckTolerance,
		MinObservationSeconds: p.MinObservation.Seconds(),
	}
	if !s.Dosed() {
		c.Notes = append(c.Notes, "no dose recorded")
		return c
	}
	lastDose := s.Doses[len(s.Doses)-1]
	// Observation runs from the last dose: the esketamine label observes at
	// least 2 h after administration (clinical.md 3), and a later dose
	// restarts the effect. This is the stricter reading.
	observed := now.Sub(lastDose)
	c.ObservedSeconds = observed.Seconds()
	c.ObservationComplete = observed >= p.MinObservation
	if !c.ObservationComplete {
		c.Notes = append(c.Notes, fmt.Sprintf("observation shorter than %s (%s since the last dose)",
			formatDuration(p.MinObservation), formatDuration(observed)))
	}

	c.VitalsPass = true
	for _, bm := range baselineMetrics {
		base, hasBase := s.Baseline[bm.name]
		if !hasBase && !bm.required {
			continue
		}
		v := VitalCheck{Metric: bm.name}
		if hasBase {
			b := base
			v.Baseline = &b
		}
		if l, ok := s.latest[bm.name]; ok && !l.At.Before(lastDose) {
			v.Latest = &l
		}
		switch {
		case v.Baseline == nil:
			v.Result, v.Reason = ResultNoBaseline, "no valid reading before the first dose"
		case v.Latest == nil:
			v.Result, v.Reason = ResultNoValue, "no valid reading after the last dose"
		default:
			v.Result, v.Reason = compare(bm.name, v.Baseline.Value, v.Latest.Value, p)
			if v.Baseline.Value != 0 {
				pct := (v.Latest.Value - v.Baseline.Value) / v.Baseline.Value * 100
				v.ChangePercent = &pct
			}
		}
		if v.Result != ResultPass {
			c.VitalsPass = false
		}
		c.Vitals = append(c.Vitals, v)
	}
	if n := s.Schedule.MissedCount; n > 0 {
		c.Notes = append(c.Notes, fmt.Sprintf("%d scheduled blood-pressure reading(s) missed", n))
	}
	c.Pass = c.VitalsPass && c.ObservationComplete
	return c
}

// compare checks one vital against its baseline.
func compare(metric string, base, latest float64, p *Protocol) (Result, string) {
	tol := p.CheckTolerance * math.Abs(base)
	pct := formatNumber(p.CheckTolerance * 100)
	if math.Abs(latest-base) > tol+tolerancePrecision {
		dir := "above"
		if latest < base {
			dir = "below"
		}
		return ResultFail, fmt.Sprintf("%s is more than %s%% %s the baseline %s",
			formatNumber(latest), pct, dir, formatNumber(base))
	}
	if metric == metricSpO2 && !(latest > p.DischargeSpO2) {
		return ResultFail, fmt.Sprintf("SpO2 %s%% is not above %s%%", formatNumber(latest), formatNumber(p.DischargeSpO2))
	}
	return ResultPass, fmt.Sprintf("within %s%% of baseline", pct)
}

// formatDuration writes a duration as staff read it: "2 h", "1 h 25 min",
// "45 min" (rounded down to the minute).
func formatDuration(d time.Duration) string {
	if d < 0 {
		d = 0
	}
	h := int64(d / time.Hour)
	m := int64(d%time.Hour) / int64(time.Minute)
	switch {
	case h == 0:
		return strconv.FormatInt(m, 10) + " min"
	case m == 0:
		return strconv.FormatInt(h, 10) + " h"
	default:
		return strconv.FormatInt(h, 10) + " h " + strconv.FormatInt(m, 10) + " min"
	}
}

func formatNumber(v float64) string {
	return strconv.FormatFloat(math.Round(v*10)/10, 'f', -1, 64)
}

func formatBP(sys, dia float64) string {
	part := func(v float64) string {
		if v == 0 {
			return "-"
		}
		return formatNumber(v)
	}
	return part(sys) + "/" + part(dia)
}
