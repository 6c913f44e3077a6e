package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-monitor/vigil/agent/session"
)

// StoreConfig is the store: section: the local SQLite database of readings,
// alarms, the audit log, sessions and the MQTT outbox.
type StoreConfig struct {
	// Path of the database; default DefaultStorePath().
	Path string
	// Retention is how long readings, waveforms and device events are kept;
	// sessions, alarm events and the audit log are kept. Default 90 days.
	Retention time.Duration
	// OutboxMaxMessages and OutboxMaxAge bound the messages waiting for the
	// broker; beyond them the oldest are dropped, with a technical alarm.
	OutboxMaxMessages int64
	OutboxMaxAge      time.Duration
	// MaxSizeMB caps the database file; 0 means no cap (the disk is).
	MaxSizeMB int64
	// SyncFull makes every commit durable against power loss (fsync per
	// commit), not only against a crash of the agent; default false.
	SyncFull bool
}

// SessionConfig is the session: section: the ketamine session protocol
// (clinical.md 3).
type SessionConfig struct {
	// PredoseSystolic/Diastolic: a baseline above either gives a warning at
	// the first dose; default 140/90.
	PredoseSystolic, PredoseDiastolic float64
	// FirstNIBPAfterDose: the first scheduled blood pressure; default 40m.
	FirstNIBPAfterDose time.Duration
	// NIBPInterval: the scheduled blood pressures after the first; default 15m.
	NIBPInterval time.Duration
	// NIBPGrace: how late a scheduled reading may be before it counts as
	// missed (an advisory alarm); default 5m.
	NIBPGrace time.Duration
	// MinObservation before the end-of-session check; default 2h.
	MinObservation time.Duration
	// CheckTolerancePercent: the end check's allowed difference from the
	// baseline; default 20.
	CheckTolerancePercent float64
}

// Defaults of the store and session sections.
const (
	DefaultRetention          = 90 * 24 * time.Hour
	DefaultOutboxMaxMessages  = 2_000_000 // a week of one oximeter's numerics and pleth at 3 messages/s
	DefaultOutboxMaxAge       = 7 * 24 * time.Hour
	DefaultPredoseSystolic    = 140
	DefaultPredoseDiastolic   = 90
	DefaultFirstNIBPAfterDose = 40 * time.Minute
	DefaultNIBPInterval       = 15 * time.Minute
	DefaultNIBPGrace          = 5 * time.Minute
	DefaultMinObservation     = 2 * time.Hour
	DefaultCheckTolerance     = 20
)

// DefaultStorePath is the database's path when store.path is unset: in the
// systemd unit's StateDirectory ($STATE_DIRECTORY), else /var/lib/vigil.
func DefaultStorePath() string {
	return filepath.Join(stateDirectory(), "vigil.db")
}

// stateDirectory is systemd's StateDirectory for the unit (the first, when
// several are listed), else /var/lib/vigil.
func stateDirectory() string {
	dir := os.Getenv("STATE_DIRECTORY")
	if i := strings.IndexByte(dir, ':'); i >= 0 {
		dir = dir[:i]
	}
	if dir == "" {
		dir = "/var/lib/vigil"
	}
	return dir
}

var (
	storeKeys   = []string{"path", "retention", "outbox_max_messages", "outbox_max_age", "max_size_mb", "sync"}
	sessionKeys = []string{"predose_bp_limit", "first_nibp_after_dose", "nibp_interval", "nibp_grace", "min_observation", "check_tolerance_percent"}
)

func (w *walker) store(p pair, s *StoreConfig) {
	pairs, ok := w.mapping(p.val, p.path, "a mapping with path:, retention:, ...")
	if !ok {
		return
	}
	for _, q := range pairs {
		switch q.name {
		case "path":
			if v, set := w.text(q); set {
				if v == "" {
					w.add(q.val, q.path, "empty; omit the key for the default %s", DefaultStorePath())
					break
				}
				s.Path = w.resolvePath(v)
			}
		case "retention":
			if v, set := w.duration(q); set {
				if v < 24*time.Hour {
					w.add(q.val, q.path, "retention %s must be at least 24h (a session's record must outlive the day)", v)
					break
				}
				s.Retention = v
			}
		case "outbox_max_messages":
			if v, set := w.integer(q); set {
				if v < 1000 {
					w.add(q.val, q.path, "outbox_max_messages %d must be at least 1000", v)
					break
				}
				s.OutboxMaxMessages = int64(v)
			}
		case "outbox_max_age":
			if v, set := w.duration(q); set {
				if v < time.Hour {
					w.add(q.val, q.path, "outbox_max_age %s must be at least 1h", v)
					break
				}
				s.OutboxMaxAge = v
			}
		case "max_size_mb":
			if v, set := w.integer(q); set {
				if v < 16 {
					w.add(q.val, q.path, "max_size_mb %d must be at least 16 (or omit it for no cap)", v)
					break
				}
				s.MaxSizeMB = int64(v)
			}
		case "sync":
			if v, set := w.text(q); set {
				switch v {
				case "normal":
				case "full":
					s.SyncFull = true
				default:
					w.add(q.val, q.path, "sync %s: use normal (survives a crash of the agent) or full (also a power loss, slower)", quote(v))
				}
			}
		default:
			w.unknown(q, storeKeys, "")
		}
	}
}

