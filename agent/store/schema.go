package store

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
)

// migrations are the schema's history: migrations[i] takes a database from
// version i to version i+1 (PRAGMA user_version). A released step is never
// edited; a change is a new step appended at the end. Each step runs in its
// own transaction together with the user_version update, so a crash leaves
// the file at the old version or the new one, never between.
//
// Times are INTEGER nanoseconds since the Unix epoch, UTC (exact, compact,
// and they sort); NULL where the time is unknown. Booleans are 0/1.
var migrations = []string{
	// 1: the issue 5 schema.
	`
CREATE TABLE readings (
	id          INTEGER PRIMARY KEY,
	device      TEXT    NOT NULL,
	metric      TEXT    NOT NULL,          -- catalogue name (drivers.Metric.Name)
	seq         INTEGER NOT NULL,          -- the device's reading sequence
	device_time INTEGER,                   -- the device's own clock; NULL when it sends none
	received    INTEGER NOT NULL,          -- the agent's clock
	value       REAL,                      -- NULL when the reading carries no value
	unit        TEXT    NOT NULL,          -- UCUM
	flags       INTEGER NOT NULL,          -- drivers.Flags bitmask
	flag_names  TEXT,                      -- the same flags, comma-separated, for people; NULL when none
	valid       INTEGER NOT NULL,
	session_id  TEXT
);
CREATE INDEX readings_received ON readings(received, seq);
CREATE INDEX readings_device_seq ON readings(device, seq);
CREATE INDEX readings_session ON readings(session_id, received) WHERE session_id IS NOT NULL;

CREATE TABLE waveform_chunks (
	id           INTEGER PRIMARY KEY,
	device       TEXT    NOT NULL,
	metric       TEXT    NOT NULL,
	seq          INTEGER NOT NULL,
	device_time  INTEGER,
	received     INTEGER NOT NULL,
	sample_rate  REAL    NOT NULL,         -- Hz
	sample_count INTEGER NOT NULL,
	samples      BLOB    NOT NULL,         -- see samples.go: a format byte, then the samples
	flags        INTEGER NOT NULL,
	flag_names   TEXT,
	valid        INTEGER NOT NULL,
	session_id   TEXT
);
CREATE INDEX waveform_chunks_received ON waveform_chunks(received, seq);
CREATE INDEX waveform_chunks_device_seq ON waveform_chunks(device, seq);
CREATE INDEX waveform_chunks_session ON waveform_chunks(session_id, received) WHERE session_id IS NOT NULL;

CREATE TABLE device_events (
	id         INTEGER PRIMARY KEY,
	time       INTEGER NOT NULL,
	device     TEXT    NOT NULL,
	state      TEXT    NOT NULL,           -- devstatus.State
	conditions TEXT,                       -- devstatus.Condition list, comma-separated; NULL when none
	detail     TEXT
);
CREATE INDEX device_events_time ON device_events(time);

CREATE TABLE alarm_events (
	id         INTEGER PRIMARY KEY,
	alarm_id   TEXT    NOT NULL,
	event_id   TEXT    NOT NULL,
	phase      TEXT    NOT NULL,
	kind       TEXT    NOT NULL,
	priority   TEXT    NOT NULL,           -- low, medium, high
	state      TEXT    NOT NULL,
	metric     TEXT,
	value      REAL,
	unit       TEXT,
	limit_value REAL,
	condition  TEXT,
	text       TEXT    NOT NULL,
	site       TEXT    NOT NULL,
	room       TEXT    NOT NULL,
	device     TEXT,
	session_id TEXT,
	onset      INTEGER,
	sent       INTEGER NOT NULL
);
CREATE INDEX alarm_events_sent ON alarm_events(sent);
CREATE INDEX alarm_events_session ON alarm_events(session_id, sent) WHERE session_id IS NOT NULL;

CREATE TABLE audit (
	seq   INTEGER PRIMARY KEY AUTOINCREMENT, -- the store's own numbering, never reused
	time  INTEGER NOT NULL,
	type  TEXT    NOT NULL,
	entry TEXT    NOT NULL                   -- audit.Entry as its JSON line
);
CREATE INDEX audit_time ON audit(time);

CREATE TABLE sessions (
	id      TEXT PRIMARY KEY,
	room    TEXT    NOT NULL,
	started INTEGER NOT NULL,
	ended   INTEGER,
	data    BLOB                              -- owned by the session package, stored as given
);
CREATE INDEX sessions_room_started ON sessions(room, started);

-- AUTOINCREMENT: an id is never reused, even after the newest entries were
-- published and deleted, so the publisher's "after id" cursor stays valid.
CREATE TABLE outbox (
	id       INTEGER PRIMARY KEY AUTOINCREMENT,
	topic    TEXT    NOT NULL,
	payload  BLOB    NOT NULL,
	qos      INTEGER NOT NULL,
	retained INTEGER NOT NULL,
	created  INTEGER NOT NULL
);
`,
}

// SchemaVersion is the schema version this binary writes.
func SchemaVersion() int { return len(migrations) }

// migrate brings the database to len(steps), one transaction per step.
func migrate(db *sql.DB, path string, steps []string, log *slog.Logger) error {
	ctx := context.Background()
	var have int
	if err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&have); err != nil {
		return fmt.Errorf("store: read schema version of %s: %w", path, err)
	}
	if have > len(steps) {
		return &SchemaVersionError{Path: path, Found: have, Known: len(steps)}
	}
	if have < 0 {
		return fmt.Errorf("store: %s has a negative schema version %d: not a Vigil store", path, have)
	}
	for v := have; v < len(steps); v++ {
		if err := applyStep(ctx, db, v+1, steps[v]); err != nil {
			return fmt.Errorf("store: migrate %s to schema version %d: %w", path, v+1, classify(err))
		}
		log.Info("store schema migrated", "path", path, "version", v+1)
	}
	return nil
}

func applyStep(ctx context.Context, db *sql.DB, version int, step string) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, step); err != nil {
		return err
	}
	// user_version lives in the database header, written by this
	// transaction: it commits or rolls back with the step.
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", version)); err != nil {
		return err
	}
	return tx.Commit()
}
