// Package session is the dosing session of one treatment room and the
// ketamine session protocol (clinical.md 3): a pre-dose baseline, dose times,
// scheduled blood-pressure readings after the dose with an advisory when one
// is missed, and the end-of-session check of each vital against the
// baseline.
//
// It is pure logic: no goroutines, no I/O, no clock of its own. Every method
// takes the time it acts at, and returns the Actions the agent carries out
// (start a measurement, raise or clear an advisory, hand baselines to the
// alarm engine, persist and publish the session).
package session

import (
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/vigil-monitor/vigil/drivers"
)

// Errors callers branch on (the HTTP API maps them to status codes).
var (
	// ErrActive: the room already has an active session.
	ErrActive = errors.New("session: a session is already active in this room")
	// ErrNoSession: the room has no active session.
	ErrNoSession = errors.New("session: no active session in this room")
	// ErrTimeOrder: the time given is before the session's start or its
	// latest dose; the agent's clock stepped back. A session record keeps its
	// events in order, so the call is refused rather than recorded out of
	// order.
	ErrTimeOrder = errors.New("session: time is before the session's latest event")
	// ErrTooManyDoses: MaxDoses doses are already recorded.
	ErrTooManyDoses = errors.New("session: too many doses")
	// ErrWrongRoom: Restore was given another room's session.
	ErrWrongRoom = errors.New("session: the session belongs to another room")
	// ErrEnded: Restore was given a session that has ended.
	ErrEnded = errors.New("session: the session has ended")
)

// InputError is a field of a request or a stored record that is not valid.
type InputError struct {
	Field  string // "route", "clinic_ref", "id", ...
	Reason string
}

func (e *InputError) Error() string {
	return "session: " + e.Field + ": " + e.Reason
}

func badInput(field, format string, args ...any) *InputError {
	return &InputError{Field: field, Reason: fmt.Sprintf(format, args...)}
}

// MaxDoses bounds the doses of one session. Esketamine is given as up to
// three nasal devices five minutes apart, and a clinic may add a booster; a
// hundred is far past any real session and only stops a runaway client from
// growing the record without limit.
const MaxDoses = 100

// ---------------------------------------------------------------- ids

// The id is "s-" and 16 characters of lowercase base32: 80 random bits, so
// two sessions never collide, and nothing in it says when the session was or
// who it was for (issue 5: session ids are opaque).
const (
	idPrefix      = "s-"
	idRandomBytes = 10 // 10 bytes = 80 bits = exactly 16 base32 characters
	idLen         = len(idPrefix) + 16
	idAlphabet    = "abcdefghijklmnopqrstuvwxyz234567"
)

var idEncoding = base32.NewEncoding(idAlphabet).WithPadding(base32.NoPadding)

// NewID returns a new opaque session id from crypto/rand.
func NewID() string {
	var b [idRandomBytes]byte
	// crypto/rand.Read never returns an error (Go 1.24+): it aborts the
	// program if the operating system's generator fails.
	_, _ = rand.Read(b[:])
	return idPrefix + idEncoding.EncodeToString(b[:])
}

// ValidID reports whether id has the form NewID gives; the API and CLI check
// ids with it before looking them up.
func ValidID(id string) bool {
	if len(id) != idLen || !strings.HasPrefix(id, idPrefix) {
		return false
	}
	for _, c := range id[len(idPrefix):] {
		if !strings.ContainsRune(idAlphabet, c) {
			return false
		}
	}
	return true
}

// ---------------------------------------------------------------- route

// Route is how the dose is given (issue 5); "" when not recorded.
type Route string

const (
	RouteLozenge    Route = "lozenge"
	RouteIM         Route = "im"
	RouteIV         Route = "iv"
	RouteIntranasal Route = "intranasal"
)

// Routes lists the valid routes.
func Routes() []Route { return []Route{RouteLozenge, RouteIM, RouteIV, RouteIntranasal} }

// ParseRoute accepts a route in any case ("IM", "iv"), surrounding spaces
// ignored; "" is no route.
func ParseRoute(s string) (Route, error) {
	r := Route(strings.ToLower(strings.TrimSpace(s)))
	if r == "" || slices.Contains(Routes(), r) {
		return r, nil
	}
	// The text is not quoted back: a chart number typed into the wrong
	// field would otherwise reach a log.
	return "", badInput("route", "not one of lozenge, im, iv, intranasal")
}

func (r Route) valid() bool { return r == "" || slices.Contains(Routes(), r) }

// ---------------------------------------------------------------- clinic reference

// MaxClinicRefLen bounds a clinic reference, in characters.
const MaxClinicRefLen = 64

