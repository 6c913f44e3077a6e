package alarm

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/vigil-monitor/vigil/agent/devstatus"
	"github.com/vigil-monitor/vigil/drivers"
)

// DefaultMaxPause bounds a notification pause: IEC 60601-1-8 pauses are
// time-limited, typically 1-2 min (clinical.md 1).
const DefaultMaxPause = 2 * time.Minute

// holdBackMetric is the metric whose high alarms low signal quality holds
// back (clinical.md 4: "suppresses physiological SpO2 alarms' escalation").
const holdBackMetric = "spo2"

// lowSignalQuality is the technical condition that holds back escalation;
// its reading flags are the ones the pipeline maps to it.
const (
	lowSignalQuality = string(devstatus.LowSignalQuality)
	lowQualityFlags  = drivers.FlagLowPerfusion | drivers.FlagLowSignalQuality | drivers.FlagArtifact
	// A reading with any of these says nothing reliable of the patient: it
	// neither raises nor clears a physiological alarm (the technical alarm
	// for the condition does the signalling).
	unusableFlags = drivers.FlagSensorOff | drivers.FlagNoSensor | drivers.FlagSensorFault |
		drivers.FlagSearching | drivers.FlagOutOfRange | drivers.FlagCuffError
)

// DefaultTechnicalDelays are the condition delays of technical alarms by
// condition: clinical.md 4 gives 10 s for sensor off, no finger and cuff
// error. Other conditions alarm at once (their callers already wait, as
// silence detection does).
func DefaultTechnicalDelays() map[string]time.Duration {
	return map[string]time.Duration{
		string(devstatus.SensorOff): 10 * time.Second,
		string(devstatus.CuffError): 10 * time.Second,
		// The agent's broker connection: a broker restart or a reconnect
		// after a network blip takes seconds and loses nothing (readings
		// wait in the publisher); half a minute without it is a fault.
		"mqtt-disconnected": 30 * time.Second,
	}
}

// Options configure an Engine.
type Options struct {
	Site, Room string
	// Now is the clock, read once at construction to seed the default event
	// ids; nil means time.Now. Every other method takes its time.
	Now func() time.Time
	// IDs gives each alarm occurrence its EventID; nil means a counter
	// prefixed with the construction time, unique across restarts.
	IDs func() string
	// MaxPause bounds Pause; 0 means DefaultMaxPause.
	MaxPause time.Duration
	// TechnicalDelays by condition; nil means DefaultTechnicalDelays.
	TechnicalDelays map[string]time.Duration
	// OffOutsideSession are technical conditions the configuration turned
	// off (clock_check: false). They stay off only while no dosing session
	// is active: technical alarms cannot be disabled for a room with an
	// active session (issue 4), so SetSession raises them when the
	// condition is on.
	OffOutsideSession []string
}

// ErrUnknownAlarm is returned when acknowledging an AlarmID the engine does
// not know.
var ErrUnknownAlarm = errors.New("unknown alarm")

// Engine evaluates readings against rules and technical conditions, and
// keeps every alarm's state. It does no I/O: callers pass times and deliver
// the events it returns. It is safe for concurrent use.
type Engine struct {
	mu sync.Mutex

	site, room string
	ids        func() string
	maxPause   time.Duration
	techDelays map[string]time.Duration

	rules     []Rule
	units     []string         // per rule, the metric's UCUM unit
	byMetric  map[string][]int // rule indexes by metric
	ruleNames map[string]bool

	ruleAlarms map[ruleKey]*ruleAlarm
	technical  map[techKey]*Alarm
	techOn     map[techKey]techReport // every technical condition's latest report
	offOutside map[string]bool        // Options.OffOutsideSession
	byID       map[string]*Alarm
	routes     map[string]string // AlarmID -> rule route
	order      []*Alarm          // creation order, for deterministic Tick output
	devices    map[string]*deviceState
	session    *string

	pauseUntil time.Time
	paused     map[string]Priority // EventID -> priority when the pause began
}

type ruleKey struct {
	rule   int
	device string
}

type techKey struct {
	device, condition string
}

// techReport is a technical condition as last reported to SetTechnical.
type techReport struct {
	on       bool
	priority Priority
}

