package alarm

import (
	"errors"
	"strconv"
	"strings"
	"time"
)

// This file is the whole life of ONE alarm (one rule on one device, or one
// technical condition of one device), after IEC 60601-1-8 as clinical.md
// section 1 summarises it. It does no I/O and never reads a clock: every
// method takes the time it acts at.
//
//	state         input                                  next          event
//	inactive      Met                                    pending       -      (Delay 0: active, start)
//	inactive      Acknowledge                            inactive      -      ErrNotAlarming
//	pending       Met for Delay (reading or Tick)        active        start  (new EventID)
//	pending       Marginal or Clear                      inactive      -
//	pending       Unknown                                pending       -      (does not confirm)
//	pending       Acknowledge                            pending       -      ErrNotAlarming
//	active        Met, Marginal, Unknown                 active        -      (the last two restart the clear delay)
//	active        Clear for ClearDelay, latching         latched       update
//	active        Clear for ClearDelay, not latching     inactive      end    (state resolved)
//	active        Acknowledge                            acknowledged  update
//	acknowledged  Clear for ClearDelay                   inactive      end    (never latches)
//	acknowledged  Acknowledge                            acknowledged  -      (idempotent)
//	latched       Clear, Marginal, Unknown               latched       -
//	latched       Met                                    active        update (same occurrence)
//	latched       Acknowledge                            inactive      end
//	raised        priority change (SetPriority, HoldBack)  unchanged   update (a rise: acknowledged -> active)
//
// "resolved" is the state an occurrence's end event carries; the alarm itself
// is inactive again at once, so the next occurrence can start, with a new
// EventID, as soon as its condition is met again.

// Level is what the latest observation says of an alarm's condition. The
// rule (rules.go) turns a value into a Level; a technical condition is Met or
// Clear.
type Level uint8

const (
	// LevelUnknown: no usable value (invalid reading, sensor off, no
	// baseline). It proves nothing: it neither raises nor clears an alarm,
	// does not confirm a pending one, and interrupts a clear delay.
	LevelUnknown Level = iota
	// LevelClear: inside the limit by at least the clear margin.
	LevelClear
	// LevelMarginal: not violating, but not inside by the clear margin (the
	// hysteresis band, clinical.md 5). A raised alarm stays raised; a pending
	// one is dropped.
	LevelMarginal
	// LevelMet: the alarm condition holds.
	LevelMet
)

func (l Level) String() string {
	switch l {
	case LevelUnknown:
		return "unknown"
	case LevelClear:
		return "clear"
	case LevelMarginal:
		return "marginal"
	case LevelMet:
		return "met"
	}
	return "invalid"
}

// ErrNotAlarming is returned when acknowledging an alarm that is inactive or
// still pending: there is nothing to acknowledge.
var ErrNotAlarming = errors.New("alarm is not alarming")

// HeldBackNote ends the Text of an event whose priority is held one step
// below its rule's because the device reports low signal quality
// (clinical.md 4 and 5). Use IsHeldBack to test for it.
const HeldBackNote = "held back: low signal quality"

// IsHeldBack reports whether ev signals below its rule's priority because of
// low signal quality. (Event has no field for it; see the package README.)
func IsHeldBack(ev Event) bool { return strings.HasSuffix(ev.Text, HeldBackNote) }

// AlarmConfig is what an Alarm is built from.
type AlarmConfig struct {
	ID       string // the AlarmID, stable for a rule on a device
	Kind     Kind
	Priority Priority
	// Delay is the alarm condition delay: how long the condition must hold
	// before the alarm is raised (clinical.md 1 and 4).
	Delay time.Duration
	// ClearDelay is how long the value must stay clear (inside the limit by
	// the clear margin) before the condition counts as ended (clinical.md 5).
	ClearDelay time.Duration
	// Latching alarms keep signalling after their condition ends until
	// acknowledged (clinical.md 1).
	Latching bool
	// LowerIsWorse says which way the reported value worsens: true for a
	// low limit (the event reports the lowest value of the occurrence), false
	// for a high limit (the highest).
	LowerIsWorse bool
	// HasValue is false for technical alarms, whose events carry no value.
	HasValue bool
	// LimitText describes the limit for people, e.g. "at or below 90 %".
	LimitText string
	// Event holds the fields every event of this alarm repeats: Metric, Unit,
	// Limit, Condition, Site, Room, Device, Session.
	Event Event
}