// ClinicRef is the clinic's own reference for a session (a chart number). It
// identifies a patient, so it is kept only in the local store: it never
// appears in MQTT payloads, metric labels, logs, notifications or exports
// (issue 5). Its String, GoString and LogValue hide it, so a session printed
// or logged by mistake does not leak it; Reveal gives it to the store.
type ClinicRef string

const redacted = "[redacted]"

// ParseClinicRef checks a clinic reference: printable text of at most
// MaxClinicRefLen characters, surrounding spaces removed; "" is none.
func ParseClinicRef(s string) (ClinicRef, error) {
	s = strings.TrimSpace(s)
	if !utf8.ValidString(s) {
		return "", badInput("clinic_ref", "not valid UTF-8")
	}
	if n := utf8.RuneCountInString(s); n > MaxClinicRefLen {
		// The value itself is never quoted back: it identifies a patient.
		return "", badInput("clinic_ref", "%d characters, at most %d", n, MaxClinicRefLen)
	}
	for _, c := range s {
		if unicode.IsControl(c) {
			return "", badInput("clinic_ref", "contains a control character")
		}
	}
	return ClinicRef(s), nil
}

// Reveal returns the reference itself, for the local store only.
func (c ClinicRef) Reveal() string { return string(c) }

// String hides the reference.
func (c ClinicRef) String() string {
	if c == "" {
		return ""
	}
	return redacted
}

// GoString hides the reference from %#v.
func (c ClinicRef) GoString() string { return `"` + c.String() + `"` }

// LogValue hides the reference from log/slog.
func (c ClinicRef) LogValue() slog.Value { return slog.StringValue(c.String()) }

// ---------------------------------------------------------------- session

// Measurement is one valid value of a metric: what, when, from which device.
type Measurement struct {
	Value  float64   `json:"value"`
	At     time.Time `json:"at"`
	Device string    `json:"device"`
}

// Session is one dosing session of one room. Values returned by the Manager
// are copies: changing them changes nothing.
type Session struct {
	ID        string    // opaque, NewID
	Room      string    // the room's configured name
	Route     Route     // "" when not recorded
	ClinicRef ClinicRef // "" when none; local store only
	Started   time.Time
	Doses     []time.Time // in order; the first fixes the baseline
	Ended     time.Time   // zero while active

	// Baseline holds, per baseline metric, the last valid reading between
	// the session's start and its first dose (clinical.md 3).
	Baseline map[string]Measurement
	// BaselineMissing lists the required baseline metrics that had no valid
	// reading before the first dose.
	BaselineMissing []string
	// BaselineWarning is set when the baseline blood pressure is above the
	// protocol's pre-dose limit (default 140/90, clinical.md 3).
	BaselineWarning string

	Schedule Schedule // the NIBP schedule after the dose
	Check    *Check   // the end-of-session check; nil until End

	// latest holds the latest valid value of each baseline metric, for the
	// baseline (before the first dose) and the end check. It is kept in the
	// stored form only, so a restart between the baseline reading and the
	// dose keeps the baseline.
	latest map[string]Measurement
}

// Active reports whether the session has not ended.
func (s *Session) Active() bool { return s.Ended.IsZero() }

// Dosed reports whether a dose is recorded.
func (s *Session) Dosed() bool { return len(s.Doses) > 0 }

// LogValue gives the session's id, room and times to log/slog, never the
// clinic reference.
func (s Session) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.String("id", s.ID),
		slog.String("room", s.Room),
		slog.Time("started", s.Started),
		slog.Int("doses", len(s.Doses)),
	}
	if !s.Ended.IsZero() {
		attrs = append(attrs, slog.Time("ended", s.Ended))
	}
	return slog.GroupValue(attrs...)
}

func (s *Session) clone() Session {
	c := *s
	c.Doses = slices.Clone(s.Doses)
	c.Baseline = maps.Clone(s.Baseline)
	c.BaselineMissing = slices.Clone(s.BaselineMissing)
	c.Schedule = s.Schedule.clone()
	if s.Check != nil {
		ck := s.Check.clone()
		c.Check = &ck
	}
	c.latest = maps.Clone(s.latest)
	return c
}

// wireSession is the JSON form. The public form (MarshalJSON: MQTT, API)
// leaves out the clinic reference and the latest values; the stored form
// (StoredJSON) keeps both.
type wireSession struct {
	ID              string                 `json:"id"`
	Room            string                 `json:"room"`
	Route           Route                  `json:"route,omitempty"`
	ClinicRef       string                 `json:"clinic_ref,omitempty"`
	Started         time.Time              `json:"started"`
	Doses           []time.Time            `json:"doses"`
	Ended           time.Time              `json:"ended,omitzero"`
	Baseline        map[string]Measurement `json:"baseline,omitempty"`
	BaselineMissing []string               `json:"baseline_missing,omitempty"`
	BaselineWarning string                 `json:"baseline_warning,omitempty"`
	Schedule        Schedule               `json:"schedule"`
	Check           *Check                 `json:"check,omitempty"`
	Latest          map[string]Measurement `json:"latest,omitempty"`
}

