// Package store is Vigil's durable local store: one SQLite file (through the
// pure-Go modernc.org/sqlite, so the binary cross-compiles to ARM mini-PCs)
// holding readings, waveform chunks, device events, alarm events, the audit
// log, dosing sessions and the MQTT outbox (issue 5: "nothing lost, everything
// recorded").
//
// Writes go through one Writer, which commits everything queued in one
// transaction (group commit): at one item a second each item commits alone at
// once, under load items share a transaction, so a 75 Hz waveform costs
// little. Queries use a separate read-only pool and never wait for the writer
// (WAL mode). README.md states the durability guarantees precisely.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// FileMode is the permission a new database file is created with (less the
// umask): the agent writes, its group (a backup job, an auditor) reads,
// others nothing. SQLite gives its -wal and -shm files the database file's
// mode. An existing file keeps its mode.
const FileMode os.FileMode = 0o640

// Defaults Open applies for zero Options fields.
const (
	// DefaultRetention keeps readings, waveform chunks and device events for
	// 90 days (issue 5: "Retention configurable"); sessions, alarm events and
	// the audit log are never pruned by age.
	DefaultRetention = 90 * 24 * time.Hour
	// DefaultOutboxMaxEntries bounds the outbox to about 9 hours of one
	// monitor's traffic (10 Hz numerics x 3 metrics + one waveform chunk a
	// second is 31 messages/s).
	DefaultOutboxMaxEntries = 1_000_000
	// DefaultOutboxMaxAge drops unpublished messages older than a day: past
	// that a live consumer has no use for them, and the readings stay in the
	// readings table for the session record.
	DefaultOutboxMaxAge = 24 * time.Hour
	// DefaultBusyTimeout is how long a connection waits for a lock held by
	// another (a backup tool, the sqlite3 shell) before SQLITE_BUSY.
	DefaultBusyTimeout = 5 * time.Second
	// DefaultReadConns is the size of the read-only pool.
	DefaultReadConns = 2
)

// Errors callers branch on.
var (
	// ErrNotFound: no row with that key (Session).
	ErrNotFound = errors.New("store: not found")
	// ErrQueueFull: the Writer's queue holds WriterOptions.QueueSize items;
	// the items of that Add call were not queued (counted in QueueFull).
	ErrQueueFull = errors.New("store: writer queue full")
	// ErrStoreFull: a commit failed because the disk is full (SQLITE_FULL,
	// ENOSPC) or the database reached Options.MaxBytes. The Writer keeps the
	// batch and retries; the agent raises a technical alarm and prunes.
	ErrStoreFull = errors.New("store: database full")
	// ErrClosed: the Store was closed, or the Writer's Run has returned.
	ErrClosed = errors.New("store: closed")
	// ErrInvalidItem: an Item the store cannot record faithfully (no part,
	// an unknown metric, a seq beyond int64). Nothing of that Add is queued.
	ErrInvalidItem = errors.New("store: invalid item")
)

// SchemaVersionError is Open's refusal of a database written by a newer
// Vigil: its schema version is beyond the migrations this binary knows, and
// writing to it could corrupt what the newer version relies on.
type SchemaVersionError struct {
	Path  string
	Found int // the file's user_version
	Known int // the newest version this binary can migrate to
}

func (e *SchemaVersionError) Error() string {
	return fmt.Sprintf("store: %s has schema version %d, newer than this Vigil supports (%d): upgrade Vigil or use another store.path",
		e.Path, e.Found, e.Known)
}

