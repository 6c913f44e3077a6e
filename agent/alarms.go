package agent

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-monitor/vigil/agent/alarm"
	"github.com/vigil-monitor/vigil/agent/config"
	"github.com/vigil-monitor/vigil/agent/devstatus"
	"github.com/vigil-monitor/vigil/agent/dispatch"
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
	engine, err := alarm.NewEngine(cfg.Alarms.Rules, alarm.Options{Site: cfg.Site, Room: cfg.Room, MaxPause: cfg.Alarms.PauseMax})
	if err != nil {
		return nil, err
	}
	var channels []string
	for _, ch := range cfg.Notify.Channels {
		channels = append(channels, ch.Name)
	}
	a := &alarms{engine: engine, pub: pub, logger: logger, notifiers: map[string]notify.Notifier{},
		metrics: newAlarmMetrics(reg, cfg.Site, cfg.Room, channels)}
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
				a.metrics.result(channel, ev, r, time.Now())
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
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case now := <-t.C:
			a.handle(a.engine.Tick(now))
		}
	}
}

// Consume implements ReadingConsumer.
func (a *alarms) Consume(r *drivers.Reading) {
	if len(r.Samples) > 0 || a.stopped.Load() {
		return // waveforms raise no alarm
	}
	a.handle(a.engine.Observe(r.Device, r.Metric.String(), r.Value, r.Valid, r.Flags, r.Received))
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
}

// handle publishes each event and hands it to the dispatcher when the
// engine says it should notify (not during a pause, unless new or higher).
func (a *alarms) handle(evs []alarm.Event) {
	if len(evs) == 0 {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	now := time.Now()
	for _, ev := range evs {
		a.metrics.event(ev)
		a.logger.Info("alarm", "alarm", ev.AlarmID, "phase", ev.Phase, "state", ev.State, "priority", ev.Priority.String(), "text", ev.Text)
		if b, err := json.Marshal(eventJSON(ev)); err == nil {
			a.pub.PublishAlarmEvent(b)
		}
		if a.dispatcher != nil && a.engine.ShouldNotify(ev, now) {
			a.dispatcher.Dispatch(ev)
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
	evs, err := a.engine.Acknowledge(alarmID, by, how, time.Now())
	if err != nil {
		return err
	}
	a.logger.Info("alarm acknowledged", "alarm", alarmID, "by", by, "how", how)
	if a.dispatcher != nil {
		a.dispatcher.Acknowledged(alarmID)
	}
	a.handle(evs)
	return nil
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
