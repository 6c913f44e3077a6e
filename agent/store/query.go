package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/vigil-monitor/vigil/agent/alarm"
	"github.com/vigil-monitor/vigil/agent/audit"
	"github.com/vigil-monitor/vigil/agent/devstatus"
	"github.com/vigil-monitor/vigil/drivers"
)

// LastSeq returns, per device, the highest seq recorded in readings and
// waveform chunks, so a restarted agent continues each device's sequence.
// It walks the (device, seq) indexes: one lookup per device, not a scan.
func (s *Store) LastSeq() (map[string]uint64, error) {
	ctx := context.Background()
	out := make(map[string]uint64)
	for _, table := range []string{"readings", "waveform_chunks"} {
		next := fmt.Sprintf(`SELECT device FROM %s WHERE device > ? ORDER BY device LIMIT 1`, table)
		last := fmt.Sprintf(`SELECT MAX(seq) FROM %s WHERE device = ?`, table)
		device := ""
		for {
			err := s.rdb.QueryRowContext(ctx, next, device).Scan(&device)
			if errors.Is(err, sql.ErrNoRows) {
				break
			}
			if err != nil {
				return nil, fmt.Errorf("store: last seq: %w", err)
			}
			var seq int64
			if err := s.rdb.QueryRowContext(ctx, last, device).Scan(&seq); err != nil {
				return nil, fmt.Errorf("store: last seq of %q: %w", device, err)
			}
			if seq > 0 && uint64(seq) > out[device] {
				out[device] = uint64(seq)
			}
		}
	}
	return out, nil
}

// ReadingQuery selects readings. Zero fields do not filter.
type ReadingQuery struct {
	From, To time.Time // received in [From, To)
	Session  string
	Devices  []string
	Metrics  []drivers.MetricID
	// Waveforms includes waveform chunks (readings with Samples); by
	// default only numeric readings are returned.
	Waveforms bool
	Limit     int // at most this many; 0: no limit
}

// StoredReading is a reading as recorded, with its session.
type StoredReading struct {
	drivers.Reading
	Session string // "" outside a session
}