type ruleAlarm struct {
	alarm *Alarm
	rule  *Rule
	sat   *satSecondsCounter
}

type deviceState struct {
	baselines    map[string]float64
	lowReading   bool     // the latest SpO2 reading carried a low-quality flag
	lowTechnical bool     // the low-signal-quality technical condition is on
	held         bool     // escalation held back (either of the above)
	holdable     []*Alarm // the device's SpO2 rule alarms
}

// NewEngine validates rules and builds an engine with no alarm raised.
func NewEngine(rules []Rule, opts Options) (*Engine, error) {
	if err := ValidateRules(rules); err != nil {
		return nil, err
	}
	if opts.MaxPause < 0 {
		return nil, fmt.Errorf("alarm engine: MaxPause must not be negative, got %v", opts.MaxPause)
	}
	delays := opts.TechnicalDelays
	if delays == nil {
		delays = DefaultTechnicalDelays()
	}
	techDelays := make(map[string]time.Duration, len(delays))
	for c, d := range delays {
		if d < 0 {
			return nil, fmt.Errorf("alarm engine: technical delay of %q must not be negative, got %v", c, d)
		}
		techDelays[c] = d
	}
	e := &Engine{
		site: opts.Site, room: opts.Room,
		ids:        opts.IDs,
		maxPause:   opts.MaxPause,
		techDelays: techDelays,
		rules:      cloneRules(rules),
		byMetric:   make(map[string][]int),
		ruleNames:  make(map[string]bool, len(rules)),
		ruleAlarms: make(map[ruleKey]*ruleAlarm),
		technical:  make(map[techKey]*Alarm),
		techOn:     make(map[techKey]techReport),
		offOutside: make(map[string]bool),
		byID:       make(map[string]*Alarm),
		routes:     make(map[string]string),
		devices:    make(map[string]*deviceState),
	}
	if e.maxPause == 0 {
		e.maxPause = DefaultMaxPause
	}
	for _, c := range opts.OffOutsideSession {
		e.offOutside[c] = true
	}
	if e.ids == nil {
		now := time.Now
		if opts.Now != nil {
			now = opts.Now
		}
		prefix := strconv.FormatInt(now().UnixNano(), 36) + "-"
		var n uint64
		e.ids = func() string { n++; return prefix + strconv.FormatUint(n, 10) }
	}
	e.units = make([]string, len(e.rules))
	for i := range e.rules {
		r := &e.rules[i]
		id, _ := drivers.MetricByName(r.Metric) // validated above
		e.units[i] = id.Info().Unit
		e.byMetric[r.Metric] = append(e.byMetric[r.Metric], i)
		e.ruleNames[r.Name] = true
	}
	return e, nil
}

// Rules returns a copy of the rules in force, so they can be shown
// (clinical.md: Vigil must show which values are in force).
func (e *Engine) Rules() []Rule {
	return cloneRules(e.rules)
}

func (e *Engine) device(name string) *deviceState {
	d, ok := e.devices[name]
	if !ok {
		d = &deviceState{baselines: make(map[string]float64)}
		e.devices[name] = d
	}
	return d
}