// Alarm is the state machine of one alarm. It is not safe for concurrent
// use; the Engine serialises calls.
type Alarm struct {
	cfg        AlarmConfig
	newEventID func() string

	state State
	level Level // of the latest observation

	eventID  string
	priority Priority // the priority the current occurrence signals at
	onset    time.Time

	clearing   bool // the value has been clear since clearSince
	clearSince time.Time

	worst    float64 // the worst violating value of this occurrence
	hasWorst bool

	held       bool // escalation is being held back (low signal quality)
	heldBelow  bool // this occurrence signals below cfg.Priority because of held
	ackBy      string
	ackHow     string
	lastEvent  Event
	hasEmitted bool
}

// NewAlarm builds an inactive alarm. newEventID gives each occurrence its
// EventID; it must not be nil.
func NewAlarm(cfg AlarmConfig, newEventID func() string) *Alarm {
	cfg.Event.AlarmID = cfg.ID
	cfg.Event.Kind = cfg.Kind
	return &Alarm{cfg: cfg, newEventID: newEventID, state: Inactive}
}

// ID is the AlarmID.
func (a *Alarm) ID() string { return a.cfg.ID }

// State is where the alarm stands (never Resolved: see the diagram).
func (a *Alarm) State() State { return a.state }

// occurring reports whether an occurrence has been raised and not ended.
func (a *Alarm) occurring() bool {
	return a.state == Active || a.state == Acknowledged || a.state == Latched
}

// Current returns the alarm's latest event with its present state, for a
// list of alarms in force; ok is false when no occurrence is raised.
func (a *Alarm) Current() (ev Event, ok bool) {
	if !a.occurring() || !a.hasEmitted {
		return Event{}, false
	}
	return a.lastEvent, true
}

// Observe feeds one observation of the condition at time now and returns the
// events the change emits (nil for none). value is the measured value, used
// when HasValue and the level is not LevelUnknown.
func (a *Alarm) Observe(level Level, value float64, now time.Time) []Event {
	a.level = level
	if level == LevelClear {
		if !a.clearing {
			a.clearing, a.clearSince = true, now
		}
	} else {
		// Recovery must be shown without a break: a marginal or unknown
		// value restarts the clear delay.
		a.clearing = false
	}
	if level == LevelMet && a.cfg.HasValue {
		a.noteViolation(value)
	}
	return a.advance(now)
}

// Tick lets time pass without a new observation: the latest level stands,
// so a pending alarm can become active and a clear delay can end.
func (a *Alarm) Tick(now time.Time) []Event { return a.advance(now) }

// NextDue is when a Tick would next change the alarm without a new
// observation: the end of a pending alarm's delay, or of an active one's
// clear delay. ok is false when only an observation can change it.
func (a *Alarm) NextDue() (due time.Time, ok bool) {
	switch a.state {
	case Pending:
		if a.level == LevelMet {
			return a.onset.Add(a.cfg.Delay), true
		}
	case Active, Acknowledged:
		if a.clearing {
			return a.clearSince.Add(a.cfg.ClearDelay), true
		}
	}
	return time.Time{}, false
}

func (a *Alarm) noteViolation(v float64) {
	if !a.hasWorst || (a.cfg.LowerIsWorse && v < a.worst) || (!a.cfg.LowerIsWorse && v > a.worst) {
		a.worst, a.hasWorst = v, true
	}
}

