package agent

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-monitor/vigil/agent/acklink"
	"github.com/vigil-monitor/vigil/agent/alarm"
	"github.com/vigil-monitor/vigil/agent/audit"
	"github.com/vigil-monitor/vigil/agent/clocksync"
	"github.com/vigil-monitor/vigil/agent/config"
	"github.com/vigil-monitor/vigil/agent/devstatus"
	"github.com/vigil-monitor/vigil/agent/dispatch"
	"github.com/vigil-monitor/vigil/agent/mqtt"
	"github.com/vigil-monitor/vigil/agent/notify"
	"github.com/vigil-monitor/vigil/drivers"
)

// alarmPublisher is what the alarm path needs of MQTT.
type alarmPublisher interface {
	PublishAlarmEvent(payload []byte)
	PublishActiveAlarms(payload []byte)
}

// alarms connects readings and device states to the alarm engine, and the
// engine's events to MQTT and the notification dispatcher. It is a
// ReadingConsumer and a StatusConsumer of every device.
type alarms struct {
	engine     *alarm.Engine
	dispatcher *dispatch.Dispatcher
	notifiers  map[string]notify.Notifier
	pub        alarmPublisher
	metrics    *alarmMetrics
	logger     *slog.Logger
	mu         sync.Mutex // orders event handling, so MQTT sees events in engine order
	// stopped is set when the agent stops: the devices it then closes are
	// not "disconnected" alarms (the room's offline status says the agent
	// stopped).
	stopped atomic.Bool
	// readClock tells whether the system clock is synchronised.
	readClock func() (clocksync.Status, error)
	// wake tells run to re-arm its timer; armed is the time (Unix ns) the
	// timer is set for.
	wake  chan struct{}
	armed atomic.Int64
	// beat, when set, tells the systemd watchdog the alarm loop goes round.
	beat func()

	// links makes and serves the signed acknowledge links; nil without
	// alarms.ack_links.
	links *acklink.Links

	// auditPath is alarms.audit_log; audit the open log, nil while it
	// cannot be opened (run retries). storageFailing is whether the
	// storage technical alarm is raised.
	auditPath string
	audit     atomic.Pointer[audit.Log]
	// recordEvent, when set, commits an alarm event and its MQTT message
	// to the store; false when it could not (published directly then).
	recordEvent func(ev alarm.Event, payload []byte) bool
	// auditStore, when set, commits an audit entry to the store.
	auditStore      func(audit.Entry) error
	storageFailing  atomic.Bool
	storageMu       sync.Mutex
	storageFailures map[string]bool // by source: "audit", "store"
}

// stop ends alarm evaluation before the devices are closed.
func (a *alarms) stop() { a.stopped.Store(true) }

// technicalPriority is the priority of each technical condition
// (clinical.md 4: sensor off and cuff error medium; loss of monitoring
// medium, high during a session in a later release; signal quality low).
var technicalPriority = map[string]alarm.Priority{
	string(devstatus.Disconnected):     alarm.Medium,
	string(devstatus.Silent):           alarm.Medium,
	string(devstatus.SensorOff):        alarm.Medium,
	string(devstatus.CuffError):        alarm.Medium,
	string(devstatus.SensorFault):      alarm.Medium,
	string(devstatus.Searching):        alarm.Low,
	string(devstatus.LowSignalQuality): alarm.Low,
}