// Options configure Open. The zero value is usable: see the defaults.
type Options struct {
	// SyncFull selects synchronous=FULL: the WAL is fsynced at every commit,
	// so a commit also survives a power cut. The default (NORMAL) fsyncs
	// only at checkpoints: a commit survives a process crash or SIGKILL, but
	// a power cut may lose the commits since the last checkpoint.
	SyncFull bool
	// BusyTimeout: how long to wait for another process's lock; default
	// DefaultBusyTimeout.
	BusyTimeout time.Duration
	// Retention: how long readings, waveform chunks and device events are
	// kept (Prune); 0 means DefaultRetention, negative keeps them forever.
	Retention time.Duration
	// OutboxMaxEntries bounds the outbox (PruneOutbox drops the oldest
	// beyond it); 0 means DefaultOutboxMaxEntries, negative no bound.
	OutboxMaxEntries int64
	// OutboxMaxAge: PruneOutbox drops entries older than this; 0 means
	// DefaultOutboxMaxAge, negative no bound.
	OutboxMaxAge time.Duration
	// MaxBytes caps the database file (SQLite max_page_count): a commit
	// that would grow it beyond fails with ErrStoreFull. Prune and
	// PruneOutbox keep the used size below PressureHighWater of it by
	// deleting the oldest readings and waveform chunks. 0: no cap. The WAL
	// file comes on top (about 4 MiB between checkpoints).
	MaxBytes int64
	// ReadConns is the size of the read-only query pool; default
	// DefaultReadConns.
	ReadConns int
	// Logger gets open, migration and pruning messages; nil means
	// slog.Default().
	Logger *slog.Logger
}

// Store is an open database. Its methods are safe for concurrent use.
type Store struct {
	path string
	opts Options
	log  *slog.Logger

	wdb *sql.DB // the single writer connection
	rdb *sql.DB // read-only pool

	insert insertStmts

	closeOnce sync.Once
	closeErr  error
}