// advance applies the latest level at time now.
func (a *Alarm) advance(now time.Time) []Event {
	switch a.state {
	case Inactive:
		if a.level != LevelMet {
			return nil
		}
		a.state, a.onset = Pending, now
		a.ackBy, a.ackHow = "", ""
		return a.promote(now)
	case Pending:
		switch a.level {
		case LevelClear, LevelMarginal:
			// Not held for the whole delay: nothing was signalled, nothing
			// to end (Prometheus drops a pending alert the same way).
			a.state, a.hasWorst = Inactive, false
			return nil
		case LevelMet:
			return a.promote(now)
		}
		// LevelUnknown: no evidence either way; stay pending, and wait for
		// a value that confirms the condition before raising it.
		return nil
	case Active:
		if !a.clearedBy(now) {
			return nil
		}
		if a.cfg.Latching {
			a.state = Latched
			return a.emit(PhaseUpdate, now)
		}
		return a.end(now)
	case Acknowledged:
		// An acknowledged alarm does not latch: someone has already seen it.
		if a.clearedBy(now) {
			return a.end(now)
		}
		return nil
	case Latched:
		if a.level == LevelMet {
			// The condition is back before anyone acknowledged it: the same
			// occurrence signals again.
			a.state = Active
			return a.emit(PhaseUpdate, now)
		}
		return nil
	}
	return nil
}

// promote raises a pending alarm once its condition has held for the delay.
func (a *Alarm) promote(now time.Time) []Event {
	if now.Before(a.onset) {
		// The clock stepped back: restart the delay from now, so the alarm
		// is late by at most one delay instead of stalled until the clock
		// catches up.
		a.onset = now
	}
	if now.Sub(a.onset) < a.cfg.Delay {
		return nil
	}
	a.state = Active
	a.eventID = a.newEventID()
	a.priority, a.heldBelow = a.target(), false
	if a.priority < a.cfg.Priority {
		a.heldBelow = true
	}
	return a.emit(PhaseStart, now)
}

// clearedBy reports whether the value has been clear for the clear delay.
func (a *Alarm) clearedBy(now time.Time) bool {
	if !a.clearing {
		return false
	}
	if now.Before(a.clearSince) {
		a.clearSince = now // clock stepped back, as in promote
	}
	return now.Sub(a.clearSince) >= a.cfg.ClearDelay
}

// target is the priority an occurrence raised now would signal at: one step
// lower for a high alarm whose escalation is held back (clinical.md 4: low
// signal quality suppresses the escalation of SpO2 alarms).
func (a *Alarm) target() Priority {
	if a.held && a.cfg.Priority == High {
		return Medium
	}
	return a.cfg.Priority
}

// Acknowledge records that someone (by, a staff or channel name, never a
// patient) took the alarm through how (a channel, the web page). Active
// becomes acknowledged: signalling stops until the condition clears. Latched
// ends the occurrence. Acknowledging an acknowledged alarm changes nothing
// (two channels may report the same acknowledgement). Inactive and pending
// alarms return ErrNotAlarming.
func (a *Alarm) Acknowledge(by, how string, now time.Time) ([]Event, error) {
	switch a.state {
	case Active:
		a.state, a.ackBy, a.ackHow = Acknowledged, by, how
		return a.emit(PhaseUpdate, now), nil
	case Latched:
		a.ackBy, a.ackHow = by, how
		return a.end(now), nil
	case Acknowledged:
		return nil, nil
	}
	return nil, ErrNotAlarming
}

// HoldBack sets whether this alarm's escalation is held back. Holding back
// only affects occurrences raised from now on: an alarm already signalling
// high is never lowered, since someone may already be on the way. Releasing
// the hold raises a held occurrence to its rule's priority (an update; an
// acknowledged one signals again, as a higher-priority condition must).
func (a *Alarm) HoldBack(held bool, now time.Time) []Event {
	a.held = held
	if held || !a.occurring() || !a.heldBelow {
		return nil
	}
	a.heldBelow = false
	return a.moveTo(a.cfg.Priority, now)
}

