package session

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// Metric names (drivers catalogue, clinical.md 2).
const (
	metricSpO2      = "spo2"
	metricPulse     = "pulse_rate"
	metricSystolic  = "nibp_systolic"
	metricDiastolic = "nibp_diastolic"
	metricMean      = "nibp_mean"
)

// baselineMetrics are the vitals of the baseline and the end check: pulse
// oximetry and blood pressure before dosing (clinical.md 3). The mean
// pressure is optional: not every monitor reports it, so its absence is not
// a missing baseline; when it has a baseline it is checked like the rest.
var baselineMetrics = []struct {
	name     string
	required bool
	discrete bool // NIBP: one reading per measurement, worth storing at once
}{
	{metricSpO2, true, false},
	{metricPulse, true, false},
	{metricSystolic, true, true},
	{metricDiastolic, true, true},
	{metricMean, false, true},
}

// BaselineMetrics lists the metrics of the baseline and the end check, in
// order.
func BaselineMetrics() []string {
	out := make([]string, len(baselineMetrics))
	for i, bm := range baselineMetrics {
		out[i] = bm.name
	}
	return out
}

// tracked reports whether metric is a baseline metric, and whether it is
// discrete.
func tracked(metric string) (discrete, ok bool) {
	for _, bm := range baselineMetrics {
		if bm.name == metric {
			return bm.discrete, true
		}
	}
	return false, false
}

// Manager keeps the dosing session of one room: at most one active at a
// time. It does no I/O and reads no clock; it is safe for concurrent use
// (the API, the reading pipeline and the ticker call it).
type Manager struct {
	mu     sync.Mutex
	room   string
	p      Protocol
	active *Session
}

// NewManager returns the session keeper of room, with protocol p
// (Protocol.Validate).
func NewManager(room string, p Protocol) (*Manager, error) {
	if room == "" {
		return nil, badInput("room", "empty")
	}
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return &Manager{room: room, p: p}, nil
}

