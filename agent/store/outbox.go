package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// DefaultOutboxPage is the number of entries Outbox returns when limit is
// not positive.
const DefaultOutboxPage = 1000

// Outbox returns up to limit entries with an id above afterID, in id order:
// the publisher's cursor walks the outbox with it and deletes what the
// broker acknowledged (Writer.DeleteOutbox).
func (s *Store) Outbox(afterID int64, limit int) ([]OutboxEntry, error) {
	if limit <= 0 {
		limit = DefaultOutboxPage
	}
	rows, err := s.rdb.Query(`SELECT id, topic, payload, qos, retained, created FROM outbox WHERE id > ? ORDER BY id LIMIT ?`,
		afterID, limit)
	if err != nil {
		return nil, fmt.Errorf("store: read outbox: %w", err)
	}
	defer rows.Close()
	var out []OutboxEntry
	for rows.Next() {
		var (
			e       OutboxEntry
			qos     int64
			created int64
		)
		if err := rows.Scan(&e.ID, &e.Topic, &e.Payload, &qos, &e.Retained, &created); err != nil {
			return nil, fmt.Errorf("store: read outbox: %w", err)
		}
		if e.Payload == nil { // SQLite gives an empty BLOB back as NULL
			e.Payload = []byte{}
		}
		e.QoS = byte(qos)
		e.Created = decodeTime(created)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: read outbox: %w", err)
	}
	return out, nil
}

// OutboxStats returns the number of entries waiting and the creation time of
// the first one in line (zero when the outbox is empty), for
// vigil_outbox_depth and vigil_outbox_oldest_age_seconds. Counting is a scan
// of the outbox: cheap when it drains, some milliseconds at a million entries.
func (s *Store) OutboxStats() (depth int64, oldest time.Time, err error) {
	tx, err := s.rdb.BeginTx(context.Background(), &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return 0, time.Time{}, fmt.Errorf("store: outbox stats: %w", err)
	}
	defer tx.Rollback()
	// One read transaction: depth and oldest describe the same snapshot.
	if err := tx.QueryRow(`SELECT COUNT(*) FROM outbox`).Scan(&depth); err != nil {
		return 0, time.Time{}, fmt.Errorf("store: outbox stats: %w", err)
	}
	var created int64
	switch err := tx.QueryRow(`SELECT created FROM outbox ORDER BY id LIMIT 1`).Scan(&created); {
	case errors.Is(err, sql.ErrNoRows):
		return depth, time.Time{}, nil
	case err != nil:
		return 0, time.Time{}, fmt.Errorf("store: outbox stats: %w", err)
	}
	return depth, decodeTime(created), nil
}

// PruneOutbox enforces the outbox bounds and returns how many entries it
// dropped; the caller raises a technical alarm and counts them when that is
// not zero (issue 5: dropping is never silent). In order:
//
//   - age: entries created before now-OutboxMaxAge, taken from the head of
//     the queue (id order) up to the first younger entry, so a clock
//     stepped back never drops entries queued after the step;
//   - count: the oldest entries beyond OutboxMaxEntries;
//   - size: when Options.MaxBytes is set and the database uses more than
//     PressureHighWater of it, the oldest readings and waveform chunks are
//     deleted first (not counted in dropped), and only when none are left
//     the oldest outbox entries, until it uses PressureLowWater or less.
func (s *Store) PruneOutbox(now time.Time) (dropped int64, err error) {
	ctx := context.Background()
	if s.opts.OutboxMaxAge > 0 {
		cutoff := encodeTime(now.Add(-s.opts.OutboxMaxAge))
		// The first entry young enough to keep; when none is, one past the
		// newest id now, so entries the Writer commits meanwhile are kept.
		var boundary int64
		if err := s.wdb.QueryRowContext(ctx, `SELECT COALESCE(
				(SELECT id FROM outbox WHERE created >= ? ORDER BY id LIMIT 1),
				(SELECT COALESCE(MAX(id), 0) + 1 FROM outbox))`, cutoff).Scan(&boundary); err != nil {
			return dropped, fmt.Errorf("store: prune outbox by age: %w", classify(err))
		}
		n, err := s.dropOutboxBefore(ctx, boundary)
		dropped += n
		if err != nil {
			return dropped, fmt.Errorf("store: prune outbox by age: %w", err)
		}
	}
	if s.opts.OutboxMaxEntries > 0 {
		var boundary int64
		switch err := s.wdb.QueryRowContext(ctx,
			`SELECT id FROM outbox ORDER BY id DESC LIMIT 1 OFFSET ?`, s.opts.OutboxMaxEntries-1).Scan(&boundary); {
		case errors.Is(err, sql.ErrNoRows):
			boundary = 0 // within the bound
		case err != nil:
			return dropped, fmt.Errorf("store: prune outbox by count: %w", classify(err))
		}
		if boundary > 0 {
			n, err := s.dropOutboxBefore(ctx, boundary)
			dropped += n
			if err != nil {
				return dropped, fmt.Errorf("store: prune outbox by count: %w", err)
			}
		}
	}
	if s.opts.MaxBytes > 0 {
		res, err := s.relievePressure(ctx, true)
		dropped += res.Outbox
		if err != nil {
			return dropped, err
		}
	}
	return dropped, nil
}

// dropOutboxBefore deletes the entries with an id below boundary, in
// batches of pruneBatch rows, each its own transaction, so the writer never
// waits long.
func (s *Store) dropOutboxBefore(ctx context.Context, boundary int64) (int64, error) {
	return s.deleteBatches(ctx,
		`DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE id < ? ORDER BY id LIMIT ?)`, boundary)
}

// deleteBatches runs a DELETE whose last parameter is the batch size until
// it deletes less than a batch.
func (s *Store) deleteBatches(ctx context.Context, query string, args ...any) (int64, error) {
	var total int64
	args = append(args, pruneBatch)
	for {
		res, err := s.wdb.ExecContext(ctx, query, args...)
		if err != nil {
			return total, classify(err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, err
		}
		total += n
		if n < pruneBatch {
			return total, nil
		}
	}
}
