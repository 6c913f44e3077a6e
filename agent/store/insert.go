package store

import (
	"context"
	"database/sql"
	"errors"
	"strings"
)

// insertStmts are the writer's prepared statements. With one writer
// connection, database/sql reuses them inside every transaction (Tx.Stmt).
type insertStmts struct {
	reading, waveform, deviceEvent, alarmEvent, audit, outbox, deleteOutbox *sql.Stmt
	// multiRows rows per statement
	readings, waveforms, outboxes *sql.Stmt
}

func (st *insertStmts) prepare(db *sql.DB) error {
	var err error
	p := func(q string) *sql.Stmt {
		if err != nil {
			return nil
		}
		var s *sql.Stmt
		s, err = db.Prepare(q)
		return s
	}
	st.reading = p(`INSERT INTO readings (device, metric, seq, device_time, received, value, unit, flags, flag_names, valid, session_id)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	st.waveform = p(`INSERT INTO waveform_chunks (device, metric, seq, device_time, received, sample_rate, sample_count, samples, flags, flag_names, valid, session_id)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	st.deviceEvent = p(`INSERT INTO device_events (time, device, state, conditions, detail) VALUES (?, ?, ?, ?, ?)`)
	st.alarmEvent = p(`INSERT INTO alarm_events (alarm_id, event_id, phase, kind, priority, state, metric, value, unit, limit_value,
		condition, text, site, room, device, session_id, onset, sent)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`)
	st.audit = p(`INSERT INTO audit (time, type, entry) VALUES (?, ?, ?)`)
	st.outbox = p(`INSERT INTO outbox (topic, payload, qos, retained, created) VALUES (?, ?, ?, ?, ?)`)
	st.deleteOutbox = p(`DELETE FROM outbox WHERE id = ?`)
	st.readings = p(multiInsert(`INSERT INTO readings (device, metric, seq, device_time, received, value, unit, flags, flag_names, valid, session_id)`, readingCols))
	st.waveforms = p(multiInsert(`INSERT INTO waveform_chunks (device, metric, seq, device_time, received, sample_rate, sample_count, samples, flags, flag_names, valid, session_id)`, waveformCols))
	st.outboxes = p(multiInsert(`INSERT INTO outbox (topic, payload, qos, retained, created)`, outboxCols))
	if err != nil {
		st.close()
	}
	return err
}

// multiInsert is head followed by multiRows groups of cols placeholders.
func multiInsert(head string, cols int) string {
	group := "(" + strings.TrimSuffix(strings.Repeat("?, ", cols), ", ") + ")"
	return head + " VALUES " + strings.TrimSuffix(strings.Repeat(group+", ", multiRows), ", ")
}

func (st *insertStmts) close() {
	for _, s := range []*sql.Stmt{st.reading, st.waveform, st.deviceEvent, st.alarmEvent, st.audit, st.outbox, st.deleteOutbox,
		st.readings, st.waveforms, st.outboxes} {
		if s != nil {
			s.Close()
		}
	}
}

// commitBatch writes items and deletes outbox ids in one transaction and
// returns the outbox rows it inserted, in item order. On error nothing of
// the batch is in the database (the transaction is rolled back).
func (s *Store) commitBatch(items []pending, deletes []int64) ([]OutboxEntry, error) {
	// The commit runs to its end even when the Writer's context is over:
	// shutting down is exactly when the queue must reach the disk.
	ctx := context.Background()
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return nil, classify(err)
	}
	entries, err := s.insertAll(ctx, tx, items, deletes)
	if err != nil {
		if rerr := tx.Rollback(); rerr != nil && !errors.Is(rerr, sql.ErrTxDone) {
			err = errors.Join(err, rerr)
		}
		return nil, classify(err)
	}
	if err := tx.Commit(); err != nil {
		return nil, classify(err)
	}
	return entries, nil
}

// Under load a transaction holds thousands of readings: they are inserted
// multiRows rows per statement, which saves most of the per-statement cost
// of database/sql and the driver (BenchmarkCommitReadings). The rest of a
// batch goes through the single-row statements.
const multiRows = 64

// Columns per row of the multi-row tables.
const (
	readingCols  = 11
	waveformCols = 12
	outboxCols   = 5
)