// Start begins a session: route and clinicRef are optional and checked
// (ParseRoute, ParseClinicRef). It fails with ErrActive when one is active.
// Baseline readings count from now on: take them after starting the session
// (a reading from before could be the previous patient's).
func (m *Manager) Start(route, clinicRef string, now time.Time) (Session, []Action, error) {
	r, err := ParseRoute(route)
	if err != nil {
		return Session{}, nil, err
	}
	ref, err := ParseClinicRef(clinicRef)
	if err != nil {
		return Session{}, nil, err
	}
	if now.IsZero() {
		return Session{}, nil, badInput("time", "zero")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.active != nil {
		return Session{}, nil, ErrActive
	}
	s := &Session{
		ID:        NewID(),
		Room:      m.room,
		Route:     r,
		ClinicRef: ref,
		Started:   now,
		latest:    map[string]Measurement{},
	}
	m.active = s
	c := s.clone()
	return c, []Action{SessionChanged{Session: c}}, nil
}

// Dose records a dose at now. The first fixes the baseline from the last
// valid readings since the start (BaselineHigh and BaselineMissing warn of
// it; Baselines hands it to the alarm engine) and schedules the first NIBP at
// now+FirstNIBPAfterDose. Later doses keep the first baseline.
func (m *Manager) Dose(now time.Time) ([]Action, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.active
	if s == nil {
		return nil, ErrNoSession
	}
	if now.Before(s.lastEvent()) {
		return nil, ErrTimeOrder
	}
	if len(s.Doses) >= MaxDoses {
		return nil, ErrTooManyDoses
	}
	var acts []Action
	if !s.Dosed() {
		acts = m.fixBaseline(s, now)
		s.Schedule.begin(now, &m.p)
	} else {
		s.Schedule.advance(now, &m.p)
		s.Schedule.laterDose(now, &m.p)
	}
	s.Doses = append(s.Doses, now)
	return append(acts, SessionChanged{Session: s.clone()}), nil
}

// fixBaseline takes the baseline at the first dose.
func (m *Manager) fixBaseline(s *Session, dose time.Time) []Action {
	s.Baseline = map[string]Measurement{}
	s.BaselineMissing = nil
	for _, bm := range baselineMetrics {
		// A reading stamped after the dose time is not pre-dose.
		if v, ok := s.latest[bm.name]; ok && !v.At.After(dose) && !v.At.Before(s.Started) {
			s.Baseline[bm.name] = v
		} else if bm.required {
			s.BaselineMissing = append(s.BaselineMissing, bm.name)
		}
	}
	var acts []Action
	if len(s.Baseline) > 0 {
		acts = append(acts, baselinesAction(s.Baseline))
	}
	sys, dia := s.Baseline[metricSystolic].Value, s.Baseline[metricDiastolic].Value
	lim := m.p.PredoseBPLimit
	if sys > lim.Systolic || dia > lim.Diastolic {
		s.BaselineWarning = fmt.Sprintf("baseline blood pressure %s mmHg is above the pre-dose limit %s mmHg",
			formatBP(sys, dia), lim)
		acts = append(acts, BaselineHigh{Systolic: sys, Diastolic: dia, Limit: lim})
	}
	if len(s.BaselineMissing) > 0 {
		acts = append(acts, missingAction(s.BaselineMissing))
	}
	return acts
}

// End ends the active session at now and computes its end check (the
// returned Session's Check). Ending before MinObservation is allowed and
// recorded in the check. The actions turn the missed-NIBP advisory off and
// clear the baselines from the alarm engine.
func (m *Manager) End(now time.Time) (Session, []Action, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.active
	if s == nil {
		return Session{}, nil, ErrNoSession
	}
	if now.Before(s.lastEvent()) {
		return Session{}, nil, ErrTimeOrder
	}
	acts := s.Schedule.stop(now, &m.p)
	ck := endCheck(s, now, &m.p)
	s.Check = &ck
	s.Ended = now
	if len(s.Baseline) > 0 {
		acts = append(acts, BaselinesCleared(baselinesAction(s.Baseline)))
	}
	m.active = nil
	c := s.clone()
	return c, append(acts, SessionChanged{Session: c}), nil
}

// Observe takes one reading of the room (any metric; the ones the session
// does not use are ignored). Invalid readings, and values outside the
// metric's possible range, are ignored. The latest valid value of each
// baseline metric is kept for the baseline and the end check; a valid
// systolic reading after the dose satisfies the schedule slot it falls in.
func (m *Manager) Observe(device, metric string, value float64, valid bool, at time.Time) []Action {
	discrete, ok := tracked(metric)
	if !ok || !valid || !usable(metric, value) {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.active
	if s == nil || at.Before(s.Started) {
		return nil
	}
	// The latest is the latest to arrive, not the one with the latest
	// stamp: after the agent's clock steps back, a reading stamped ahead
	// must not hide every newer one.
	s.latest[metric] = Measurement{Value: value, At: at, Device: device}
	// Continuous values (1 Hz) are stored with the next change; a blood
	// pressure is stored at once, so a restart before the dose keeps it.
	changed := discrete
	var acts []Action
	if metric == metricSystolic && s.Dosed() {
		a, c := s.Schedule.reading(at, &m.p)
		acts, changed = a, changed || c
	}
	if changed {
		acts = append(acts, SessionChanged{Session: s.clone()})
	}
	return acts
}

// Tick brings the schedule to now: StartNIBP when a slot falls due, the
// advisory on when one is missed. The agent calls it every second or so.
func (m *Manager) Tick(now time.Time) []Action {
	m.mu.Lock()
	defer m.mu.Unlock()
	s := m.active
	if s == nil || !s.Dosed() {
		return nil
	}
	changed := s.Schedule.advance(now, &m.p)
	acts, c := s.Schedule.due(now)
	if changed || c {
		acts = append(acts, SessionChanged{Session: s.clone()})
	}
	return acts
}

// Active returns a copy of the active session.
func (m *Manager) Active() (Session, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.active == nil {
		return Session{}, false
	}
	return m.active.clone(), true
}

// NextNIBPDue returns when the next scheduled reading is due (for
// vigil_next_nibp_due_seconds); false before the first dose and without an
// active session. A missed slot's due time is in the past.
func (m *Manager) NextNIBPDue() (time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.active == nil || m.active.Schedule.NextDue.IsZero() {
		return time.Time{}, false
	}
	return m.active.Schedule.NextDue, true
}

// Elapsed returns the time since the active session started (for
// vigil_session_elapsed_seconds); 0 without one.
func (m *Manager) Elapsed(now time.Time) time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.active == nil || now.Before(m.active.Started) {
		return 0
	}
	return now.Sub(m.active.Started)
}

// Restore continues a session after an agent restart, from its stored form
// (UnmarshalStored). The actions hand the baselines to the (new) alarm
// engine again and re-raise the missed-NIBP advisory if it was on; Tick then
// continues the schedule.
func (m *Manager) Restore(s Session) ([]Action, error) {
	if err := s.validate(); err != nil {
		return nil, err
	}
	if !s.Active() {
		return nil, ErrEnded
	}
	if s.Room != m.room {
		return nil, ErrWrongRoom
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.active != nil {
		return nil, ErrActive
	}
	c := s.clone()
	if c.latest == nil {
		c.latest = map[string]Measurement{}
	}
	m.active = &c
	var acts []Action
	if c.Dosed() && len(c.Baseline) > 0 {
		acts = append(acts, baselinesAction(c.Baseline))
	}
	if c.Schedule.AdvisoryOn {
		acts = append(acts, MissedNIBP{Due: c.Schedule.MissingSince, On: true})
	}
	return append(acts, SessionChanged{Session: c.clone()}), nil
}

// lastEvent is the time of the session's start or latest dose.
func (s *Session) lastEvent() time.Time {
	if s.Dosed() {
		return s.Doses[len(s.Doses)-1]
	}
	return s.Started
}

// IsInput reports whether err is a problem with the caller's input (an
// *InputError), as opposed to the session's state.
func IsInput(err error) bool {
	var ie *InputError
	return errors.As(err, &ie)
}
