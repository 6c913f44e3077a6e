package store

import (
	"database/sql"
	"errors"
	"fmt"
	"time"
)

// SessionRow is a dosing session as the store keeps it. Data belongs to the
// session package (its own encoding, which may hold the clinic reference that
// never leaves the local store); the store keeps it as given.
type SessionRow struct {
	ID      string
	Room    string
	Started time.Time
	Ended   *time.Time // nil while the session runs
	Data    []byte
}

// PutSession inserts the session, or replaces the row with its ID. It
// commits directly (not through the Writer): when it returns nil the row is
// committed, with the durability of Options.SyncFull.
func (s *Store) PutSession(row SessionRow) error {
	switch {
	case row.ID == "":
		return fmt.Errorf("%w: session without id", ErrInvalidItem)
	case row.Started.IsZero():
		return fmt.Errorf("%w: session %s without start time", ErrInvalidItem, row.ID)
	}
	var ended sql.NullInt64
	if row.Ended != nil {
		ended = nullTime(*row.Ended)
	}
	data := row.Data
	if data == nil {
		data = []byte{}
	}
	_, err := s.wdb.Exec(`INSERT INTO sessions (id, room, started, ended, data) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET room = excluded.room, started = excluded.started, ended = excluded.ended, data = excluded.data`,
		row.ID, row.Room, encodeTime(row.Started), ended, data)
	if err != nil {
		return fmt.Errorf("store: put session %s: %w", row.ID, classify(err))
	}
	return nil
}

const sessionColumns = `id, room, started, ended, data`

func scanSession(sc interface{ Scan(...any) error }) (SessionRow, error) {
	var (
		row     SessionRow
		started int64
		ended   sql.NullInt64
	)
	if err := sc.Scan(&row.ID, &row.Room, &started, &ended, &row.Data); err != nil {
		return SessionRow{}, err
	}
	row.Started = decodeTime(started)
	if ended.Valid {
		t := decodeTime(ended.Int64)
		row.Ended = &t
	}
	return row, nil
}

// Session returns the session with that id, or ErrNotFound.
func (s *Store) Session(id string) (SessionRow, error) {
	row, err := scanSession(s.rdb.QueryRow(`SELECT `+sessionColumns+` FROM sessions WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return SessionRow{}, fmt.Errorf("%w: session %s", ErrNotFound, id)
	}
	if err != nil {
		return SessionRow{}, fmt.Errorf("store: session %s: %w", id, err)
	}
	return row, nil
}

// Sessions returns the sessions of a room (every room when room is empty),
// newest start first, at most limit of them (all when limit is not
// positive).
func (s *Store) Sessions(room string, limit int) ([]SessionRow, error) {
	query := `SELECT ` + sessionColumns + ` FROM sessions`
	var args []any
	if room != "" {
		query += ` WHERE room = ?`
		args = append(args, room)
	}
	query += ` ORDER BY started DESC, id DESC`
	if limit > 0 {
		query += fmt.Sprintf(` LIMIT %d`, limit)
	}
	rows, err := s.rdb.Query(query, args...)
	if err != nil {
		return nil, fmt.Errorf("store: sessions: %w", err)
	}
	defer rows.Close()
	var out []SessionRow
	for rows.Next() {
		row, err := scanSession(rows)
		if err != nil {
			return nil, fmt.Errorf("store: sessions: %w", err)
		}
		out = append(out, row)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: sessions: %w", err)
	}
	return out, nil
}

// ActiveSession returns the room's session that has not ended (the newest,
// should there be more than one); false when there is none.
func (s *Store) ActiveSession(room string) (SessionRow, bool, error) {
	row, err := scanSession(s.rdb.QueryRow(`SELECT `+sessionColumns+` FROM sessions
		WHERE room = ? AND ended IS NULL ORDER BY started DESC, id DESC LIMIT 1`, room))
	if errors.Is(err, sql.ErrNoRows) {
		return SessionRow{}, false, nil
	}
	if err != nil {
		return SessionRow{}, false, fmt.Errorf("store: active session of %s: %w", room, err)
	}
	return row, true, nil
}