// Readings returns the readings the query selects, ordered by received time
// then seq. A numeric reading without a value comes back with Valid false
// and Value 0. A metric name this binary does not know comes back as
// drivers.MetricUnknown.
func (s *Store) Readings(q ReadingQuery) ([]StoredReading, error) {
	var where []string
	var args []any
	if !q.From.IsZero() {
		where, args = append(where, "received >= ?"), append(args, q.From.UnixNano())
	}
	if !q.To.IsZero() {
		where, args = append(where, "received < ?"), append(args, q.To.UnixNano())
	}
	if q.Session != "" {
		where, args = append(where, "session_id = ?"), append(args, q.Session)
	}
	if len(q.Devices) > 0 {
		where = append(where, "device IN ("+placeholders(len(q.Devices))+")")
		for _, d := range q.Devices {
			args = append(args, d)
		}
	}
	if len(q.Metrics) > 0 {
		where = append(where, "metric IN ("+placeholders(len(q.Metrics))+")")
		for _, m := range q.Metrics {
			args = append(args, m.String())
		}
	}
	cond := ""
	if len(where) > 0 {
		cond = " WHERE " + strings.Join(where, " AND ")
	}
	query := `SELECT device, metric, seq, device_time, received, value, flags, valid, session_id, 0.0, 0, NULL FROM readings` + cond
	if q.Waveforms {
		query += ` UNION ALL SELECT device, metric, seq, device_time, received, NULL, flags, valid, session_id, sample_rate, sample_count, samples FROM waveform_chunks` + cond
		args = append(args, args...)
	}
	query += ` ORDER BY 5, 3`
	if q.Limit > 0 {
		query += fmt.Sprintf(" LIMIT %d", q.Limit)
	}
	rows, err := s.rdb.Query(query, args...)
	if err != nil {
		return nil, fmt.Errorf("store: query readings: %w", err)
	}
	defer rows.Close()
	var out []StoredReading
	for rows.Next() {
		var (
			r                  StoredReading
			metric             string
			seq, received      int64
			flags, sampleCount int64
			deviceTime         sql.NullInt64
			value              sql.NullFloat64
			session            sql.NullString
			sampleRate         float64
			samples            []byte
		)
		if err := rows.Scan(&r.Device, &metric, &seq, &deviceTime, &received, &value, &flags, &r.Valid, &session,
			&sampleRate, &sampleCount, &samples); err != nil {
			return nil, fmt.Errorf("store: query readings: %w", err)
		}
		r.Metric, _ = drivers.MetricByName(metric)
		r.Seq = uint64(seq)
		r.DeviceTime = decodeNullTime(deviceTime)
		r.Received = decodeTime(received)
		r.Flags = drivers.Flags(flags)
		r.Session = session.String
		if value.Valid {
			r.Value = value.Float64
		}
		if samples != nil {
			r.SampleRate = sampleRate
			if r.Samples, err = decodeSamples(samples, int(sampleCount)); err != nil {
				return nil, fmt.Errorf("store: waveform chunk %s seq %d: %w", r.Device, r.Seq, err)
			}
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: query readings: %w", err)
	}
	return out, nil
}

func placeholders(n int) string {
	return strings.TrimSuffix(strings.Repeat("?,", n), ",")
}

// timeRange is the WHERE clause of [from, to) on a time column; zero ends
// are open.
func timeRange(column string, from, to time.Time) (string, []any) {
	var where []string
	var args []any
	if !from.IsZero() {
		where, args = append(where, column+" >= ?"), append(args, from.UnixNano())
	}
	if !to.IsZero() {
		where, args = append(where, column+" < ?"), append(args, to.UnixNano())
	}
	if len(where) == 0 {
		return "1", nil
	}
	return strings.Join(where, " AND "), args
}

// AlarmEvents returns the alarm events sent in [from, to) (zero ends are
// open), of one session when session is not empty, in the order they were
// sent. AckURL is never stored, so it comes back empty.
func (s *Store) AlarmEvents(from, to time.Time, session string) ([]alarm.Event, error) {
	cond, args := timeRange("sent", from, to)
	if session != "" {
		cond += " AND session_id = ?"
		args = append(args, session)
	}
	rows, err := s.rdb.Query(`SELECT alarm_id, event_id, phase, kind, priority, state, metric, value, unit, limit_value,
		condition, text, site, room, device, session_id, onset, sent FROM alarm_events WHERE `+cond+` ORDER BY sent, id`, args...)
	if err != nil {
		return nil, fmt.Errorf("store: query alarm events: %w", err)
	}
	defer rows.Close()
	var out []alarm.Event
	for rows.Next() {
		var (
			ev                                    alarm.Event
			phase, kind, priority, state          string
			metric, unit, condition, device, sess sql.NullString
			value, limit                          sql.NullFloat64
			onset                                 sql.NullInt64
			sent                                  int64
		)
		if err := rows.Scan(&ev.AlarmID, &ev.EventID, &phase, &kind, &priority, &state, &metric, &value, &unit, &limit,
			&condition, &ev.Text, &ev.Site, &ev.Room, &device, &sess, &onset, &sent); err != nil {
			return nil, fmt.Errorf("store: query alarm events: %w", err)
		}
		ev.Phase, ev.Kind, ev.State = alarm.Phase(phase), alarm.Kind(kind), alarm.State(state)
		ev.Priority, _ = alarm.ParsePriority(priority)
		ev.Metric, ev.Unit, ev.Condition, ev.Device = metric.String, unit.String, condition.String, device.String
		if value.Valid {
			ev.Value = &value.Float64
		}
		if limit.Valid {
			ev.Limit = &limit.Float64
		}
		if sess.Valid {
			ev.Session = &sess.String
		}
		ev.Onset = decodeNullTime(onset)
		ev.Sent = decodeTime(sent)
		out = append(out, ev)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: query alarm events: %w", err)
	}
	return out, nil
}

// AuditEntries returns the audit entries of [from, to) (zero ends are
// open) in seq order. Seq is the store's own numbering.
func (s *Store) AuditEntries(from, to time.Time) ([]audit.Entry, error) {
	cond, args := timeRange("time", from, to)
	rows, err := s.rdb.Query(`SELECT seq, entry FROM audit WHERE `+cond+` ORDER BY seq`, args...)
	if err != nil {
		return nil, fmt.Errorf("store: query audit: %w", err)
	}
	defer rows.Close()
	var out []audit.Entry
	for rows.Next() {
		var (
			seq  int64
			line string
			e    audit.Entry
		)
		if err := rows.Scan(&seq, &line); err != nil {
			return nil, fmt.Errorf("store: query audit: %w", err)
		}
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			return nil, fmt.Errorf("store: audit entry %d: %w", seq, err)
		}
		e.Seq = uint64(seq)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: query audit: %w", err)
	}
	return out, nil
}

// DeviceEvents returns the device events of [from, to) (zero ends are open),
// of one device when device is not empty, in time order.
func (s *Store) DeviceEvents(from, to time.Time, device string) ([]DeviceEvent, error) {
	cond, args := timeRange("time", from, to)
	if device != "" {
		cond += " AND device = ?"
		args = append(args, device)
	}
	rows, err := s.rdb.Query(`SELECT time, device, state, conditions, detail FROM device_events WHERE `+cond+` ORDER BY time, id`, args...)
	if err != nil {
		return nil, fmt.Errorf("store: query device events: %w", err)
	}
	defer rows.Close()
	var out []DeviceEvent
	for rows.Next() {
		var (
			d          DeviceEvent
			t          int64
			state      string
			conditions sql.NullString
			detail     sql.NullString
		)
		if err := rows.Scan(&t, &d.Device, &state, &conditions, &detail); err != nil {
			return nil, fmt.Errorf("store: query device events: %w", err)
		}
		d.Time, d.State, d.Detail = decodeTime(t), devstatus.State(state), detail.String
		if d.Conditions, err = decodeConditions(conditions); err != nil {
			return nil, fmt.Errorf("store: query device events: %w", err)
		}
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: query device events: %w", err)
	}
	return out, nil
}
