package alarm

import (
	"testing"
	"time"
)

func TestSatSecondsCounter(t *testing.T) {
	type sample struct {
		at    float64 // seconds after t0
		v     float64
		fires bool
		sum   float64 // %·s of the current excursion after the sample
	}
	cases := []struct {
		name    string
		cfg     SatSeconds
		samples []sample
	}{
		{"depth 5 below 90 at 1 Hz: 25 %·s is not over a budget of 25, 30 is", SatSeconds{Budget: 25}, []sample{
			{0, 85, false, 0}, // an excursion's first sample stands for no time yet
			{1, 85, false, 5},
			{2, 85, false, 10},
			{3, 85, false, 15},
			{4, 85, false, 20},
			{5, 85, false, 25},
			{6, 85, true, 30},
		}},
		{"the limit itself is a violation of depth 0", SatSeconds{Budget: 9.5}, []sample{
			{0, 90, false, 0},
			{1, 90, false, 0},
			{2, 90, false, 0},
			{3, 80, true, 10},
		}},
		{"returning above the limit ends the excursion and its sum", SatSeconds{Budget: 25}, []sample{
			{0, 80, false, 0},
			{1, 80, false, 10},
			{2, 80, false, 20},
			{3, 91, false, 0},
			{4, 88, false, 0},
			{5, 88, false, 2},
		}},
		{"a gap between samples counts at most 2 s", SatSeconds{Budget: 25}, []sample{
			{0, 85, false, 0},
			{60, 85, false, 10},
			{61, 85, false, 15},
		}},
		{"three excursions within 60 s fire even under budget", SatSeconds{Budget: 100}, []sample{
			{0, 89, false, 0},
			{1, 92, false, 0},
			{20, 89, false, 0},
			{21, 92, false, 0},
			{59, 89, true, 0},
			{60, 89, true, 1},
			{61, 92, false, 0},
		}},
		{"three excursions spread over more than 60 s do not", SatSeconds{Budget: 100}, []sample{
			{0, 89, false, 0},
			{1, 92, false, 0},
			{30, 89, false, 0},
			{31, 92, false, 0},
			{61, 89, false, 0},
		}},
		{"custom violations and window", SatSeconds{Budget: 100, Violations: 2, Window: 10 * time.Second}, []sample{
			{0, 89, false, 0},
			{1, 92, false, 0},
			{11, 89, false, 0},
			{12, 92, false, 0},
			{20, 89, true, 0},
		}},
		{"samples out of order add nothing", SatSeconds{Budget: 25}, []sample{
			{10, 85, false, 0},
			{9, 85, false, 0},
			{11, 85, false, 5},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cnt := &satSecondsCounter{cfg: c.cfg, limit: 90}
			for i, s := range c.samples {
				got := cnt.observe(s.v, at(s.at))
				if got != s.fires {
					t.Errorf("sample %d (%v @%gs): fires = %v, want %v", i, s.v, s.at, got, s.fires)
				}
				if d := cnt.sum - s.sum; d > 1e-5 || d < -1e-5 {
					t.Errorf("sample %d (%v @%gs): sum = %v, want %v", i, s.v, s.at, cnt.sum, s.sum)
				}
			}
		})
	}
}

func TestSatSecondsDefaults(t *testing.T) {
	var s SatSeconds
	if s.violations() != 3 || s.window() != time.Minute {
		t.Errorf("defaults %d in %v, want 3 in 1m (clinical.md 5)", s.violations(), s.window())
	}
}