// SetPriority changes the configured priority (a technical condition whose
// urgency the caller re-assesses, such as a device lost during a session).
// A raised occurrence follows at once with an update; a higher priority makes
// an acknowledged alarm signal again.
func (a *Alarm) SetPriority(p Priority, now time.Time) []Event {
	if p == a.cfg.Priority {
		return nil
	}
	a.cfg.Priority = p
	if !a.occurring() {
		return nil
	}
	t := a.target()
	a.heldBelow = t < p
	if t == a.priority {
		return nil
	}
	return a.moveTo(t, now)
}

// moveTo moves the occurrence to priority p and reports it; a rise makes
// an acknowledged alarm signal again.
func (a *Alarm) moveTo(p Priority, now time.Time) []Event {
	if p == a.priority {
		return nil
	}
	if p > a.priority && a.state == Acknowledged {
		a.state = Active
	}
	a.priority = p
	return a.emit(PhaseUpdate, now)
}

// SetLimit changes the limit the events report (a new baseline under a
// rise-over-baseline rule).
func (a *Alarm) SetLimit(limit float64, text string) {
	a.cfg.Event.Limit = &limit
	a.cfg.LimitText = text
}

// SetSession sets the session id events carry (nil outside a session).
func (a *Alarm) SetSession(session *string) {
	a.cfg.Event.Session = session
	a.lastEvent.Session = session
}

// end emits the occurrence's end and makes the alarm inactive.
func (a *Alarm) end(now time.Time) []Event {
	a.state = Resolved
	evs := a.emit(PhaseEnd, now)
	a.state, a.hasWorst, a.heldBelow = Inactive, false, false
	return evs
}

func (a *Alarm) emit(phase Phase, now time.Time) []Event {
	ev := a.cfg.Event
	ev.EventID = a.eventID
	ev.Phase = phase
	ev.Priority = a.priority
	ev.State = a.state
	ev.Onset = a.onset
	ev.Sent = now
	if a.cfg.HasValue && a.hasWorst {
		v := a.worst
		ev.Value = &v
	}
	ev.Text = a.text(&ev)
	a.lastEvent, a.hasEmitted = ev, true
	return []Event{ev}
}

// text is the one line for people: the priority marker first, so priority
// shows without colour or sound (clinical.md 1), then what, where and the
// state. No patient identifier: the room and device only.
func (a *Alarm) text(ev *Event) string {
	var b strings.Builder
	b.WriteString(ev.Priority.Marker())
	b.WriteByte(' ')
	if a.cfg.Kind == Technical {
		b.WriteString(ev.Condition)
	} else {
		b.WriteString(ev.Metric)
		if ev.Value != nil {
			b.WriteByte(' ')
			b.WriteString(strconv.FormatFloat(*ev.Value, 'f', -1, 64))
			if ev.Unit != "" {
				b.WriteByte(' ')
				b.WriteString(ev.Unit)
			}
		}
		if a.cfg.LimitText != "" {
			b.WriteString(" (limit: ")
			b.WriteString(a.cfg.LimitText)
			b.WriteByte(')')
		}
	}
	if ev.Device != "" {
		b.WriteString(", ")
		b.WriteString(ev.Device)
	}
	if ev.Room != "" {
		b.WriteString(", room ")
		b.WriteString(ev.Room)
	}
	b.WriteString(": ")
	switch ev.State {
	case Latched:
		b.WriteString("latched, condition ended; acknowledge to clear")
	case Acknowledged:
		b.WriteString("acknowledged")
	default:
		b.WriteString(string(ev.State))
	}
	if (ev.State == Acknowledged || ev.State == Resolved) && a.ackBy != "" {
		b.WriteString(" by ")
		b.WriteString(a.ackBy)
		if a.ackHow != "" {
			b.WriteString(" via ")
			b.WriteString(a.ackHow)
		}
	}
	if a.heldBelow && ev.State != Resolved {
		b.WriteString("; ")
		b.WriteString(HeldBackNote)
	}
	return b.String()
}