func newAlarms(cfg *config.Config, pub alarmPublisher, reg prometheus.Registerer, logger *slog.Logger) (*alarms, error) {
	opts := alarm.Options{Site: cfg.Site, Room: cfg.Room, MaxPause: cfg.Alarms.PauseMax}
	if !cfg.Alarms.ClockCheck {
		// Off outside a session only: during one, technical alarms
		// cannot be disabled.
		opts.OffOutsideSession = []string{condClockUnsynchronised}
	}
	engine, err := alarm.NewEngine(cfg.Alarms.Rules, opts)
	if err != nil {
		return nil, err
	}
	var channels []string
	for _, ch := range cfg.Notify.Channels {
		channels = append(channels, ch.Name)
	}
	a := &alarms{engine: engine, pub: pub, logger: logger, notifiers: map[string]notify.Notifier{},
		metrics: newAlarmMetrics(reg, cfg.Site, cfg.Room, channels), wake: make(chan struct{}, 1)}
	a.armed.Store(math.MaxInt64) // until run arms its timer
	a.readClock = clocksync.Read
	if l := cfg.Alarms.AckLinks; l != nil {
		if a.links, err = newAckLinks(l, a, logger); err != nil {
			return nil, err
		}
	}
	a.auditPath = cfg.Alarms.AuditLog
	a.openAudit()
	for _, ch := range cfg.Notify.Channels {
		n, err := NewNotifier(ch, logger)
		if err != nil {
			return nil, err
		}
		a.notifiers[ch.Name] = n
	}
	if len(cfg.Notify.Channels) > 0 {
		a.dispatcher, err = dispatch.New(dispatch.Options{
			Routes:       cfg.Notify.Routes,
			Notifiers:    a.notifiers,
			Logger:       logger,
			RouteOf:      engine.Route,
			ShouldNotify: engine.ShouldNotify,
			OnResult: func(channel string, ev alarm.Event, r notify.Result, latency time.Duration) {
				now := time.Now()
				a.metrics.result(channel, ev, r, now)
				errText := ""
				if r.Err != nil {
					errText = r.Err.Error()
				}
				a.record(audit.NotificationEntry(channel, ev, r.Verdict.String(), errText, now))
				if r.Verdict != notify.Delivered {
					logger.Warn("notification not delivered", "channel", channel, "alarm", ev.AlarmID, "verdict", r.Verdict.String(), "err", r.Err)
				}
			},
			OnAllChannelsFailing: func(failing bool) {
				a.handle(engine.SetTechnical("", "notifications-failing", failing, alarm.High, time.Now()))
			},
		})
		if err != nil {
			return nil, err
		}
	}
	return a, nil
}

// run owns the engine's clock (delays elapse without readings), the
// dispatcher and the channels that report acknowledgements.
func (a *alarms) run(ctx context.Context) {
	var wg sync.WaitGroup
	if a.dispatcher != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.dispatcher.Run(ctx)
		}()
	}
	for name, n := range a.notifiers {
		if acker, ok := n.(notify.Acknowledger); ok {
			wg.Add(1)
			go func() {
				defer wg.Done()
				err := acker.RunAcknowledgements(ctx, func(ack notify.Acknowledgement) {
					if err := a.acknowledge(ack.AlarmID, ack.By, "channel "+ack.Channel); err != nil {
						a.logger.Warn("acknowledgement from a channel not applied", "channel", name, "alarm", ack.AlarmID, "err", err)
					}
				})
				if err != nil && !errors.Is(err, context.Canceled) {
					a.logger.Warn("acknowledgements stopped", "channel", name, "err", err)
				}
			}()
		}
	}
	a.checkClock(a.readClock)
	clockChecks := time.NewTicker(clockCheckInterval)
	defer clockChecks.Stop()
	// The engine is ticked at least every tickInterval (a device that
	// stops sending must still let delays run out), and exactly when a
	// condition or clear delay ends (NextDue), so an alarm starts at the
	// end of its delay, not up to a tick later.
	timer := time.NewTimer(tickInterval)
	defer timer.Stop()
	auditRetry := time.NewTicker(auditRetryInterval)
	defer auditRetry.Stop()
	a.record(audit.AgentEntry("started", time.Now()))
	defer func() {
		a.writeAudit(audit.AgentEntry("stopped", time.Now()))
		a.closeAudit()
	}()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case <-auditRetry.C:
			a.openAudit()
		case now := <-timer.C:
			a.handle(a.engine.Tick(now))
			if a.beat != nil {
				a.beat()
			}
		case <-a.wake:
		case <-clockChecks.C:
			a.checkClock(a.readClock)
		}
		next := time.Now().Add(tickInterval)
		if due, ok := a.engine.NextDue(); ok && due.Before(next) {
			next = due
		}
		a.armed.Store(next.UnixNano())
		timer.Reset(time.Until(next))
	}
}

// tickInterval is the longest the engine goes without a Tick.
const tickInterval = time.Second

// Consume implements ReadingConsumer.
func (a *alarms) Consume(r *drivers.Reading) {
	if len(r.Samples) > 0 || a.stopped.Load() {
		return // waveforms raise no alarm
	}
	a.handle(a.engine.Observe(r.Device, r.Metric.String(), r.Value, r.Valid, r.Flags, r.Received))
	a.rearm()
}

// rearm wakes run when the engine now has a delay ending before the time
// run's timer is set for (a condition just became pending).
func (a *alarms) rearm() {
	if due, ok := a.engine.NextDue(); ok && due.UnixNano() < a.armed.Load() {
		select {
		case a.wake <- struct{}{}:
		default:
		}
	}
}

