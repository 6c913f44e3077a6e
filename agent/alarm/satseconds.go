package alarm

import "time"

// SatSeconds replaces a fixed condition delay on a low-SpO2 rule with
// Nellcor-style integration (clinical.md 5): while the value is at or below
// the limit, (limit - value) x seconds add up; the alarm is raised when the
// sum exceeds Budget. As a safety net it is always raised at the start of the
// Violations-th excursion below the limit within Window, however small the
// sum (brief repeated dips are themselves a warning).
type SatSeconds struct {
	// Budget in %·s; clinical.md 5 names 10, 25, 50 and 100 as the usual
	// choices.
	Budget float64
	// Violations within Window that raise the alarm regardless of Budget;
	// 0 means DefaultSatSecondsViolations.
	Violations int
	// Window for Violations; 0 means DefaultSatSecondsWindow.
	Window time.Duration
}

const (
	// DefaultSatSecondsViolations and DefaultSatSecondsWindow: "always alarm
	// after 3 violations within 60 s" (clinical.md 5).
	DefaultSatSecondsViolations = 3
	DefaultSatSecondsWindow     = 60 * time.Second

	// satSecondsMaxStep bounds the time one sample stands for. Oximeters
	// send at least once a second (drivers.Metric.Continuous); a longer gap
	// is missing data, and integrating across it would invent seconds below
	// the limit that nobody measured.
	satSecondsMaxStep = 2 * time.Second
)

func (s SatSeconds) violations() int {
	if s.Violations > 0 {
		return s.Violations
	}
	return DefaultSatSecondsViolations
}

func (s SatSeconds) window() time.Duration {
	if s.Window > 0 {
		return s.Window
	}
	return DefaultSatSecondsWindow
}

// satSecondsCounter integrates one rule's excursions on one device.
type satSecondsCounter struct {
	cfg    SatSeconds
	limit  float64
	below  bool      // inside an excursion (value at or below the limit)
	last   time.Time // time of the previous sample of the excursion
	sum    float64   // %·s of the current excursion
	starts []time.Time
}

// observe adds one valid sample and reports whether the alarm condition is
// met: the current excursion's sum exceeds the budget, or this excursion is
// the Violations-th to start within the window.
func (c *satSecondsCounter) observe(v float64, now time.Time) bool {
	if v > c.limit {
		// Back inside: the excursion is over and its sum with it (the
		// integration is per excursion, clinical.md 5).
		c.below, c.sum = false, 0
		return false
	}
	if !c.below {
		c.below, c.sum, c.last = true, 0, now
		c.starts = append(c.starts, now)
	} else {
		step := now.Sub(c.last)
		if step > satSecondsMaxStep {
			step = satSecondsMaxStep
		}
		if step > 0 {
			c.sum += (c.limit - v) * step.Seconds()
		}
		if now.After(c.last) {
			c.last = now
		}
	}
	return c.sum > c.cfg.Budget || c.recentStarts(now) >= c.cfg.violations()
}

// recentStarts drops excursion starts older than the window and counts the
// rest.
func (c *satSecondsCounter) recentStarts(now time.Time) int {
	cut := now.Add(-c.cfg.window())
	keep := c.starts[:0]
	for _, t := range c.starts {
		if !t.Before(cut) {
			keep = append(keep, t)
		}
	}
	c.starts = keep
	return len(keep)
}
