package session

import (
	"maps"
	"slices"
	"time"
)

// Action is something the agent must do for the session. Manager methods
// return them in the order they are to be carried out; README.md says how the
// agent executes each.
type Action interface{ sessionAction() }

// StartNIBP: a scheduled blood-pressure reading is due now. The agent starts
// a measurement on the room's NIBP devices that accept commands, and
// otherwise sends staff a reminder.
type StartNIBP struct {
	Due time.Time
}

// MissedNIBP turns the "scheduled NIBP missed" advisory alarm on (a scheduled
// reading is later than NIBPGrace) or off (a reading arrived, or the session
// ended). Due is the due time of the first slot missed since the last
// scheduled reading, the same in the On and the Off action.
type MissedNIBP struct {
	Due time.Time
	On  bool
}

// BaselineHigh warns, at the first dose, that the baseline blood pressure is
// above the pre-dose limit (clinical.md 3). A value not measured is 0.
type BaselineHigh struct {
	Systolic, Diastolic float64 // mmHg
	Limit               BP
}

// BaselineMissing warns, at the first dose, that required baseline metrics
// had no valid reading: rise-over-baseline alarms for them cannot work.
type BaselineMissing struct {
	Metrics []string
}

// Baselines hands the pre-dose baselines to the alarm engine's
// rise-over-baseline rules: engine.SetBaseline(v.Device, metric, v.Value) for
// each entry.
type Baselines struct {
	Values map[string]Measurement
}

// BaselinesCleared: the session ended; the agent calls
// engine.ClearBaseline(v.Device, metric) for each entry.
type BaselinesCleared struct {
	Values map[string]Measurement
}

// SessionChanged: the session changed; the agent stores it (StoredJSON) and
// publishes it (json.Marshal, the public form) retained on
// vigil/{site}/{room}/session.
type SessionChanged struct {
	Session Session
}

func (StartNIBP) sessionAction()        {}
func (MissedNIBP) sessionAction()       {}
func (BaselineHigh) sessionAction()     {}
func (BaselineMissing) sessionAction()  {}
func (Baselines) sessionAction()        {}
func (BaselinesCleared) sessionAction() {}
func (SessionChanged) sessionAction()   {}

func baselinesAction(b map[string]Measurement) Baselines {
	return Baselines{Values: maps.Clone(b)}
}

func missingAction(m []string) BaselineMissing {
	return BaselineMissing{Metrics: slices.Clone(m)}
}