func (w *walker) session(p pair, s *SessionConfig) {
	pairs, ok := w.mapping(p.val, p.path, "a mapping with predose_bp_limit:, first_nibp_after_dose:, ...")
	if !ok {
		return
	}
	positive := func(q pair, dst *time.Duration) {
		if v, set := w.duration(q); set {
			if v <= 0 || v > 24*time.Hour {
				w.add(q.val, q.path, "%s must be above 0 and at most 24h", v)
				return
			}
			*dst = v
		}
	}
	for _, q := range pairs {
		switch q.name {
		case "predose_bp_limit":
			v, set := w.text(q)
			if !set {
				break
			}
			sys, dia, err := parseBP(v)
			if err != nil {
				w.add(q.val, q.path, "%s: %v", quote(v), err)
				break
			}
			s.PredoseSystolic, s.PredoseDiastolic = sys, dia
		case "first_nibp_after_dose":
			positive(q, &s.FirstNIBPAfterDose)
		case "nibp_interval":
			positive(q, &s.NIBPInterval)
		case "nibp_grace":
			positive(q, &s.NIBPGrace)
		case "min_observation":
			positive(q, &s.MinObservation)
		case "check_tolerance_percent":
			if v, set := w.number(q); set {
				if v <= 0 || v > 100 {
					w.add(q.val, q.path, "check_tolerance_percent %g must be above 0 and at most 100", v)
					break
				}
				s.CheckTolerancePercent = v
			}
		default:
			w.unknown(q, sessionKeys, "")
		}
	}
}

// sessionFieldKeys maps session.Protocol's fields to the config keys.
var sessionFieldKeys = map[string]string{
	"PredoseBPLimit":           "predose_bp_limit",
	"PredoseBPLimit.Systolic":  "predose_bp_limit",
	"PredoseBPLimit.Diastolic": "predose_bp_limit",
	"FirstNIBPAfterDose":       "first_nibp_after_dose",
	"NIBPInterval":             "nibp_interval",
	"NIBPGrace":                "nibp_grace",
	"MinObservation":           "min_observation",
	"CheckTolerance":           "check_tolerance_percent",
}

// crossCheckSession runs the session protocol's own check on the section
// (with its defaults), so what the agent would refuse at start is a
// problem at its line here.
func (w *walker) crossCheckSession(c *Config) {
	if w.anyBad("session") {
		return
	}
	p := ProtocolOf(c.Session)
	err := p.Validate()
	var pe *session.ProtocolError
	if err == nil || !errors.As(err, &pe) {
		return
	}
	key := "session." + sessionFieldKeys[pe.Field]
	node := w.at(key)
	if node == nil {
		node = w.at("session")
	}
	w.add(node, key, "%s", pe.Reason)
}

// ProtocolOf is the session protocol the session: section describes.
func ProtocolOf(c SessionConfig) session.Protocol {
	p := session.DefaultProtocol()
	p.PredoseBPLimit = session.BP{Systolic: c.PredoseSystolic, Diastolic: c.PredoseDiastolic}
	p.FirstNIBPAfterDose = c.FirstNIBPAfterDose
	p.NIBPInterval = c.NIBPInterval
	p.NIBPGrace = c.NIBPGrace
	p.MinObservation = c.MinObservation
	p.CheckTolerance = c.CheckTolerancePercent / 100
	return p
}

// parseBP reads "140/90" (systolic/diastolic, mm[Hg]).
func parseBP(s string) (sys, dia float64, err error) {
	a, b, ok := strings.Cut(s, "/")
	if !ok {
		return 0, 0, fmt.Errorf("write systolic/diastolic in mmHg, e.g. 140/90")
	}
	sys, err1 := strconv.ParseFloat(strings.TrimSpace(a), 64)
	dia, err2 := strconv.ParseFloat(strings.TrimSpace(b), 64)
	switch {
	case err1 != nil || err2 != nil:
		return 0, 0, fmt.Errorf("write systolic/diastolic in mmHg, e.g. 140/90")
	case sys < 60 || sys > 250 || dia < 30 || dia > 200 || dia >= sys:
		return 0, 0, fmt.Errorf("systolic must be 60-250 and diastolic 30-200, below the systolic")
	}
	return sys, dia, nil
}

// storeDefaults fills what store: and session: left unset.
func storeDefaults(c *Config) {
	s := &c.Store
	if s.Path == "" {
		s.Path = DefaultStorePath()
	}
	if s.Retention == 0 {
		s.Retention = DefaultRetention
	}
	if s.OutboxMaxMessages == 0 {
		s.OutboxMaxMessages = DefaultOutboxMaxMessages
	}
	if s.OutboxMaxAge == 0 {
		s.OutboxMaxAge = DefaultOutboxMaxAge
	}
	p := &c.Session
	if p.PredoseSystolic == 0 {
		p.PredoseSystolic, p.PredoseDiastolic = DefaultPredoseSystolic, DefaultPredoseDiastolic
	}
	if p.FirstNIBPAfterDose == 0 {
		p.FirstNIBPAfterDose = DefaultFirstNIBPAfterDose
	}
	if p.NIBPInterval == 0 {
		p.NIBPInterval = DefaultNIBPInterval
	}
	if p.NIBPGrace == 0 {
		p.NIBPGrace = DefaultNIBPGrace
	}
	if p.MinObservation == 0 {
		p.MinObservation = DefaultMinObservation
	}
	if p.CheckTolerancePercent == 0 {
		p.CheckTolerancePercent = DefaultCheckTolerance
	}
}