// DeviceStatus implements StatusConsumer: disconnection, silence and the
// device's conditions become technical alarms.
func (a *alarms) DeviceStatus(s devstatus.Status) {
	if a.stopped.Load() {
		return
	}
	now := s.Since
	var evs []alarm.Event
	for _, st := range []devstatus.State{devstatus.Disconnected, devstatus.Silent} {
		evs = append(evs, a.engine.SetTechnical(s.Device, string(st), s.State == st, technicalPriority[string(st)], now)...)
	}
	on := map[devstatus.Condition]bool{}
	for _, c := range s.Conditions {
		on[c] = true
	}
	for _, c := range devstatus.Conditions() {
		evs = append(evs, a.engine.SetTechnical(s.Device, string(c), on[c], technicalPriority[string(c)], now)...)
	}
	a.handle(evs)
	a.rearm()
}

// handle publishes each event and hands it to the dispatcher when the
// engine says it should notify (not during a pause, unless new or higher).
func (a *alarms) handle(evs []alarm.Event) {
	if len(evs) == 0 {
		return
	}
	a.mu.Lock()
	var auditFailed bool
	defer func() {
		a.mu.Unlock()
		a.storage(!auditFailed) // after Unlock: it may raise an alarm, which comes back here
	}()
	now := time.Now()
	for _, ev := range evs {
		a.metrics.event(ev)
		a.logger.Info("alarm", "alarm", ev.AlarmID, "phase", ev.Phase, "state", ev.State, "priority", ev.Priority.String(), "text", ev.Text)
		if b, err := json.Marshal(eventJSON(ev)); err == nil {
			// Through the store's outbox when there is one, so an alarm
			// event survives broker outages and restarts like a reading.
			if a.recordEvent == nil || !a.recordEvent(ev, b) {
				a.pub.PublishAlarmEvent(b)
			}
		}
		if a.dispatcher != nil && a.engine.ShouldNotify(ev, now) {
			// Only notifications carry the link: it acknowledges, so it
			// is not published on MQTT nor written to the audit log.
			sent := ev
			if a.links != nil && ev.Phase != alarm.PhaseEnd && (ev.State == alarm.Active || ev.State == alarm.Latched) {
				sent.AckURL = a.links.URL(ev)
			}
			a.dispatcher.Dispatch(sent)
		}
		// Audited after dispatch: an fsync costs about half a millisecond,
		// which the first notification does not wait for.
		if !a.writeAudit(audit.AlarmEntry(ev)) {
			auditFailed = true
		}
	}
	active := a.engine.Active()
	a.metrics.setActive(active)
	list := make([]any, 0, len(active))
	for _, ev := range active {
		list = append(list, eventJSON(ev))
	}
	if b, err := json.Marshal(list); err == nil {
		a.pub.PublishActiveAlarms(b)
	}
}

// acknowledge applies an acknowledgement from any path (API, MQTT, phone).
func (a *alarms) acknowledge(alarmID, by, how string) error {
	return a.acknowledgeEvent(alarmID, "", by, how)
}

// acknowledgeEvent acknowledges one occurrence of the alarm (any, when
// eventID is ""); the phone link names the one it was sent for.
func (a *alarms) acknowledgeEvent(alarmID, eventID, by, how string) error {
	evs, err := a.engine.AcknowledgeEvent(alarmID, eventID, by, how, time.Now())
	if err != nil {
		return err
	}
	a.logger.Info("alarm acknowledged", "alarm", alarmID, "by", by, "how", how)
	if len(evs) > 0 {
		eventID = evs[0].EventID
	}
	now := time.Now()
	a.record(audit.AcknowledgeEntry(alarmID, eventID, by, how, now))
	if a.dispatcher != nil {
		a.dispatcher.Acknowledged(alarmID)
	}
	a.handle(evs)
	return nil
}

// newAckLinks builds the acknowledge links from alarms.ack_links. Without a
// key file the key is random: links of an earlier run stop working, which
// only costs a nurse a trip to the room or the CLI.
func newAckLinks(c *config.AckLinks, a *alarms, logger *slog.Logger) (*acklink.Links, error) {
	var key []byte
	if c.KeyFile != "" {
		k, err := notify.ReadSecretFile(c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("alarms.ack_links.key_file: %w", err)
		}
		key = []byte(k)
	} else {
		key = make([]byte, acklink.MinKeyBytes)
		if _, err := rand.Read(key); err != nil {
			return nil, fmt.Errorf("acknowledge link key: %w", err)
		}
		logger.Info("acknowledge links use a key made at start (no alarms.ack_links.key_file): links sent before a restart will not work")
	}
	return acklink.New(acklink.Options{
		Key:         key,
		BaseURL:     c.BaseURL,
		TTL:         c.TTL,
		Acknowledge: a.acknowledgeEvent,
		Current:     a.current,
		Logger:      logger,
	})
}

