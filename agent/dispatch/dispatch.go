// Package dispatch routes alarm events to notification channels: it picks
// the route by priority, sends through one worker per channel (serial, in
// order, with retry and backoff), escalates unacknowledged medium and high
// alarms down the route tiers, repeats while unacknowledged, and raises the
// technical alarm "notification path down" when every send fails
// (clinical.md 1: a failure of communication to a remote part must itself
// raise a technical alarm; clinical.md 5: escalate after N seconds without
// acknowledgement).
package dispatch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vigil-monitor/vigil/agent/alarm"
	"github.com/vigil-monitor/vigil/agent/config"
	"github.com/vigil-monitor/vigil/agent/notify"
)

const (
	// FirstBackoff and MaxBackoff bound the wait between attempts on a Retry
	// verdict without RetryAfter: 1 s, 2 s, 4 s ... 60 s.
	FirstBackoff = time.Second
	MaxBackoff   = 60 * time.Second
	// MaxRetryDuration is how long one message is retried before it is given
	// up: past it the alarm is stale and the channel is better freed for
	// newer events.
	MaxRetryDuration = 10 * time.Minute
	// FailingWindow is how long every send attempt must have failed before
	// OnAllChannelsFailing(true): long enough to ride out one service's
	// blip, short against the escalation times of clinical.md 5.
	FailingWindow = 2 * time.Minute
	// QueueSize bounds each channel's queue of events waiting to be sent.
	QueueSize = 256
	// pauseRecheck is how soon a repeat or escalation held back by a pause
	// (Options.ShouldNotify) is looked at again.
	pauseRecheck = 5 * time.Second
)

// EscalatedPrefix and RepeatedPrefix start the Text of escalation and repeat
// messages, so the reader knows why the alarm comes again.
const (
	EscalatedPrefix = "Escalated: "
	RepeatedPrefix  = "Repeated: "
)

// Options configure a Dispatcher. Routes and Notifiers are required; the
// rest default.
type Options struct {
	Routes    []config.Route
	Notifiers map[string]notify.Notifier // by channel name
	// Now is the clock; default time.Now.
	Now func() time.Time
	// After is the timer source; default time.After.
	After  func(d time.Duration) <-chan time.Time
	Logger *slog.Logger
	// OnResult is called after every send attempt, from the channel's
	// worker goroutine (metrics hook).
	OnResult func(channel string, ev alarm.Event, r notify.Result, latency time.Duration)
	// OnAllChannelsFailing raises (true) and clears (false) the technical
	// alarm "notification path down". It is called with the dispatcher's
	// failure lock held, so calls arrive in order; it must not call back
	// into the Dispatcher.
	OnAllChannelsFailing func(failing bool)
	// RouteOf names the route a rule asks for (alarm.Engine.Route); ""
	// routes by priority. Optional.
	RouteOf func(alarmID string) string
	// ShouldNotify holds back repeats and escalations during a pause
	// (alarm.Engine.ShouldNotify). Optional; events handed to Dispatch are
	// sent as they are: the caller filters those.
	ShouldNotify func(ev alarm.Event, now time.Time) bool
}

// ConfigError says why New refused its options.
type ConfigError struct {
	Route  string // the route's name or "routes[i]"; "" for the options themselves
	Reason string
}

func (e *ConfigError) Error() string {
	if e.Route == "" {
		return "dispatch: " + e.Reason
	}
	return fmt.Sprintf("dispatch: route %s: %s", e.Route, e.Reason)
}

// ErrRunning is returned by Run when the dispatcher already runs.
var ErrRunning = errors.New("dispatch: already running")

// Dispatcher routes alarm events to notifiers. Dispatch and Acknowledged are
// safe for concurrent use and never block on a channel.
type Dispatcher struct {
	log          *slog.Logger
	now          func() time.Time
	after        func(time.Duration) <-chan time.Time
	onResult     func(string, alarm.Event, notify.Result, time.Duration)
	onFailing    func(bool)
	routeOf      func(string) string
	shouldNotify func(alarm.Event, time.Time) bool

	routes  []config.Route
	byName  map[string]int
	workers map[string]*worker
	order   []string // channel names, sorted: workers start in a stable order

	running atomic.Bool
	dropped atomic.Uint64
	rearm   chan struct{} // wakes the timer loop after the schedule changed

	mu          sync.Mutex
	occurrences map[string]*occurrence // by AlarmID

	failMu       sync.Mutex
	failingSince time.Time // first failed attempt since the last delivery; zero when none
	failing      bool
}

