package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vigil-monitor/vigil/agent/alarm"
	"github.com/vigil-monitor/vigil/agent/audit"
	"github.com/vigil-monitor/vigil/agent/config"
	"github.com/vigil-monitor/vigil/agent/mqtt"
	"github.com/vigil-monitor/vigil/agent/session"
	"github.com/vigil-monitor/vigil/agent/store"
	"github.com/vigil-monitor/vigil/drivers"
)

// sessionStore is what sessions need of the store.
type sessionStore interface {
	PutSession(store.SessionRow) error
	ActiveSession(room string) (store.SessionRow, bool, error)
	Session(id string) (store.SessionRow, error)
	Sessions(room string, limit int) ([]store.SessionRow, error)
}

// sessionRecords reads what a session's record holds.
type sessionRecords interface {
	Readings(q store.ReadingQuery) ([]store.StoredReading, error)
	AlarmEvents(from, to time.Time, session string) ([]alarm.Event, error)
	AuditEntries(from, to time.Time) ([]audit.Entry, error)
}

// sessionPublisher publishes the room's session, retained.
type sessionPublisher interface {
	PublishSession(payload []byte)
}

// Advisory conditions of a session (alarm.Engine.SetAdvisory), room-wide.
const (
	advisoryNIBPDue         = "nibp-due"         // a scheduled blood pressure is due and no device could start it
	advisoryNIBPMissed      = "nibp-missed"      // a scheduled blood pressure is late by more than the grace
	advisoryBaselineHigh    = "baseline-bp-high" // the pre-dose blood pressure is above the limit
	advisoryBaselineGaps    = "baseline-missing" // a baseline vital had no valid reading before the dose
	nibpStartCommand        = "nibp_start"
	sessionTickInterval     = time.Second
	sessionListLimitMax     = 500
	sessionListLimitDefault = 50
)

// sessions runs the room's dosing session: it feeds readings to the
// session.Manager, ticks it, and carries out its actions (NIBP starts and
// reminders, advisory alarms, baselines for the alarm engine, persistence
// and the retained MQTT session). It is a ReadingConsumer.
type sessions struct {
	mu       sync.Mutex // serialises the manager and the actions' effects
	m        *session.Manager
	room     string
	al       *alarms
	pub      sessionPublisher
	st       sessionStore   // nil when the store could not be opened
	readings sessionRecords // likewise
	devices  map[string]*device
	logger   *slog.Logger
	// current is the active session's id ("" when none), read by every
	// device's pipeline to tag readings.
	current atomic.Pointer[string]
}

func newSessions(cfg *config.Config, al *alarms, pub sessionPublisher, st sessionStore, devices map[string]*device, logger *slog.Logger) (*sessions, error) {
	m, err := session.NewManager(cfg.Room, config.ProtocolOf(cfg.Session))
	if err != nil {
		return nil, fmt.Errorf("session: %w", err)
	}
	s := &sessions{m: m, room: cfg.Room, al: al, pub: pub, st: st, devices: devices, logger: logger}
	empty := ""
	s.current.Store(&empty)
	return s, nil
}