// Open opens (creating it with FileMode when missing) the database at path,
// applies pending schema migrations, and returns the Store. The directory
// must exist. A file from a newer Vigil is refused with a
// *SchemaVersionError.
func Open(path string, o Options) (*Store, error) {
	if path == "" {
		return nil, errors.New("store: empty database path")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("store: database path %q: %w", path, err)
	}
	dir := filepath.Dir(abs)
	if st, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("store: directory of database %s: %w", abs, err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("store: directory of database %s: %s is not a directory", abs, dir)
	}
	// SQLite would create the file with 0644 less the umask; creating it
	// first gives it FileMode. O_EXCL is not used: an existing file is fine.
	f, err := os.OpenFile(abs, os.O_RDWR|os.O_CREATE, FileMode)
	if err != nil {
		return nil, fmt.Errorf("store: open database %s: %w", abs, err)
	}
	st, err := f.Stat()
	f.Close()
	if err != nil {
		return nil, fmt.Errorf("store: open database %s: %w", abs, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("store: database %s is not a regular file", abs)
	}

	o = o.withDefaults()
	s := &Store{path: abs, opts: o, log: o.Logger}

	s.wdb, err = sql.Open("sqlite", s.dsn(false))
	if err != nil {
		return nil, fmt.Errorf("store: open database %s: %w", abs, err)
	}
	// One writer connection: SQLite allows one writer at a time anyway, and
	// a single connection makes the order of transactions the order of
	// calls. It is never closed for idleness, so pragmas stay in force.
	s.wdb.SetMaxOpenConns(1)
	s.wdb.SetMaxIdleConns(1)
	s.wdb.SetConnMaxLifetime(0)
	s.wdb.SetConnMaxIdleTime(0)

	if err := s.checkJournalMode(); err != nil {
		s.wdb.Close()
		return nil, err
	}
	if err := migrate(s.wdb, abs, migrations, s.log); err != nil {
		s.wdb.Close()
		return nil, err
	}
	if err := s.insert.prepare(s.wdb); err != nil {
		s.wdb.Close()
		return nil, fmt.Errorf("store: prepare statements: %w", err)
	}

	s.rdb, err = sql.Open("sqlite", s.dsn(true))
	if err != nil {
		s.insert.close()
		s.wdb.Close()
		return nil, fmt.Errorf("store: open read pool on %s: %w", abs, err)
	}
	s.rdb.SetMaxOpenConns(o.ReadConns)
	s.rdb.SetMaxIdleConns(o.ReadConns)
	if err := s.rdb.Ping(); err != nil {
		s.insert.close()
		s.rdb.Close()
		s.wdb.Close()
		return nil, fmt.Errorf("store: open read pool on %s: %w", abs, err)
	}
	return s, nil
}

func (o Options) withDefaults() Options {
	if o.BusyTimeout <= 0 {
		o.BusyTimeout = DefaultBusyTimeout
	}
	if o.Retention == 0 {
		o.Retention = DefaultRetention
	}
	if o.OutboxMaxEntries == 0 {
		o.OutboxMaxEntries = DefaultOutboxMaxEntries
	}
	if o.OutboxMaxAge == 0 {
		o.OutboxMaxAge = DefaultOutboxMaxAge
	}
	if o.ReadConns <= 0 {
		o.ReadConns = DefaultReadConns
	}
	if o.MaxBytes < 0 {
		o.MaxBytes = 0
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return o
}

// pageSize is SQLite's default page size, which Vigil does not change; it
// turns MaxBytes into max_page_count.
const pageSize = 4096

// dsn builds the connection string. The path is a URI filename (the driver
// opens with SQLITE_OPEN_URI), so the characters URIs give a meaning are
// escaped. The pragmas run on every new connection of the pool.
func (s *Store) dsn(readOnly bool) string {
	esc := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23")
	var b strings.Builder
	b.WriteString("file:")
	b.WriteString(esc.Replace(s.path))
	fmt.Fprintf(&b, "?_pragma=busy_timeout(%d)", s.opts.BusyTimeout.Milliseconds())
	b.WriteString("&_pragma=foreign_keys(1)")
	// Temporary b-trees (sorting, IN lists) stay in memory: on a full disk
	// a query must still run.
	b.WriteString("&_pragma=temp_store(memory)")
	if readOnly {
		b.WriteString("&_pragma=query_only(1)")
		// Readers serve the outbox after an outage, exports and reports:
		// a small page cache each keeps the agent's memory small on a
		// mini-PC (the OS caches the file anyway).
		b.WriteString("&_pragma=cache_size(-512)")
		return b.String()
	}
	b.WriteString("&_pragma=journal_mode(WAL)")
	if s.opts.SyncFull {
		b.WriteString("&_pragma=synchronous(FULL)")
	} else {
		b.WriteString("&_pragma=synchronous(NORMAL)")
	}
	// After a checkpoint the WAL is cut back to this size, so one burst
	// does not leave a large file behind.
	b.WriteString("&_pragma=journal_size_limit(8388608)")
	if s.opts.MaxBytes > 0 {
		fmt.Fprintf(&b, "&_pragma=max_page_count(%d)", max(s.opts.MaxBytes/pageSize, 1))
	}
	// BEGIN IMMEDIATE: a write transaction takes the write lock at once,
	// so it never fails half-way with SQLITE_BUSY on lock upgrade.
	b.WriteString("&_txlock=immediate")
	return b.String()
}

// checkJournalMode confirms WAL is in force: on a file system without shared
// memory support SQLite silently keeps the rollback journal, and readers
// would then block the writer.
func (s *Store) checkJournalMode() error {
	var mode string
	if err := s.wdb.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil {
		return fmt.Errorf("store: open database %s: %w", s.path, err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("store: database %s: journal mode is %q, WAL is required", s.path, mode)
	}
	return nil
}

// Path is the database file.
func (s *Store) Path() string { return s.path }

// Close closes both pools. A Writer must have returned from Run first. A
// second Close returns the first one's result.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		var errs []error
		s.insert.close()
		if err := s.rdb.Close(); err != nil {
			errs = append(errs, err)
		}
		// Closing the last connection checkpoints the WAL into the
		// database file and removes the -wal and -shm files.
		if err := s.wdb.Close(); err != nil {
			errs = append(errs, err)
		}
		if err := errors.Join(errs...); err != nil {
			s.closeErr = fmt.Errorf("store: close %s: %w", s.path, err)
		}
	})
	return s.closeErr
}

// classify maps a SQLite error to the store's typed errors: a full disk or
// the MaxBytes cap becomes ErrStoreFull (the cause stays reachable).
func classify(err error) error {
	if err == nil {
		return nil
	}
	var se *sqlite.Error
	if errors.As(err, &se) && se.Code()&0xff == sqlite3.SQLITE_FULL {
		return fmt.Errorf("%w: %w", ErrStoreFull, err)
	}
	return err
}

// usedBytes is the size the database's live pages take: its page count less
// the free pages, which SQLite reuses before growing the file.
func usedBytes(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) (int64, error) {
	var pages, free, size int64
	if err := q.QueryRowContext(ctx, "SELECT page_count, freelist_count, page_size FROM pragma_page_count, pragma_freelist_count, pragma_page_size").
		Scan(&pages, &free, &size); err != nil {
		return 0, err
	}
	return (pages - free) * size, nil
}