// occurrence is the dispatcher's view of one raised alarm.
type occurrence struct {
	ev         alarm.Event // latest event handed in
	route      int         // current tier's route index
	sentTo     []string    // channels that got any of its messages, in order
	acked      bool
	escalateAt time.Time // zero: no escalation due
	repeatAt   time.Time // zero: no repeat due
}

// New checks the options and builds a dispatcher. Every channel a route
// names needs a notifier, and every then a route.
func New(o Options) (*Dispatcher, error) {
	d := &Dispatcher{
		log:          o.Logger,
		now:          o.Now,
		after:        o.After,
		onResult:     o.OnResult,
		onFailing:    o.OnAllChannelsFailing,
		routeOf:      o.RouteOf,
		shouldNotify: o.ShouldNotify,
		routes:       slices.Clone(o.Routes),
		byName:       map[string]int{},
		workers:      map[string]*worker{},
		rearm:        make(chan struct{}, 1),
		occurrences:  map[string]*occurrence{},
	}
	if d.log == nil {
		d.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if d.now == nil {
		d.now = time.Now
	}
	if d.after == nil {
		d.after = time.After
	}
	for i, r := range d.routes {
		if r.Name == "" {
			continue
		}
		if _, dup := d.byName[r.Name]; dup {
			return nil, &ConfigError{Route: r.Name, Reason: "duplicate route name"}
		}
		d.byName[r.Name] = i
	}
	for i, r := range d.routes {
		label := routeLabel(r, i)
		if len(r.Channels) == 0 {
			return nil, &ConfigError{Route: label, Reason: "no channels"}
		}
		for _, ch := range r.Channels {
			n, ok := o.Notifiers[ch]
			if !ok || n == nil {
				return nil, &ConfigError{Route: label, Reason: fmt.Sprintf("no notifier for channel %q", ch)}
			}
			if _, made := d.workers[ch]; !made {
				d.workers[ch] = &worker{name: ch, n: n, d: d, wake: make(chan struct{}, 1)}
				d.order = append(d.order, ch)
			}
		}
		if r.Then != "" {
			if _, ok := d.byName[r.Then]; !ok {
				return nil, &ConfigError{Route: label, Reason: fmt.Sprintf("then names no route: %q", r.Then)}
			}
			if r.EscalateAfter <= 0 {
				return nil, &ConfigError{Route: label, Reason: "then needs escalate_after above 0"}
			}
		}
		if r.EscalateAfter < 0 || r.RepeatInterval < 0 {
			return nil, &ConfigError{Route: label, Reason: "negative escalate_after or repeat_interval"}
		}
		// Following then must end: a loop would escalate forever.
		seen := map[int]bool{i: true}
		for next := r.Then; next != ""; {
			j := d.byName[next]
			if seen[j] {
				return nil, &ConfigError{Route: label, Reason: "escalation loops back"}
			}
			seen[j] = true
			next = d.routes[j].Then
		}
	}
	slices.Sort(d.order)
	return d, nil
}

func routeLabel(r config.Route, i int) string {
	if r.Name != "" {
		return r.Name
	}
	return fmt.Sprintf("routes[%d]", i)
}

// Dropped counts the updates dropped because a channel's queue was full.
func (d *Dispatcher) Dropped() uint64 { return d.dropped.Load() }

// Run starts one worker per channel and the escalation and repeat timer,
// and returns nil when ctx ends and all of them have stopped. Events handed
// in before Run wait in the queues.
func (d *Dispatcher) Run(ctx context.Context) error {
	if !d.running.CompareAndSwap(false, true) {
		return ErrRunning
	}
	defer d.running.Store(false)
	var wg sync.WaitGroup
	for _, name := range d.order {
		w := d.workers[name]
		wg.Go(func() { w.run(ctx) })
	}
	wg.Go(func() { d.timerLoop(ctx) })
	wg.Wait()
	return nil
}

// firstRoute picks an event's first tier: the rule's route when it names
// one, else the first route in config order whose priorities include the
// event's. Routes without priorities are reached only through then (or a
// rule's route).
func (d *Dispatcher) firstRoute(ev alarm.Event) (int, bool) {
	if d.routeOf != nil {
		if name := d.routeOf(ev.AlarmID); name != "" {
			if i, ok := d.byName[name]; ok {
				return i, true
			}
			d.log.Warn("rule names an unknown route; routing by priority", "alarm", ev.AlarmID, "route", name)
		}
	}
	for i, r := range d.routes {
		if slices.Contains(r.Priorities, ev.Priority) {
			return i, true
		}
	}
	return 0, false
}

// Dispatch hands ev over without blocking. A start picks its route and
// schedules escalation and repeats; updates go to every channel that got the
// start; an end goes to every channel that got any message of the alarm
// (so phones are cleared) and stops its timers. When a channel's queue is
// full its oldest update is dropped (starts and ends never are), logged and
// counted in Dropped.
func (d *Dispatcher) Dispatch(ev alarm.Event) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	occ := d.occurrences[ev.AlarmID]
	switch ev.Phase {
	case alarm.PhaseStart:
		i, ok := d.firstRoute(ev)
		if !ok {
			d.log.Info("no route for alarm; not notified", "alarm", ev.AlarmID, "priority", ev.Priority.String())
			delete(d.occurrences, ev.AlarmID)
			return
		}
		occ = &occurrence{ev: ev}
		d.occurrences[ev.AlarmID] = occ
		d.enterTier(occ, i, ev, now)
	case alarm.PhaseEnd:
		if occ == nil {
			// The start was never seen (the agent restarted): clear the
			// channels its priority routes to.
			if i, ok := d.firstRoute(ev); ok {
				d.sendAll(d.routes[i].Channels, ev)
			}
			return
		}
		delete(d.occurrences, ev.AlarmID)
		d.sendAll(occ.sentTo, ev)
		d.wakeTimer()
	default: // update
		if occ == nil {
			// An update without a known start: treat it as the start, so
			// the alarm is not lost.
			i, ok := d.firstRoute(ev)
			if !ok {
				d.log.Info("no route for alarm; not notified", "alarm", ev.AlarmID, "priority", ev.Priority.String())
				return
			}
			occ = &occurrence{ev: ev}
			d.occurrences[ev.AlarmID] = occ
			d.enterTier(occ, i, ev, now)
			return
		}
		prev := occ.ev
		occ.ev = ev
		if ev.State == alarm.Acknowledged {
			d.stopTimers(occ)
		}
		if ev.State == alarm.Active && prev.State != alarm.Active {
			// Re-activated from latched: it signals again.
			occ.acked = false
		}
		d.sendAll(occ.sentTo, ev)
		if ev.Priority != prev.Priority && !occ.acked {
			// A changed priority may have a route of its own: the new
			// priority's people must hear of it too.
			if i, ok := d.firstRoute(ev); ok && i != occ.route {
				d.enterTier(occ, i, ev, now)
				return
			}
		}
		d.schedule(occ, now)
	}
}