// restore continues the session a previous run left active (from the store).
func (s *sessions) restore() {
	if s.st == nil {
		return
	}
	row, ok, err := s.st.ActiveSession(s.room)
	if err != nil {
		s.logger.Error("active session not read from the store", "err", err)
		return
	}
	if !ok {
		s.publish(session.Session{}, false)
		return
	}
	sess, err := session.UnmarshalStored(row.Data)
	if err != nil {
		s.logger.Error("active session in the store is unreadable; not continued", "session", row.ID, "err", err)
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	acts, err := s.m.Restore(sess)
	if err != nil {
		s.logger.Error("active session not continued", "session", row.ID, "err", err)
		return
	}
	s.logger.Info("dosing session continued after a restart", "session", sess.ID)
	s.apply(acts, time.Now())
}

// sessionID is the active session's id, "" when none.
func (s *sessions) sessionID() string { return *s.current.Load() }

// Consume implements ReadingConsumer.
func (s *sessions) Consume(r *drivers.Reading) {
	if len(r.Samples) > 0 || s.sessionID() == "" {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	acts := s.m.Observe(r.Device, r.Metric.String(), r.Value, r.Valid, r.Received)
	if r.Metric == drivers.NIBPSystolic && r.Valid {
		// A blood pressure arrived: the reminder has been answered.
		s.al.advisory(advisoryNIBPDue, false)
	}
	s.apply(acts, r.Received)
}

// run ticks the manager (the schedule runs without readings) until ctx ends.
func (s *sessions) run(ctx context.Context) {
	t := time.NewTicker(sessionTickInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.mu.Lock()
			s.apply(s.m.Tick(now), now)
			s.mu.Unlock()
		}
	}
}

// start, dose and end change the session on a person's request; how is the
// path ("http", "cli", "mqtt").
func (s *sessions) start(route, clinicRef, by, how string) (session.Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	sess, acts, err := s.m.Start(route, clinicRef, now)
	if err != nil {
		return session.Session{}, err
	}
	s.al.record(audit.SessionEntry("start", sess.ID, by, how, now))
	s.logger.Info("dosing session started", "session", sess.ID, "route", string(sess.Route), "by", by, "how", how)
	s.apply(acts, now)
	return sess, nil
}

func (s *sessions) dose(by, how string) (session.Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	acts, err := s.m.Dose(now)
	if err != nil {
		return session.Session{}, err
	}
	sess, _ := s.m.Active()
	s.al.record(audit.SessionEntry("dose", sess.ID, by, how, now))
	s.logger.Info("dose recorded", "session", sess.ID, "doses", len(sess.Doses), "by", by, "how", how)
	s.apply(acts, now)
	return sess, nil
}

func (s *sessions) end(by, how string) (session.Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	sess, acts, err := s.m.End(now)
	if err != nil {
		return session.Session{}, err
	}
	s.al.record(audit.SessionEntry("end", sess.ID, by, how, now))
	s.logger.Info("dosing session ended", "session", sess.ID, "by", by, "how", how)
	s.apply(acts, now)
	return sess, nil
}

// active returns the running session.
func (s *sessions) active() (session.Session, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m.Active()
}

// nextNIBPDue is when the next scheduled blood pressure is due.
func (s *sessions) nextNIBPDue() (time.Time, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.m.NextNIBPDue()
}

// apply carries out the manager's actions, in order. Called with s.mu held.
func (s *sessions) apply(acts []session.Action, now time.Time) {
	for _, a := range acts {
		switch a := a.(type) {
		case session.StartNIBP:
			s.startNIBP(now)
		case session.MissedNIBP:
			s.al.advisory(advisoryNIBPMissed, a.On)
			if a.On {
				s.al.advisory(advisoryNIBPDue, false) // the missed alarm says it now
			}
		case session.BaselineHigh:
			s.logger.Warn("pre-dose blood pressure above the limit", "systolic", a.Systolic, "diastolic", a.Diastolic,
				"limit", fmt.Sprintf("%g/%g", a.Limit.Systolic, a.Limit.Diastolic))
			s.al.advisory(advisoryBaselineHigh, true)
		case session.BaselineMissing:
			s.logger.Warn("dose without a baseline of some vitals: their rise-over-baseline alarms cannot work", "metrics", a.Metrics)
			s.al.advisory(advisoryBaselineGaps, true)
		case session.Baselines:
			// The baseline belongs to the patient, not to the device that
			// measured it: every device's rise-over-baseline rules use it.
			for metric, v := range a.Values {
				for id := range s.devices {
					if err := s.al.engine.SetBaseline(id, metric, v.Value); err != nil {
						s.logger.Warn("baseline refused", "metric", metric, "err", err)
					}
				}
			}
		case session.BaselinesCleared:
			for metric := range a.Values {
				for id := range s.devices {
					s.al.engine.ClearBaseline(id, metric)
				}
			}
			for _, c := range []string{advisoryBaselineHigh, advisoryBaselineGaps, advisoryNIBPDue} {
				s.al.advisory(c, false)
			}
		case session.SessionChanged:
			s.changed(a.Session, now)
		}
	}
}

// startNIBP starts a measurement on every device that takes the command;
// when none could, staff get the advisory reminder.
func (s *sessions) startNIBP(now time.Time) {
	started := 0
	for id, d := range s.devices {
		err := d.command(nibpStartCommand, now)
		switch {
		case err == nil:
			started++
			s.logger.Info("scheduled blood pressure started", "device", id)
		case errors.Is(err, ErrCommandsRefused), errors.Is(err, drivers.ErrUnknownCommand):
		default:
			s.logger.Warn("scheduled blood pressure not started", "device", id, "err", err)
		}
	}
	if started == 0 {
		s.al.advisory(advisoryNIBPDue, true)
	}
}

// changed stores and publishes the session, and tells the alarm engine and
// the pipelines which session is active.
func (s *sessions) changed(sess session.Session, now time.Time) {
	active := sess.Active()
	id := ""
	if active {
		id = sess.ID
	}
	s.current.Store(&id)
	s.al.handle(s.al.engine.SetSession(id, now))
	if s.st != nil {
		data, err := sess.StoredJSON()
		if err == nil {
			row := store.SessionRow{ID: sess.ID, Room: sess.Room, Started: sess.Started, Data: data}
			if !active {
				ended := sess.Ended
				row.Ended = &ended
			}
			err = s.st.PutSession(row)
		}
		if err != nil {
			s.logger.Error("session not stored", "session", sess.ID, "err", err)
			s.al.storage(false)
		}
	}
	s.publish(sess, active)
}

// publish puts the session's public form (never the clinic reference),
// retained, on the room's session topic.
func (s *sessions) publish(sess session.Session, active bool) {
	if s.pub == nil {
		return
	}
	var payload []byte
	if !active {
		payload, _ = json.Marshal(struct {
			Active bool             `json:"active"`
			Last   *session.Session `json:"last"`
		}{false, nilIfZero(sess)})
	} else {
		payload, _ = json.Marshal(struct {
			Active  bool            `json:"active"`
			Session session.Session `json:"session"`
		}{true, sess})
	}
	s.pub.PublishSession(payload)
}

func nilIfZero(s session.Session) *session.Session {
	if s.ID == "" {
		return nil
	}
	return &s
}

// advisory raises or clears a room-wide advisory alarm.
func (a *alarms) advisory(condition string, on bool) {
	if a.stopped.Load() {
		return
	}
	a.handle(a.engine.SetAdvisory("", condition, on, advisoryPriority[condition], time.Now()))
}

// advisoryPriority: a scheduled blood pressure that is due with no device
// to take it, or missed, must reach the staff's phones (the routes take
// medium and high by default): blood pressure peaks about 40 min after a
// ketamine dose (clinical.md 3). Baseline warnings are for the record and
// the display.
var advisoryPriority = map[string]alarm.Priority{
	advisoryNIBPDue:      alarm.Medium,
	advisoryNIBPMissed:   alarm.Medium,
	advisoryBaselineHigh: alarm.Low,
	advisoryBaselineGaps: alarm.Low,
}

// command carries out a command from the room's MQTT session topic.
func (s *sessions) command(c mqtt.SessionCommand) error {
	var err error
	switch c.Name {
	case "start":
		_, err = s.start(c.Route, "", c.By, "mqtt")
	case "dose":
		_, err = s.dose(c.By, "mqtt")
	case "end":
		_, err = s.end(c.By, "mqtt")
	default:
		err = fmt.Errorf("unknown session command %q", c.Name)
	}
	return err
}