// Observe evaluates one reading of metric from device at time at against
// every rule on the metric and returns the events it causes (nil for none).
// A reading that is not valid, not finite, or flagged sensor off, no sensor,
// sensor fault, searching, out of range or cuff error proves nothing: it
// neither raises nor clears an alarm. Low perfusion, low signal quality or
// artefact on an SpO2 reading holds back the escalation of the device's
// high SpO2 alarms (clinical.md 4 and 5).
func (e *Engine) Observe(device, metric string, value float64, valid bool, flags drivers.Flags, at time.Time) []Event {
	idx, ok := e.byMetric[metric]
	if !ok {
		return nil
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	dev := e.device(device)
	var evs []Event
	if metric == holdBackMetric {
		dev.lowReading = flags&lowQualityFlags != 0
		evs = e.applyHold(dev, at, evs)
	}
	usable := valid && !math.IsNaN(value) && !math.IsInf(value, 0) && flags&unusableFlags == 0
	for _, i := range idx {
		ra := e.ruleAlarm(i, device, dev, at)
		lvl := LevelUnknown
		if usable {
			lvl = ra.level(value, dev, at)
		}
		evs = appendEvents(evs, ra.alarm.Observe(lvl, value, at))
	}
	return evs
}

// level evaluates one usable value against the rule.
func (ra *ruleAlarm) level(v float64, dev *deviceState, at time.Time) Level {
	r := ra.rule
	if r.RiseOverBaseline != nil {
		b, ok := dev.baselines[r.Metric]
		if !ok {
			return LevelUnknown
		}
		return r.level(v, b)
	}
	if ra.sat != nil {
		if ra.sat.observe(v, at) {
			return LevelMet
		}
		if v <= *r.AtOrBelow {
			// Below the limit but within the budget: not yet an alarm,
			// and no sign of recovery either.
			return LevelMarginal
		}
	}
	return r.level(v, 0)
}

func (e *Engine) ruleAlarm(i int, device string, dev *deviceState, at time.Time) *ruleAlarm {
	k := ruleKey{rule: i, device: device}
	if ra, ok := e.ruleAlarms[k]; ok {
		return ra
	}
	r := &e.rules[i]
	cfg := AlarmConfig{
		ID:           r.Name + "/" + device,
		Kind:         Physiological,
		Priority:     r.Priority,
		Delay:        r.Delay,
		ClearDelay:   r.ClearDelay,
		Latching:     r.Latches(),
		LowerIsWorse: r.AtOrBelow != nil,
		HasValue:     true,
		Event: Event{
			Metric: r.Metric, Unit: e.units[i], Condition: r.Condition(),
			Site: e.site, Room: e.room, Device: device, Session: e.session,
		},
	}
	switch {
	case r.AtOrBelow != nil:
		cfg.Event.Limit = limit(*r.AtOrBelow)
		cfg.LimitText = r.limitText(e.units[i], 0)
	case r.AtOrAbove != nil:
		cfg.Event.Limit = limit(*r.AtOrAbove)
		cfg.LimitText = r.limitText(e.units[i], 0)
	}
	ra := &ruleAlarm{alarm: NewAlarm(cfg, e.ids), rule: r}
	if b, ok := dev.baselines[r.Metric]; ok && r.RiseOverBaseline != nil {
		ra.alarm.SetLimit(b+*r.RiseOverBaseline, r.limitText(e.units[i], b))
	}
	if r.SatSeconds != nil {
		ra.sat = &satSecondsCounter{cfg: *r.SatSeconds, limit: *r.AtOrBelow}
	}
	if r.Metric == holdBackMetric {
		dev.holdable = append(dev.holdable, ra.alarm)
		ra.alarm.HoldBack(dev.held, at) // not occurring yet: no events
	}
	e.ruleAlarms[k] = ra
	e.add(ra.alarm, r.Route)
	return ra
}

func (e *Engine) add(a *Alarm, route string) {
	e.byID[a.ID()] = a
	e.routes[a.ID()] = route
	e.order = append(e.order, a)
}

// applyHold brings the device's SpO2 alarms in line with its signal quality.
func (e *Engine) applyHold(dev *deviceState, at time.Time, evs []Event) []Event {
	held := dev.lowReading || dev.lowTechnical
	if held == dev.held {
		return evs
	}
	dev.held = held
	for _, a := range dev.holdable {
		evs = appendEvents(evs, a.HoldBack(held, at))
	}
	return evs
}

// Tick lets time pass without readings: condition delays and clear delays
// that have run out take effect. Call it about once a second.
func (e *Engine) Tick(now time.Time) []Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	var evs []Event
	for _, a := range e.order {
		evs = appendEvents(evs, a.Tick(now))
	}
	return evs
}

// NextDue is the earliest time a Tick would change an alarm without new
// readings (a condition delay or clear delay ending), so the caller can
// tick then instead of on its next periodic tick. ok is false when no
// alarm is waiting on time.
func (e *Engine) NextDue() (due time.Time, ok bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, a := range e.order {
		if d, has := a.NextDue(); has && (!ok || d.Before(due)) {
			due, ok = d, true
		}
	}
	return due, ok
}

// Acknowledge records that by (staff or channel name) acknowledged alarmID
// through how (channel, web page) at now. Errors: ErrUnknownAlarm, and
// ErrNotAlarming for an alarm that is inactive or pending; both wrapped
// with the id, test with errors.Is.
func (e *Engine) Acknowledge(alarmID, by, how string, now time.Time) ([]Event, error) {
	return e.AcknowledgeEvent(alarmID, "", by, how, now)
}