// current is the alarm's present event, if it is in force.
func (a *alarms) current(alarmID string) (alarm.Event, bool) {
	for _, ev := range a.engine.Active() {
		if ev.AlarmID == alarmID {
			return ev, true
		}
	}
	return alarm.Event{}, false
}

// pause pauses notifications of the alarms in force (a new or higher
// alarm still notifies) for d, or DefaultPause when d is 0, bounded by
// alarms.pause_max. It returns when the pause ends.
func (a *alarms) pause(d time.Duration, by, how string) time.Time {
	if d <= 0 {
		d = DefaultPause
	}
	now := time.Now()
	until := a.engine.Pause(d, now)
	a.logger.Info("alarm notifications paused", "until", until, "by", by, "how", how)
	a.record(audit.PauseEntry(until, by, how, now))
	return until
}

// resume ends a pause.
func (a *alarms) resume(by, how string) {
	now := time.Now()
	a.engine.Pause(0, now)
	a.logger.Info("alarm notifications resumed", "by", by, "how", how)
	// A pause until now is the end of the pause.
	a.record(audit.PauseEntry(now, by, how, now))
}

// DefaultPause is a pause's length when none is given: clinical.md 1,
// pauses last "typically 1-2 min"; bounded by alarms.pause_max.
const DefaultPause = 2 * time.Minute

// alarmCommand carries out a command from the room's MQTT alarm topic.
func (a *alarms) alarmCommand(c mqtt.AlarmCommand) error {
	switch c.Name {
	case "ack":
		return a.acknowledge(c.Alarm, c.By, "mqtt")
	case "pause":
		a.pause(c.For, c.By, "mqtt")
		return nil
	case "resume":
		a.resume(c.By, "mqtt")
		return nil
	}
	return fmt.Errorf("unknown alarm command %q", c.Name)
}

// Technical conditions of the agent itself (not of a device), with their
// priorities and the delays the engine applies (DefaultTechnicalDelays).
const (
	// condMQTTDisconnected: readings wait in memory and nothing reaches
	// MQTT subscribers (records, other displays); Grafana, fed by
	// Prometheus, still shows the vitals, so medium.
	condMQTTDisconnected = "mqtt-disconnected"
	// condClockUnsynchronised: timestamps of readings and alarms may
	// disagree with the clinic's other records; monitoring works, so low.
	condClockUnsynchronised = "clock-unsynchronised"
	// condStorageFailing: the audit log (and later the store) cannot be
	// written; monitoring and alarms go on, the record is incomplete.
	condStorageFailing = "storage-failing"
)

// openAudit opens the JSON-lines audit file (alarms.audit_log), creating
// its directory. On failure the storage alarm is raised; run retries every
// auditRetryInterval.
func (a *alarms) openAudit() {
	if a.auditPath == "" || a.audit.Load() != nil {
		return
	}
	err := os.MkdirAll(filepath.Dir(a.auditPath), 0o750)
	var l *audit.Log
	if err == nil {
		l, err = audit.Open(a.auditPath, audit.Options{Sync: true, Logger: a.logger})
	}
	if err != nil {
		a.logger.Error("audit log cannot be opened; alarms and acknowledgements are not recorded in it", "path", a.auditPath, "err", err)
		a.storage(false)
		return
	}
	a.audit.Store(l)
	a.logger.Info("audit log open", "path", a.auditPath)
}

// closeAudit closes the audit file; run calls it last.
func (a *alarms) closeAudit() {
	if l := a.audit.Swap(nil); l != nil {
		l.Close()
	}
}

// auditRetryInterval spaces attempts to open an audit file that could not
// be opened (a directory made later, a disk remounted).
const auditRetryInterval = time.Minute

// writeAudit hands an entry to every audit destination: the store's audit
// table and the JSON-lines file when configured. It reports whether all
// took it. It raises nothing, so it may be called with a.mu held.
func (a *alarms) writeAudit(e audit.Entry) bool {
	ok := true
	if a.auditPath != "" {
		l := a.audit.Load()
		ok = l != nil && l.Record(e) == nil
	}
	if a.auditStore != nil && a.auditStore(e) != nil {
		ok = false
	}
	return ok
}

// record writes an audit entry and raises or clears the storage alarm by
// the outcome. Not to be called with a.mu held.
func (a *alarms) record(e audit.Entry) {
	a.storage(a.writeAudit(e))
}

