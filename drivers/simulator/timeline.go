package simulator

import (
	"math"
	"math/rand/v2"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
)

// Moment is what the scenario prescribes at one instant: which step runs and
// what the device does besides showing values.
type Moment struct {
	Step     int // index into Scenario.Steps
	StepName string
	Pass     int           // completed passes through a looping scenario
	Elapsed  time.Duration // time since the step started
	// Ended is true past the last step of a scenario that does not loop;
	// the other fields then describe the last step.
	Ended   bool
	Flags   drivers.Flags
	Garbage int
	Silent  bool
	Unplug  bool
}

// timeline is a scenario resolved for playback: each step knows the values
// it starts from and ends at, with carried-forward values filled in. It is
// built from any Scenario without failing; an invalid scenario (see
// Validate) plays in some harmless way rather than crashing.
type timeline struct {
	segments []segment
	total    time.Duration
	loop     bool
	noise    bool
}

type segment struct {
	step     Step
	start    time.Duration // offset in the pass
	from, to map[drivers.MetricID]float64
}

func newTimeline(s *Scenario) *timeline {
	tl := &timeline{loop: s.Loop, noise: s.Noise}
	prev := map[drivers.MetricID]float64{}
	for _, st := range s.Steps {
		if st.Duration <= 0 {
			continue
		}
		to := make(map[drivers.MetricID]float64, len(prev)+len(st.Values))
		for id, v := range prev {
			to[id] = v
		}
		for id, v := range st.Values {
			if m := id.Info(); m.ID == drivers.MetricUnknown || m.Waveform {
				continue
			}
			to[id] = v
		}
		from := to
		if st.Ramp && len(tl.segments) > 0 {
			from = prev
		}
		tl.segments = append(tl.segments, segment{step: st, start: tl.total, from: from, to: to})
		tl.total += st.Duration
		prev = to
	}
	return tl
}

// at locates t (time since the scenario started) in the timeline.
func (tl *timeline) at(t time.Duration) (Moment, *segment) {
	if len(tl.segments) == 0 {
		return Moment{Ended: true, Step: -1}, nil
	}
	if t < 0 {
		t = 0
	}
	pass := 0
	ended := false
	switch {
	case t < tl.total:
	case tl.loop:
		pass = int(t / tl.total)
		t %= tl.total
	default:
		ended = true
		t = tl.total - 1
	}
	i := tl.find(t)
	seg := &tl.segments[i]
	st := seg.step
	return Moment{
		Step:     i,
		StepName: st.Name,
		Pass:     pass,
		Elapsed:  t - seg.start,
		Ended:    ended,
		Flags:    st.Flags,
		Garbage:  st.Garbage,
		Silent:   st.Silent,
		Unplug:   st.Unplug,
	}, seg
}

// find returns the segment holding offset t of a pass (0 <= t < total).
func (tl *timeline) find(t time.Duration) int {
	lo, hi := 0, len(tl.segments)-1
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if tl.segments[mid].start <= t {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo
}

// nextBoundary is the first step boundary strictly after t, so a player can
// act on an unplug exactly when its step begins; ok is false when no
// boundary follows (the end of a non-looping scenario is a boundary).
func (tl *timeline) nextBoundary(t time.Duration) (time.Duration, bool) {
	if len(tl.segments) == 0 || tl.total <= 0 {
		return 0, false
	}
	if t < 0 {
		t = 0
	}
	var passStart time.Duration
	if t >= tl.total {
		if !tl.loop {
			return 0, false
		}
		passStart = t - t%tl.total
	}
	off := t - passStart
	i := tl.find(off)
	seg := tl.segments[i]
	return passStart + seg.start + seg.step.Duration, true
}

// frame renders the device's output at t: the values interpolated, jittered
// when rng is non-nil and the scenario has noise, rounded the way the device
// rounds, and blanked when a flag means there is no signal.
func (tl *timeline) frame(t time.Duration, rng *rand.Rand) (drivers.Frame, Moment) {
	m, seg := tl.at(t)
	f := drivers.Frame{Values: map[drivers.MetricID]float64{}, Flags: m.Flags}
	if seg == nil || m.Flags&blankingFlags != 0 {
		return f, m
	}
	frac := 1.0
	if seg.step.Ramp && seg.step.Duration > 0 {
		frac = float64(m.Elapsed) / float64(seg.step.Duration)
	}
	// Catalogue order, never map order, so the noise drawn from rng is the
	// same for the same seed.
	for _, info := range catalogue {
		to, ok := seg.to[info.ID]
		if !ok || math.IsNaN(to) {
			continue
		}
		v := to
		if from, ok := seg.from[info.ID]; ok && !math.IsNaN(from) {
			v = from + (to-from)*frac
		}
		if tl.noise && rng != nil {
			v += noiseOf(info.ID, v, rng)
		}
		v = roundLikeDevice(info.ID, v)
		v = math.Max(info.Min, math.Min(info.Max, v))
		f.Values[info.ID] = v
	}
	return f, m
}

// catalogue is drivers.Metrics(), fetched once: frame runs for every frame.
var catalogue = drivers.Metrics()

// noiseOf draws the jitter of one value: uniform, small enough that a steady
// value stays believable. SpO2 ±0.6 keeps a 97.5 target within 97-98 after
// rounding (at most one point from the target); pulse wanders about ±2/min.
func noiseOf(id drivers.MetricID, v float64, rng *rand.Rand) float64 {
	u := rng.Float64()*2 - 1 // [-1, 1)
	switch id {
	case drivers.SpO2:
		return 0.6 * u
	case drivers.PulseRate, drivers.NIBPPulseRate:
		return 2.4 * u
	case drivers.PerfusionIndex:
		return 0.04 * v * u // ±4 %: PI varies proportionally
	case drivers.NIBPSystolic, drivers.NIBPDiastolic, drivers.NIBPMean:
		return 2 * u
	case drivers.RespirationRate:
		return u
	}
	return 0
}

// roundLikeDevice rounds as monitors display: whole numbers, except the
// perfusion index which Masimo gives with two decimals (protocols.md 2.2,
// "PI NN.NN%").
func roundLikeDevice(id drivers.MetricID, v float64) float64 {
	if id == drivers.PerfusionIndex {
		return math.Round(v*100) / 100
	}
	return math.Round(v)
}

// At tells which step runs at t (time since the scenario started).
func (s *Scenario) At(t time.Duration) Moment {
	m, _ := newTimeline(s).at(t)
	return m
}

// FrameAt is the frame the device sends at t, as a pure function of time:
// rng supplies the noise (nil for none, or when the scenario has Noise off).
// Frame.Time is left zero for the caller to stamp. Steps that are silent or
// unplugged still yield the values the patient has; the Moment says the
// device does not send them.
func (s *Scenario) FrameAt(t time.Duration, rng *rand.Rand) (drivers.Frame, Moment) {
	return newTimeline(s).frame(t, rng)
}