func (s *Session) wire(stored bool) wireSession {
	w := wireSession{
		ID: s.ID, Room: s.Room, Route: s.Route, Started: s.Started,
		Doses: s.Doses, Ended: s.Ended, Baseline: s.Baseline,
		BaselineMissing: s.BaselineMissing, BaselineWarning: s.BaselineWarning,
		Schedule: s.Schedule, Check: s.Check,
	}
	if w.Doses == nil {
		w.Doses = []time.Time{}
	}
	if stored {
		w.ClinicRef = s.ClinicRef.Reveal()
		w.Latest = s.latest
	}
	return w
}

// MarshalJSON is the public form, for MQTT and the API: it never contains the
// clinic reference.
func (s Session) MarshalJSON() ([]byte, error) { return json.Marshal(s.wire(false)) }

// StoredJSON is the form for the local store only: it keeps the clinic
// reference and the latest values (for Restore).
func (s Session) StoredJSON() ([]byte, error) { return json.Marshal(s.wire(true)) }

// UnmarshalJSON reads either form and checks it; an invalid record is
// refused whole (an *InputError), never half-used.
func (s *Session) UnmarshalJSON(data []byte) error {
	var w wireSession
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	ref, err := ParseClinicRef(w.ClinicRef)
	if err != nil {
		return err
	}
	n := Session{
		ID: w.ID, Room: w.Room, Route: w.Route, ClinicRef: ref, Started: w.Started,
		Doses: w.Doses, Ended: w.Ended, Baseline: w.Baseline,
		BaselineMissing: w.BaselineMissing, BaselineWarning: w.BaselineWarning,
		Schedule: w.Schedule, Check: w.Check, latest: w.Latest,
	}
	if len(n.Doses) == 0 {
		n.Doses = nil
	}
	if err := n.validate(); err != nil {
		return err
	}
	*s = n
	return nil
}

// UnmarshalStored reads a session from its stored form (StoredJSON).
func UnmarshalStored(data []byte) (Session, error) {
	var s Session
	if err := json.Unmarshal(data, &s); err != nil {
		return Session{}, fmt.Errorf("session: stored record: %w", err)
	}
	return s, nil
}

// validate checks a session read from outside (the store, Restore).
func (s *Session) validate() error {
	switch {
	case !ValidID(s.ID):
		return badInput("id", "not a session id")
	case s.Room == "":
		return badInput("room", "empty")
	case !s.Route.valid():
		return badInput("route", "not one of lozenge, im, iv, intranasal")
	case s.Started.IsZero():
		return badInput("started", "missing")
	case len(s.Doses) > MaxDoses:
		return badInput("doses", "%d doses, at most %d", len(s.Doses), MaxDoses)
	}
	if _, err := ParseClinicRef(string(s.ClinicRef)); err != nil {
		return err
	}
	prev := s.Started
	for _, d := range s.Doses {
		if d.Before(prev) {
			return badInput("doses", "out of order or before the start")
		}
		prev = d
	}
	if !s.Ended.IsZero() && s.Ended.Before(prev) {
		return badInput("ended", "before the start or a dose")
	}
	for _, set := range []struct {
		field string
		m     map[string]Measurement
	}{{"baseline", s.Baseline}, {"latest", s.latest}} {
		for metric, v := range set.m {
			if _, ok := tracked(metric); !ok {
				return badInput(set.field, "%q is not a baseline metric", truncate(metric, 32))
			}
			if !usable(metric, v.Value) {
				return badInput(set.field, "%s value %v is not possible", metric, v.Value)
			}
		}
	}
	sc := &s.Schedule
	if sc.MissedCount < len(sc.Missed) || len(sc.Missed) > maxScheduleRecords || len(sc.Taken) > maxScheduleRecords {
		return badInput("schedule", "inconsistent record counts")
	}
	if sc.AdvisoryOn && sc.MissingSince.IsZero() {
		return badInput("schedule", "advisory on without a missed slot")
	}
	if s.Dosed() && s.Active() && sc.NextDue.IsZero() {
		return badInput("schedule", "no next reading due after a dose")
	}
	return nil
}

// usable reports whether value is a finite value the metric can physically
// have (drivers catalogue range, clinical.md 2).
func usable(metric string, value float64) bool {
	id, ok := drivers.MetricByName(metric)
	if !ok || math.IsNaN(value) || math.IsInf(value, 0) {
		return false
	}
	return id.Info().InRange(value)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