func (s *Store) insertAll(ctx context.Context, tx *sql.Tx, items []pending, deletes []int64) ([]OutboxEntry, error) {
	var (
		readingArgs, waveformArgs, outboxArgs []any
		entries                               []OutboxEntry
		deviceEvent, alarmEvent, auditStmt    *sql.Stmt
	)
	stmt := func(cached **sql.Stmt, prepared *sql.Stmt) *sql.Stmt {
		if *cached == nil {
			*cached = tx.StmtContext(ctx, prepared)
		}
		return *cached
	}
	for i := range items {
		p := &items[i]
		if r := p.reading; r != nil {
			if len(r.Samples) > 0 {
				waveformArgs = append(waveformArgs,
					r.Device, r.Metric.String(), int64(r.Seq), nullTime(r.DeviceTime), encodeTime(r.Received),
					r.SampleRate, len(r.Samples), appendSamples(nil, r.Samples), int64(r.Flags), flagNames(r.Flags), r.Valid,
					nullString(p.session))
			} else {
				var value sql.NullFloat64
				if r.Valid {
					value = sql.NullFloat64{Float64: r.Value, Valid: true}
				}
				readingArgs = append(readingArgs,
					r.Device, r.Metric.String(), int64(r.Seq), nullTime(r.DeviceTime), encodeTime(r.Received),
					value, r.Metric.Info().Unit, int64(r.Flags), flagNames(r.Flags), r.Valid, nullString(p.session))
			}
		}
		if ev := p.alarmEvent; ev != nil {
			var session string
			if ev.Session != nil {
				session = *ev.Session
			}
			if _, err := stmt(&alarmEvent, s.insert.alarmEvent).ExecContext(ctx,
				ev.AlarmID, ev.EventID, string(ev.Phase), string(ev.Kind), ev.Priority.String(), string(ev.State),
				nullString(ev.Metric), nullFloat(ev.Value), nullString(ev.Unit), nullFloat(ev.Limit),
				nullString(ev.Condition), ev.Text, ev.Site, ev.Room, nullString(ev.Device), nullString(session),
				nullTime(ev.Onset), encodeTime(ev.Sent)); err != nil {
				return nil, err
			}
		}
		if d := p.deviceEvent; d != nil {
			if _, err := stmt(&deviceEvent, s.insert.deviceEvent).ExecContext(ctx,
				encodeTime(d.Time), d.Device, string(d.State), encodeConditions(d.Conditions), nullString(d.Detail)); err != nil {
				return nil, err
			}
		}
		if p.auditJSON != nil {
			if _, err := stmt(&auditStmt, s.insert.audit).ExecContext(ctx, p.auditTime, p.auditType, string(p.auditJSON)); err != nil {
				return nil, err
			}
		}
		if m := p.outbox; m != nil {
			payload := m.Payload
			if payload == nil {
				payload = []byte{}
			}
			outboxArgs = append(outboxArgs, m.Topic, payload, int64(m.QoS), m.Retained, p.created)
			entries = append(entries, OutboxEntry{
				Topic: m.Topic, Payload: payload, QoS: m.QoS, Retained: m.Retained, Created: decodeTime(p.created),
			})
		}
	}
	if _, err := s.insertRows(ctx, tx, s.insert.readings, s.insert.reading, readingArgs, readingCols); err != nil {
		return nil, err
	}
	if _, err := s.insertRows(ctx, tx, s.insert.waveforms, s.insert.waveform, waveformArgs, waveformCols); err != nil {
		return nil, err
	}
	ids, err := s.insertRows(ctx, tx, s.insert.outboxes, s.insert.outbox, outboxArgs, outboxCols)
	if err != nil {
		return nil, err
	}
	for i := range entries {
		entries[i].ID = ids[i]
	}
	if len(deletes) > 0 {
		del := tx.StmtContext(ctx, s.insert.deleteOutbox)
		for _, id := range deletes {
			if _, err := del.ExecContext(ctx, id); err != nil {
				return nil, err
			}
		}
	}
	return entries, nil
}

// insertRows inserts the rows of args (cols values each), multiRows at a
// time through multi and the rest one by one through single, and returns
// the rowid of each row in order. The rows of one INSERT get consecutive
// rowids: nothing else writes to the table within the statement, and a new
// rowid is one more than the largest so far (for outbox, AUTOINCREMENT makes
// that "largest ever"), so the last insert id gives them all.
func (s *Store) insertRows(ctx context.Context, tx *sql.Tx, multi, single *sql.Stmt, args []any, cols int) ([]int64, error) {
	n := len(args) / cols
	if n == 0 {
		return nil, nil
	}
	ids := make([]int64, 0, n)
	var stmt *sql.Stmt
	row := 0
	for ; n-row >= multiRows; row += multiRows {
		if stmt == nil {
			stmt = tx.StmtContext(ctx, multi)
		}
		res, err := stmt.ExecContext(ctx, args[row*cols:(row+multiRows)*cols]...)
		if err != nil {
			return nil, err
		}
		last, err := res.LastInsertId()
		if err != nil {
			return nil, err
		}
		for k := int64(multiRows - 1); k >= 0; k-- {
			ids = append(ids, last-k)
		}
	}
	if row < n {
		stmt = tx.StmtContext(ctx, single)
		for ; row < n; row++ {
			res, err := stmt.ExecContext(ctx, args[row*cols:(row+1)*cols]...)
			if err != nil {
				return nil, err
			}
			id, err := res.LastInsertId()
			if err != nil {
				return nil, err
			}
			ids = append(ids, id)
		}
	}
	return ids, nil
}
