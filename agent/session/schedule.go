package session

import (
	"slices"
	"time"
)

// Schedule is the state of the scheduled blood-pressure readings after the
// dose (clinical.md 3: BP about 40 min after the dose, then at regular
// intervals; a missed reading raises an advisory).
//
// The readings are slots. The first is due FirstNIBPAfterDose after the first
// dose. A slot is satisfied by a valid systolic reading from NIBPGrace before
// its due time on; the next slot is then due NIBPInterval after that reading.
// A slot without a reading NIBPGrace after its due time is missed: it is
// recorded and the advisory goes on. It stays open, so a late reading still
// satisfies it and turns the advisory off; when NIBPInterval passes without
// one, the next slot (due NIBPInterval after the missed one) takes its
// place, with a new StartNIBP.
type Schedule struct {
	// NextDue is the due time of the open slot; zero before the first dose
	// and after the end.
	NextDue time.Time `json:"next_due,omitzero"`
	// StartSent: StartNIBP was returned for the open slot.
	StartSent bool `json:"start_sent,omitempty"`
	// Overdue: the open slot is past NextDue+NIBPGrace (and so in Missed).
	Overdue bool `json:"overdue,omitempty"`
	// MissingSince is the due time of the first slot missed since the last
	// scheduled reading; zero when none is.
	MissingSince time.Time `json:"missing_since,omitzero"`
	// AdvisoryOn: MissedNIBP{On: true} was returned and not yet turned off.
	AdvisoryOn bool `json:"advisory_on,omitempty"`
	// Missed holds the due times of missed slots (the first
	// maxScheduleRecords); MissedCount counts them all.
	Missed      []time.Time `json:"missed,omitempty"`
	MissedCount int         `json:"missed_count"`
	// Taken holds the readings that satisfied slots (the first
	// maxScheduleRecords).
	Taken []ScheduledReading `json:"taken,omitempty"`
}

// ScheduledReading is a reading that satisfied a slot.
type ScheduledReading struct {
	Due  time.Time `json:"due"`
	At   time.Time `json:"at"`
	Late bool      `json:"late,omitempty"` // after Due+NIBPGrace: the slot was missed first
}

// maxScheduleRecords bounds the recorded slots of one session: 256 slots of
// 15 min are 64 hours, far past any session; a session left open for weeks
// still has a bounded record (MissedCount keeps counting).
const maxScheduleRecords = 256

func (sc Schedule) clone() Schedule {
	sc.Missed = slices.Clone(sc.Missed)
	sc.Taken = slices.Clone(sc.Taken)
	return sc
}

// begin opens the first slot after the first dose.
func (sc *Schedule) begin(dose time.Time, p *Protocol) {
	sc.NextDue = dose.Add(p.FirstNIBPAfterDose)
	sc.StartSent, sc.Overdue = false, false
}

// laterDose moves the open slot earlier when a later dose needs its own
// reading sooner than the schedule gives (only with an NIBPInterval longer
// than FirstNIBPAfterDose). An overdue slot is already in the past.
func (sc *Schedule) laterDose(dose time.Time, p *Protocol) bool {
	due := dose.Add(p.FirstNIBPAfterDose)
	if sc.Overdue || !due.Before(sc.NextDue) {
		return false
	}
	sc.NextDue = due
	sc.StartSent = false
	return true
}

// markMissed records the open slot as missed.
func (sc *Schedule) markMissed() {
	sc.recordMissed(sc.NextDue)
	sc.Overdue = true
}

func (sc *Schedule) recordMissed(due time.Time) {
	if len(sc.Missed) < maxScheduleRecords {
		sc.Missed = append(sc.Missed, due)
	}
	sc.MissedCount++
	if sc.MissingSince.IsZero() {
		sc.MissingSince = due
	}
}

// advance brings the schedule to now: slots whose time has passed without a
// reading are recorded as missed. It never moves back, so a time older than
// one already seen changes nothing. It reports whether anything changed.
func (sc *Schedule) advance(now time.Time, p *Protocol) bool {
	if sc.NextDue.IsZero() {
		return false
	}
	changed := false
	// The next slot's window opens NIBPGrace before its due time: from then
	// on a reading belongs to it, and the open slot is lost.
	if next := sc.NextDue.Add(p.NIBPInterval - p.NIBPGrace); !now.Before(next) {
		if !sc.Overdue {
			sc.recordMissed(sc.NextDue)
		}
		// Counted, not looped: an agent down for days, or a clock jump,
		// costs at most maxScheduleRecords appends.
		skipped := int64(now.Sub(next)/p.NIBPInterval) + 1
		for i := int64(1); i < skipped; i++ {
			if len(sc.Missed) >= maxScheduleRecords {
				sc.MissedCount += int(skipped - i)
				break
			}
			sc.recordMissed(sc.NextDue.Add(time.Duration(i) * p.NIBPInterval))
		}
		sc.NextDue = sc.NextDue.Add(time.Duration(skipped) * p.NIBPInterval)
		sc.StartSent, sc.Overdue = false, false
		changed = true
	}
	if !sc.Overdue && now.After(sc.NextDue.Add(p.NIBPGrace)) {
		sc.markMissed()
		changed = true
	}
	return changed
}

// due returns the actions now calls for: StartNIBP once per slot at its due
// time, and the advisory on once a slot is missed. It reports whether
// anything changed.
func (sc *Schedule) due(now time.Time) ([]Action, bool) {
	if sc.NextDue.IsZero() {
		return nil, false
	}
	var acts []Action
	if !sc.StartSent && !now.Before(sc.NextDue) {
		sc.StartSent = true
		acts = append(acts, StartNIBP{Due: sc.NextDue})
	}
	if !sc.MissingSince.IsZero() && !sc.AdvisoryOn {
		sc.AdvisoryOn = true
		acts = append(acts, MissedNIBP{Due: sc.MissingSince, On: true})
	}
	return acts, len(acts) > 0
}

// reading applies a valid systolic reading taken at at: when it falls in the
// open slot's window, the slot is satisfied, the advisory (if on) goes off,
// and the next slot is due NIBPInterval later.
func (sc *Schedule) reading(at time.Time, p *Protocol) ([]Action, bool) {
	if sc.NextDue.IsZero() {
		return nil, false
	}
	changed := sc.advance(at, p)
	if at.Before(sc.NextDue.Add(-p.NIBPGrace)) {
		// Before the open slot's window: an extra reading, kept as a value
		// but not a scheduled one.
		return nil, changed
	}
	if len(sc.Taken) < maxScheduleRecords {
		sc.Taken = append(sc.Taken, ScheduledReading{Due: sc.NextDue, At: at, Late: sc.Overdue})
	}
	var acts []Action
	if sc.AdvisoryOn {
		acts = append(acts, MissedNIBP{Due: sc.MissingSince, On: false})
	}
	sc.AdvisoryOn = false
	sc.MissingSince = time.Time{}
	sc.NextDue = at.Add(p.NIBPInterval)
	sc.StartSent, sc.Overdue = false, false
	return acts, true
}

// stop closes the schedule at the end of the session, turning the advisory
// off if it is on.
func (sc *Schedule) stop(now time.Time, p *Protocol) []Action {
	sc.advance(now, p)
	var acts []Action
	if sc.AdvisoryOn {
		acts = append(acts, MissedNIBP{Due: sc.MissingSince, On: false})
	}
	sc.AdvisoryOn = false
	sc.MissingSince = time.Time{}
	sc.NextDue = time.Time{}
	sc.StartSent, sc.Overdue = false, false
	return acts
}