// storage raises or clears the storage technical alarm when the audit log
// starts or stops failing. Not to be called with a.mu held.
func (a *alarms) storage(ok bool) { a.setStorage("audit", ok) }

// setStorage records whether one storage destination ("audit": the
// JSON-lines file, "store": the database) works; the storage technical
// alarm is on while any fails. Not to be called with a.mu held.
func (a *alarms) setStorage(source string, ok bool) {
	a.storageMu.Lock()
	if a.storageFailures == nil {
		a.storageFailures = map[string]bool{}
	}
	if a.storageFailures[source] == !ok {
		a.storageMu.Unlock()
		return // no change: the common case, cheap
	}
	a.storageFailures[source] = !ok
	failing := false
	for _, f := range a.storageFailures {
		failing = failing || f
	}
	a.storageMu.Unlock()
	if a.storageFailing.Swap(failing) == failing || a.stopped.Load() {
		return
	}
	a.handle(a.engine.SetTechnical("", condStorageFailing, failing, alarm.Medium, time.Now()))
}

// mqttConnection raises or clears the broker technical alarm.
func (a *alarms) mqttConnection(up bool) {
	if a.stopped.Load() {
		return
	}
	a.handle(a.engine.SetTechnical("", condMQTTDisconnected, !up, alarm.Medium, time.Now()))
	a.rearm()
}

// clockCheckInterval spaces clock synchronisation checks: an NTP client
// takes minutes to synchronise, and losing synchronisation is slow harm.
const clockCheckInterval = time.Minute

// checkClock raises or clears the clock technical alarm.
func (a *alarms) checkClock(read func() (clocksync.Status, error)) {
	s, err := read()
	if err != nil {
		a.logger.Warn("clock synchronisation unknown", "err", err)
		return
	}
	a.handle(a.engine.SetTechnical("", condClockUnsynchronised, !s.Synchronised, alarm.Low, time.Now()))
}

// eventJSON adds the priority's name to the event's JSON form.
func eventJSON(ev alarm.Event) any {
	return struct {
		alarm.Event
		Priority string `json:"priority"`
	}{ev, ev.Priority.String()}
}

// alarmsHandler serves GET /api/v1/alarms (the active set) and
// POST /api/v1/alarms/{id...}/ack.
func (a *alarms) listHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		active := a.engine.Active()
		list := make([]any, 0, len(active))
		for _, ev := range active {
			list = append(list, eventJSON(ev))
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(list)
	})
}

// pauseHandler serves the pause: GET /api/v1/alarms/pause tells whether
// one is in force; POST /api/v1/alarms/pause?by=NAME[&for=90s] starts one
// (bounded by alarms.pause_max); POST /api/v1/alarms/resume?by=NAME ends
// it. The answer is always the pause now in force.
func (a *alarms) pauseHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		fail := func(status int, msg string) {
			w.WriteHeader(status)
			json.NewEncoder(w).Encode(map[string]any{"ok": false, "error": msg})
		}
		if r.Method == http.MethodPost {
			by := strings.TrimSpace(r.URL.Query().Get("by"))
			if by == "" || utf8.RuneCountInString(by) > 64 {
				fail(http.StatusBadRequest, "by=NAME is required (at most 64 characters): pauses are audited with who")
				return
			}
			if strings.HasSuffix(r.URL.Path, "/resume") {
				a.resume(by, "http")
			} else {
				var d time.Duration
				if s := r.URL.Query().Get("for"); s != "" {
					var err error
					if d, err = time.ParseDuration(s); err != nil || d <= 0 {
						fail(http.StatusBadRequest, "for= must be a positive duration such as 90s or 2m")
						return
					}
				}
				a.pause(d, by, "http")
			}
		}
		res := struct {
			OK     bool       `json:"ok"`
			Paused bool       `json:"paused"`
			Until  *time.Time `json:"until"`
		}{OK: true}
		if until, ok := a.engine.PausedUntil(time.Now()); ok {
			res.Paused, res.Until = true, &until
		}
		json.NewEncoder(w).Encode(res)
	})
}

func (a *alarms) ackHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("alarm")
		by := r.URL.Query().Get("by")
		if by == "" {
			by = "local"
		}
		res := struct {
			Alarm string `json:"alarm"`
			OK    bool   `json:"ok"`
			Error string `json:"error,omitempty"`
		}{Alarm: id}
		status := http.StatusOK
		if err := a.acknowledge(id, by, "http"); err != nil {
			res.Error = err.Error()
			status = http.StatusConflict
			if errors.Is(err, alarm.ErrUnknownAlarm) {
				status = http.StatusNotFound
			}
		} else {
			res.OK = true
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(res)
	})
}