// Acknowledged records that alarmID was acknowledged (a phone link, the web
// page, a channel's receipt): its escalation and repeats stop. The
// acknowledge event the engine emits still goes out through Dispatch.
func (d *Dispatcher) Acknowledged(alarmID string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if occ := d.occurrences[alarmID]; occ != nil {
		d.stopTimers(occ)
	}
}

func (d *Dispatcher) stopTimers(occ *occurrence) {
	occ.acked = true
	occ.escalateAt, occ.repeatAt = time.Time{}, time.Time{}
	d.wakeTimer()
}

// enterTier sends ev to route i's channels and schedules the tier's
// escalation and repeat. Called with d.mu held.
func (d *Dispatcher) enterTier(occ *occurrence, i int, ev alarm.Event, now time.Time) {
	occ.route = i
	r := d.routes[i]
	d.sendAll(r.Channels, ev)
	for _, ch := range r.Channels {
		if !slices.Contains(occ.sentTo, ch) {
			occ.sentTo = append(occ.sentTo, ch)
		}
	}
	occ.escalateAt, occ.repeatAt = time.Time{}, time.Time{}
	d.schedule(occ, now)
}

// schedule sets the occurrence's timers from its tier, unless already set.
// Only medium and high alarms escalate (clinical.md 5: phones get medium and
// high, escalating without acknowledgement). Called with d.mu held.
func (d *Dispatcher) schedule(occ *occurrence, now time.Time) {
	if occ.acked {
		return
	}
	r := d.routes[occ.route]
	if occ.escalateAt.IsZero() && r.Then != "" && r.EscalateAfter > 0 &&
		(occ.ev.Priority == alarm.Medium || occ.ev.Priority == alarm.High) {
		occ.escalateAt = now.Add(r.EscalateAfter)
	}
	if occ.repeatAt.IsZero() && r.RepeatInterval > 0 {
		occ.repeatAt = now.Add(r.RepeatInterval)
	}
	d.wakeTimer()
}