// ErrOtherOccurrence is returned by AcknowledgeEvent when the alarm's
// present occurrence is not the one named: the one a link was made for
// ended, and a new one must be seen before it is acknowledged.
var ErrOtherOccurrence = errors.New("that occurrence of the alarm has ended")

// AcknowledgeEvent is Acknowledge for one occurrence: eventID, when not
// empty, must be the alarm's present occurrence (checked under the same
// lock as the acknowledgement, so an occurrence starting in between is
// never acknowledged by a link made for an earlier one).
func (e *Engine) AcknowledgeEvent(alarmID, eventID, by, how string, now time.Time) ([]Event, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	a, ok := e.byID[alarmID]
	if !ok {
		return nil, fmt.Errorf("acknowledge %q: %w", alarmID, ErrUnknownAlarm)
	}
	if eventID != "" {
		if cur, ok := a.Current(); !ok || cur.EventID != eventID {
			return nil, fmt.Errorf("acknowledge %q: %w", alarmID, ErrOtherOccurrence)
		}
	}
	evs, err := a.Acknowledge(by, how, now)
	if err != nil {
		return nil, fmt.Errorf("acknowledge %q: %w", alarmID, err)
	}
	return evs, nil
}

// SetTechnical turns a technical condition of a device on or off: device
// disconnected or silent, sensor off, cuff error, low signal quality... The
// condition's delay (Options.TechnicalDelays) applies before it alarms;
// Tick lets it run out. priority may change while the condition lasts (a
// device lost during a session becomes high); an invalid priority is taken
// as medium, since loss of monitoring is at least medium (clinical.md 1).
// The low-signal-quality condition also holds back the escalation of the
// device's SpO2 alarms while it is on.
func (e *Engine) SetTechnical(device, condition string, on bool, priority Priority, now time.Time) []Event {
	if priority < Low || priority > High {
		priority = Medium
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	k := techKey{device: device, condition: condition}
	e.techOn[k] = techReport{on: on, priority: priority}
	if e.offOutside[condition] && e.session == nil {
		on = false // turned off by the configuration, and no session is active
	}
	return e.setTechnical(k, Technical, on, priority, now)
}

// SetAdvisory turns an advisory condition on or off: information that
// needs attention but not at once (a scheduled blood pressure due or
// missed, a baseline above the pre-dose limit). Its AlarmID is
// condition[/device]; it has no delay.
func (e *Engine) SetAdvisory(device, condition string, on bool, priority Priority, now time.Time) []Event {
	if priority < Low || priority > High {
		priority = Low
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.setTechnical(techKey{device: device, condition: condition}, Advisory, on, priority, now)
}

// setTechnical applies a technical or advisory condition's effective state.
func (e *Engine) setTechnical(k techKey, kind Kind, on bool, priority Priority, now time.Time) []Event {
	device, condition := k.device, k.condition
	a, ok := e.technical[k]
	if !ok {
		if !on {
			return nil // never raised: nothing to clear
		}
		id := condition // the agent's own conditions have no device
		if device != "" {
			id += "/" + device
		}
		if e.ruleNames[condition] {
			id = "technical-" + id // keep AlarmIDs distinct from a rule of the same name
		}
		a = NewAlarm(AlarmConfig{
			ID: id, Kind: kind, Priority: priority, Delay: e.techDelays[condition],
			Event: Event{Condition: condition, Site: e.site, Room: e.room, Device: device, Session: e.session},
		}, e.ids)
		e.technical[k] = a
		e.add(a, "")
	}
	var evs []Event
	if condition == lowSignalQuality {
		dev := e.device(device)
		dev.lowTechnical = on
		evs = e.applyHold(dev, now, evs)
	}
	evs = append(evs, a.SetPriority(priority, now)...)
	lvl := LevelClear
	if on {
		lvl = LevelMet
	}
	return append(evs, a.Observe(lvl, 0, now)...)
}

// SetBaseline sets the device's pre-dose baseline of metric for
// rise-over-baseline rules (clinical.md 3 and 4). A value that is not finite
// is refused.
func (e *Engine) SetBaseline(device, metric string, value float64) error {
	if math.IsNaN(value) || math.IsInf(value, 0) {
		return fmt.Errorf("alarm baseline of %s on %s: %v is not a number", metric, device, value)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.device(device).baselines[metric] = value
	for k, ra := range e.ruleAlarms {
		if k.device == device && ra.rule.Metric == metric && ra.rule.RiseOverBaseline != nil {
			ra.alarm.SetLimit(value+*ra.rule.RiseOverBaseline, ra.rule.limitText(e.units[k.rule], value))
		}
	}
	return nil
}

// ClearBaseline forgets the device's baseline of metric (the session ended);
// its rise rules stay quiet until a new one is set.
func (e *Engine) ClearBaseline(device, metric string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	delete(e.device(device).baselines, metric)
}

// SetSession sets the opaque session id the events carry; "" for none.
func (e *Engine) SetSession(session string, now time.Time) []Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.session = nil
	if session != "" {
		e.session = &session
	}
	for _, a := range e.order {
		a.SetSession(e.session)
	}
	// Conditions turned off by the configuration count again during a
	// session, and are off again after it.
	var evs []Event
	for k, r := range e.techOn {
		if e.offOutside[k.condition] {
			evs = append(evs, e.setTechnical(k, Technical, r.on && e.session != nil, r.priority, now)...)
		}
	}
	return evs
}

// Route is the route of the rule behind alarmID ("" for technical alarms
// and rules without one), for the dispatcher.
func (e *Engine) Route(alarmID string) string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.routes[alarmID]
}

// Active lists the alarms in force (active, acknowledged or latched) as
// their latest events, highest priority first, then oldest onset, then id.
func (e *Engine) Active() []Event {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []Event
	for _, a := range e.order {
		if ev, ok := a.Current(); ok {
			out = append(out, ev)
		}
	}
	sort.SliceStable(out, func(i, j int) bool {
		if out[i].Priority != out[j].Priority {
			return out[i].Priority > out[j].Priority
		}
		if !out[i].Onset.Equal(out[j].Onset) {
			return out[i].Onset.Before(out[j].Onset)
		}
		return out[i].AlarmID < out[j].AlarmID
	})
	return out
}

// Pause pauses notifications of the alarms in force for d, bounded by
// Options.MaxPause (clinical.md 1: pauses are time-limited). d <= 0 ends a
// pause. It returns when the pause ends (now for no pause). Pausing changes
// no alarm state: it only changes what ShouldNotify answers.
func (e *Engine) Pause(d time.Duration, now time.Time) time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	if d <= 0 {
		e.pauseUntil, e.paused = time.Time{}, nil
		return now
	}
	if d > e.maxPause {
		d = e.maxPause
	}
	e.pauseUntil = now.Add(d)
	e.paused = make(map[string]Priority)
	for _, a := range e.order {
		if ev, ok := a.Current(); ok {
			e.paused[ev.EventID] = ev.Priority
		}
	}
	return e.pauseUntil
}

// PausedUntil returns when the pause in force at now ends, and whether one
// is.
func (e *Engine) PausedUntil(now time.Time) (time.Time, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.paused == nil || !now.Before(e.pauseUntil) {
		return time.Time{}, false
	}
	return e.pauseUntil, true
}

// ShouldNotify says whether ev is to be sent to people now. Outside a pause
// every event is. During a pause, the occurrences that were in force when it
// began are silent, except when one rises above the priority it had then; a
// NEW occurrence (one that began after the pause started) and every end
// still notify (clinical.md 1: a new or higher-priority condition still
// annunciates during a pause; ends withdraw messages, which only reduces
// noise).
func (e *Engine) ShouldNotify(ev Event, now time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.paused == nil || !now.Before(e.pauseUntil) {
		return true
	}
	if ev.Phase == PhaseEnd {
		return true
	}
	p, ok := e.paused[ev.EventID]
	return !ok || ev.Priority > p
}

// appendEvents appends src to dst, reusing src when dst is empty (the
// common case of one event) to spare an allocation.
func appendEvents(dst, src []Event) []Event {
	if len(dst) == 0 {
		return src
	}
	return append(dst, src...)
}
