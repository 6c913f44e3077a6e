package store

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"math"
	"time"

	"github.com/vigil-monitor/vigil/agent/alarm"
	"github.com/vigil-monitor/vigil/agent/audit"
	"github.com/vigil-monitor/vigil/agent/devstatus"
	"github.com/vigil-monitor/vigil/drivers"
)

// Message is an MQTT publication to be committed to the outbox.
type Message struct {
	Topic    string
	Payload  []byte
	QoS      byte
	Retained bool
}

// OutboxEntry is a committed outbox row. ID orders the outbox and is never
// reused.
type OutboxEntry struct {
	ID       int64
	Topic    string
	Payload  []byte
	QoS      byte
	Retained bool
	Created  time.Time // when Add queued it
}

// DeviceEvent is one change of a device's connection state or conditions.
type DeviceEvent struct {
	Time       time.Time
	Device     string
	State      devstatus.State
	Conditions []devstatus.Condition
	Detail     string // why (the device's last error); never a secret
}

// Item is what one Add records: any combination of its parts, each written
// to its table in the same transaction. A Reading with Samples is a waveform
// chunk (waveform_chunks), any other a numeric reading (readings).
type Item struct {
	Outbox      *Message
	Reading     *drivers.Reading
	Session     string // the Reading's session id; "" outside a session
	AlarmEvent  *alarm.Event
	Audit       *audit.Entry
	DeviceEvent *DeviceEvent
}

// pending is an Item as queued: copied at Add, so the caller may reuse its
// structs, and encoded where that can fail, so a bad item is refused at Add
// rather than blocking the batch it would sit in.
type pending struct {
	outbox      *Message
	created     int64 // outbox: nanoseconds
	reading     *drivers.Reading
	session     string
	alarmEvent  *alarm.Event
	auditTime   int64
	auditType   string
	auditJSON   []byte
	deviceEvent *DeviceEvent
}

func (p *pending) hasOutbox() bool { return p.outbox != nil }

// newPending checks and copies one item. now stamps the outbox entry and an
// audit entry without a time.
func newPending(it Item, now time.Time) (pending, error) {
	if it.Outbox == nil && it.Reading == nil && it.AlarmEvent == nil && it.Audit == nil && it.DeviceEvent == nil {
		return pending{}, fmt.Errorf("%w: no part set", ErrInvalidItem)
	}
	p := pending{session: it.Session}
	if m := it.Outbox; m != nil {
		if m.Topic == "" {
			return pending{}, fmt.Errorf("%w: outbox message without topic", ErrInvalidItem)
		}
		if m.QoS > 2 {
			return pending{}, fmt.Errorf("%w: outbox QoS %d", ErrInvalidItem, m.QoS)
		}
		c := *m
		p.outbox = &c
		p.created = encodeTime(now)
	}
	if r := it.Reading; r != nil {
		if r.Metric.Info().Name == "" {
			return pending{}, fmt.Errorf("%w: reading of unknown metric %d from %q", ErrInvalidItem, r.Metric, r.Device)
		}
		if r.Seq > math.MaxInt64 {
			return pending{}, fmt.Errorf("%w: reading seq %d beyond int64", ErrInvalidItem, r.Seq)
		}
		if len(r.Samples) > 0 && !(r.SampleRate >= 0 && !math.IsInf(r.SampleRate, 0)) {
			return pending{}, fmt.Errorf("%w: waveform from %q with sample rate %v", ErrInvalidItem, r.Device, r.SampleRate)
		}
		c := *r
		// drivers.Reading: a value outside the metric's possible range is
		// invalid and flagged out-of-range. A non-finite value is outside
		// every range; SQLite would turn NaN into NULL under a valid flag.
		if len(c.Samples) == 0 && c.Valid && (math.IsNaN(c.Value) || math.IsInf(c.Value, 0)) {
			c.Valid = false
			c.Flags |= drivers.FlagOutOfRange
		}
		p.reading = &c
	}
	if ev := it.AlarmEvent; ev != nil {
		c := *ev
		c.Value, c.Limit, c.Session = copyPtr(ev.Value), copyPtr(ev.Limit), copyPtr(ev.Session)
		c.AckURL = "" // a signed link: a credential, never stored
		if c.Sent.IsZero() {
			c.Sent = now
		}
		p.alarmEvent = &c
	}
	if e := it.Audit; e != nil {
		c := *e
		if c.Time.IsZero() {
			c.Time = now
		}
		// The store numbers the audit table itself: the seq of a file log
		// (or the caller's) is not carried into the stored line.
		c.Seq = 0
		js, err := c.MarshalJSON()
		if err != nil {
			return pending{}, fmt.Errorf("%w: audit entry: %v", ErrInvalidItem, err)
		}
		p.auditTime, p.auditType, p.auditJSON = encodeTime(c.Time), string(c.Type), js
	}
	if d := it.DeviceEvent; d != nil {
		c := *d
		c.Conditions = append([]devstatus.Condition(nil), d.Conditions...)
		if c.Time.IsZero() {
			c.Time = now
		}
		p.deviceEvent = &c
	}
	return p, nil
}

func copyPtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	c := *p
	return &c
}

// Times are stored as nanoseconds since the Unix epoch; the zero time.Time
// as NULL (or 0 in NOT NULL columns, which newPending fills).
func encodeTime(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func nullTime(t time.Time) sql.NullInt64 {
	if t.IsZero() {
		return sql.NullInt64{}
	}
	return sql.NullInt64{Int64: t.UnixNano(), Valid: true}
}

func decodeTime(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

func decodeNullTime(n sql.NullInt64) time.Time {
	if !n.Valid {
		return time.Time{}
	}
	return decodeTime(n.Int64)
}

func nullString(s string) sql.NullString { return sql.NullString{String: s, Valid: s != ""} }

func nullFloat(p *float64) sql.NullFloat64 {
	if p == nil || math.IsNaN(*p) {
		return sql.NullFloat64{}
	}
	return sql.NullFloat64{Float64: *p, Valid: true}
}

func flagNames(f drivers.Flags) sql.NullString {
	if f == 0 {
		return sql.NullString{}
	}
	return sql.NullString{String: f.String(), Valid: true}
}

// Conditions are stored as a JSON array of strings: any text survives the
// round trip, and it stays readable in the sqlite3 shell.
func encodeConditions(cs []devstatus.Condition) sql.NullString {
	if len(cs) == 0 {
		return sql.NullString{}
	}
	b, err := json.Marshal(cs)
	if err != nil { // a []string always marshals
		return sql.NullString{}
	}
	return sql.NullString{String: string(b), Valid: true}
}

func decodeConditions(s sql.NullString) ([]devstatus.Condition, error) {
	if !s.Valid || s.String == "" {
		return nil, nil
	}
	var out []devstatus.Condition
	if err := json.Unmarshal([]byte(s.String), &out); err != nil {
		return nil, fmt.Errorf("device event conditions: %w", err)
	}
	return out, nil
}