func (d *Dispatcher) wakeTimer() {
	select {
	case d.rearm <- struct{}{}:
	default:
	}
}

// sendAll queues ev on each channel. Called with d.mu held; never blocks.
func (d *Dispatcher) sendAll(channels []string, ev alarm.Event) {
	for _, ch := range channels {
		d.workers[ch].enqueue(ev)
	}
}

// timerLoop fires escalations and repeats when they fall due.
func (d *Dispatcher) timerLoop(ctx context.Context) {
	for {
		d.mu.Lock()
		var next time.Time
		for _, occ := range d.occurrences {
			for _, t := range []time.Time{occ.escalateAt, occ.repeatAt} {
				if !t.IsZero() && (next.IsZero() || t.Before(next)) {
					next = t
				}
			}
		}
		d.mu.Unlock()
		var due <-chan time.Time
		if !next.IsZero() {
			due = d.after(max(next.Sub(d.now()), 0))
		}
		select {
		case <-ctx.Done():
			return
		case <-d.rearm:
		case <-due:
			d.fireDue()
		}
	}
}

// fireDue escalates and repeats every occurrence whose time has come.
func (d *Dispatcher) fireDue() {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	ids := make([]string, 0, len(d.occurrences))
	for id := range d.occurrences {
		ids = append(ids, id)
	}
	slices.Sort(ids) // a stable order of sends across alarms
	for _, id := range ids {
		occ := d.occurrences[id]
		if occ.acked {
			continue
		}
		if !occ.escalateAt.IsZero() && !now.Before(occ.escalateAt) {
			if d.held(occ.ev, now) {
				occ.escalateAt = now.Add(pauseRecheck)
			} else {
				r := d.routes[occ.route]
				ev := occ.ev
				ev.Phase = alarm.PhaseUpdate
				ev.Text = EscalatedPrefix + ev.Text
				ev.Sent = now
				d.log.Info("escalating unacknowledged alarm", "alarm", id, "from", routeLabel(r, occ.route), "to", r.Then)
				d.enterTier(occ, d.byName[r.Then], ev, now)
				continue // the new tier's repeat starts now
			}
		}
		if !occ.repeatAt.IsZero() && !now.Before(occ.repeatAt) {
			if d.held(occ.ev, now) {
				occ.repeatAt = now.Add(pauseRecheck)
				continue
			}
			r := d.routes[occ.route]
			ev := occ.ev
			ev.Phase = alarm.PhaseUpdate
			ev.Text = RepeatedPrefix + ev.Text
			ev.Sent = now
			d.sendAll(r.Channels, ev)
			occ.repeatAt = now.Add(r.RepeatInterval)
		}
	}
}

func (d *Dispatcher) held(ev alarm.Event, now time.Time) bool {
	return d.shouldNotify != nil && !d.shouldNotify(ev, now)
}

// attempted records one attempt's outcome for the notification-path alarm:
// failing once every attempt since the last delivery failed for
// FailingWindow; cleared by the next delivery on any channel.
func (d *Dispatcher) attempted(ok bool, at time.Time) {
	d.failMu.Lock()
	defer d.failMu.Unlock()
	if ok {
		d.failingSince = time.Time{}
		if d.failing {
			d.failing = false
			d.log.Info("notification path back: a channel delivered")
			if d.onFailing != nil {
				d.onFailing(false)
			}
		}
		return
	}
	if d.failingSince.IsZero() {
		d.failingSince = at
	}
	if !d.failing && at.Sub(d.failingSince) >= FailingWindow {
		d.failing = true
		d.log.Error("notification path down: every send attempt failed", "since", d.failingSince)
		if d.onFailing != nil {
			d.onFailing(true)
		}
	}
}
