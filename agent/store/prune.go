package store

import (
	"context"
	"database/sql"
	"fmt"
	"time"
)

// pruneBatch is the number of rows one pruning transaction deletes: small
// enough that the Writer, which shares the connection, waits some
// milliseconds at most between its commits.
const pruneBatch = 5000

// Retention under pressure (Options.MaxBytes): pruning starts above the high
// water mark and stops at the low one, so it runs in large steps rather than
// at every commit.
const (
	PressureHighWater = 0.90
	PressureLowWater  = 0.80
	pressureFirstStep = 32 // rows in the first deletion step
)

// PruneStats says what Prune (or the pressure step of PruneOutbox) deleted.
type PruneStats struct {
	// Rows older than Options.Retention.
	Readings, Waveforms, DeviceEvents int64
	// Rows deleted because the database was near Options.MaxBytes.
	PressureReadings, PressureWaveforms int64
	// Outbox entries deleted under pressure (PruneOutbox only).
	Outbox int64
}

// Prune deletes readings, waveform chunks and device events older than
// Options.Retention (by the agent's received time), in small batches.
// Sessions, alarm events, the audit log and the outbox are not touched (see
// PruneOutbox). With Options.MaxBytes set and the database above
// PressureHighWater of it, it then deletes the oldest readings and waveform
// chunks until it uses PressureLowWater or less.
func (s *Store) Prune(now time.Time) (PruneStats, error) {
	ctx := context.Background()
	var st PruneStats
	if s.opts.Retention > 0 {
		cutoff := encodeTime(now.Add(-s.opts.Retention))
		var err error
		for _, step := range []struct {
			n     *int64
			query string
		}{
			{&st.Readings, `DELETE FROM readings WHERE id IN (SELECT id FROM readings WHERE received < ? ORDER BY received LIMIT ?)`},
			{&st.Waveforms, `DELETE FROM waveform_chunks WHERE id IN (SELECT id FROM waveform_chunks WHERE received < ? ORDER BY received LIMIT ?)`},
			{&st.DeviceEvents, `DELETE FROM device_events WHERE id IN (SELECT id FROM device_events WHERE time < ? ORDER BY time LIMIT ?)`},
		} {
			*step.n, err = s.deleteBatches(ctx, step.query, cutoff)
			if err != nil {
				return st, fmt.Errorf("store: prune by retention: %w", err)
			}
		}
	}
	if s.opts.MaxBytes > 0 {
		res, err := s.relievePressure(ctx, false)
		st.PressureReadings, st.PressureWaveforms = res.PressureReadings, res.PressureWaveforms
		if err != nil {
			return st, err
		}
	}
	return st, nil
}

// relievePressure deletes the oldest readings and waveform chunks, one batch
// from whichever table holds the older row, while the database uses more
// than PressureLowWater of MaxBytes, once it has gone above
// PressureHighWater. With outbox set, it then drops the oldest outbox
// entries when no reading is left to delete.
func (s *Store) relievePressure(ctx context.Context, outbox bool) (PruneStats, error) {
	var st PruneStats
	used, err := usedBytes(ctx, s.wdb)
	if err != nil {
		return st, fmt.Errorf("store: database size: %w", err)
	}
	if float64(used) <= PressureHighWater*float64(s.opts.MaxBytes) {
		return st, nil
	}
	s.log.Warn("store near its size cap: deleting the oldest readings and waveforms",
		"path", s.path, "used_bytes", used, "max_bytes", s.opts.MaxBytes)
	low := PressureLowWater * float64(s.opts.MaxBytes)
	// The step starts small and doubles: a small database is not emptied
	// by one step (the Writer may commit between steps, and its new rows
	// must not go with the old), a large one gets down in few steps.
	step := pressureFirstStep
	for ; float64(used) > low; step = min(step*2, pruneBatch) {
		var rOldest, wOldest sql.NullInt64
		if err := s.wdb.QueryRowContext(ctx, `SELECT (SELECT MIN(received) FROM readings), (SELECT MIN(received) FROM waveform_chunks)`).
			Scan(&rOldest, &wOldest); err != nil {
			return st, fmt.Errorf("store: relieve pressure: %w", classify(err))
		}
		var n int64
		switch {
		case wOldest.Valid && (!rOldest.Valid || wOldest.Int64 <= rOldest.Int64):
			res, err := s.wdb.ExecContext(ctx,
				`DELETE FROM waveform_chunks WHERE id IN (SELECT id FROM waveform_chunks ORDER BY received LIMIT ?)`, step)
			if err != nil {
				return st, fmt.Errorf("store: relieve pressure: %w", classify(err))
			}
			n, _ = res.RowsAffected()
			st.PressureWaveforms += n
		case rOldest.Valid:
			res, err := s.wdb.ExecContext(ctx,
				`DELETE FROM readings WHERE id IN (SELECT id FROM readings ORDER BY received LIMIT ?)`, step)
			if err != nil {
				return st, fmt.Errorf("store: relieve pressure: %w", classify(err))
			}
			n, _ = res.RowsAffected()
			st.PressureReadings += n
		case outbox:
			res, err := s.wdb.ExecContext(ctx,
				`DELETE FROM outbox WHERE id IN (SELECT id FROM outbox ORDER BY id LIMIT ?)`, step)
			if err != nil {
				return st, fmt.Errorf("store: relieve pressure: %w", classify(err))
			}
			n, _ = res.RowsAffected()
			st.Outbox += n
		}
		if n == 0 {
			break // nothing left this step may delete
		}
		if used, err = usedBytes(ctx, s.wdb); err != nil {
			return st, fmt.Errorf("store: database size: %w", err)
		}
	}
	s.log.Warn("store pruned under size pressure", "path", s.path, "used_bytes", used,
		"readings", st.PressureReadings, "waveform_chunks", st.PressureWaveforms, "outbox_entries", st.Outbox)
	return st, nil
}
