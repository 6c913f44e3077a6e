package store

import (
	"database/sql"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-monitor/vigil/agent/alarm"
	"github.com/vigil-monitor/vigil/agent/audit"
	"github.com/vigil-monitor/vigil/agent/devstatus"
	"github.com/vigil-monitor/vigil/drivers"
)

func TestOpenCreatesFileWithMode(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	path := filepath.Join(t.TempDir(), "new.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != FileMode {
		t.Errorf("mode %v, want %v", st.Mode().Perm(), FileMode)
	}
	// SQLite gives the WAL the database's mode.
	if st, err := os.Stat(path + "-wal"); err != nil {
		t.Errorf("no WAL file: %v", err)
	} else if st.Mode().Perm() != FileMode {
		t.Errorf("WAL mode %v, want %v", st.Mode().Perm(), FileMode)
	}
	var mode string
	if err := s.rdb.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Errorf("journal_mode %q, %v", mode, err)
	}
}

func TestOpenPragmas(t *testing.T) {
	for _, tc := range []struct {
		full bool
		want int // PRAGMA synchronous: 1 NORMAL, 2 FULL
	}{{false, 1}, {true, 2}} {
		s := openTest(t, Options{SyncFull: tc.full, BusyTimeout: 1234 * time.Millisecond})
		var sync, busy, fk int
		row := s.wdb.QueryRow("SELECT synchronous, timeout, foreign_keys FROM pragma_synchronous, pragma_busy_timeout, pragma_foreign_keys")
		if err := row.Scan(&sync, &busy, &fk); err != nil {
			t.Fatal(err)
		}
		if sync != tc.want || busy != 1234 || fk != 1 {
			t.Errorf("SyncFull %v: synchronous=%d busy_timeout=%d foreign_keys=%d", tc.full, sync, busy, fk)
		}
		// The read pool cannot write.
		if _, err := s.rdb.Exec("DELETE FROM outbox"); err == nil {
			t.Error("read pool accepted a write")
		}
	}
}

func TestOpenPathWithURICharacters(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a?b#c%d")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "v?x.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := os.Stat(path); err != nil {
		t.Errorf("database not at %s: %v", path, err)
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "no-such-dir", "vigil.db")
	_, err := Open(missing, Options{})
	if err == nil || !strings.Contains(err.Error(), missing) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing directory: %v", err)
	}
	if _, err := os.Stat(filepath.Dir(missing)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open created the directory")
	}

	notSQLite := filepath.Join(dir, "garbage.db")
	if err := os.WriteFile(notSQLite, []byte(strings.Repeat("not a database ", 500)), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(notSQLite, Options{}); err == nil {
		t.Error("a file that is not SQLite opened")
	}

	if _, err := Open(dir, Options{}); err == nil {
		t.Error("a directory opened as the database")
	}
	if _, err := Open("", Options{}); err == nil {
		t.Error("empty path opened")
	}
}

// rawDB opens a file without the Store, to build files at old versions.
func rawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	db.SetMaxOpenConns(1)
	t.Cleanup(func() { db.Close() })
	return db
}

func userVersion(t *testing.T, db *sql.DB) int {
	t.Helper()
	var v int
	if err := db.QueryRow("PRAGMA user_version").Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

func TestMigrations(t *testing.T) {
	latest := SchemaVersion()
	if latest != len(migrations) || latest < 1 {
		t.Fatalf("SchemaVersion %d, %d migrations", latest, len(migrations))
	}

	t.Run("empty file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "empty.db")
		if err := os.WriteFile(path, nil, 0o640); err != nil {
			t.Fatal(err)
		}
		s, err := Open(path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if v := userVersion(t, s.rdb); v != latest {
			t.Errorf("user_version %d, want %d", v, latest)
		}
	})

	// A file at every older version, each holding a row that must survive
	// the remaining migrations.
	for v := 0; v < latest; v++ {
		t.Run(fmt.Sprintf("from version %d", v), func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "old.db")
			db := rawDB(t, path)
			if err := migrate(db, path, migrations[:v], discardLogger()); err != nil {
				t.Fatal(err)
			}
			if got := userVersion(t, db); got != v {
				t.Fatalf("built version %d, want %d", got, v)
			}
			var marker int
			if v >= 1 {
				if _, err := db.Exec(`INSERT INTO sessions (id, room, started, data) VALUES ('s-old', 'room-1', 1, x'01')`); err != nil {
					t.Fatal(err)
				}
				marker = 1
			}
			db.Close()

			s, err := Open(path, Options{})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			if got := userVersion(t, s.rdb); got != latest {
				t.Errorf("user_version %d, want %d", got, latest)
			}
			rows, err := s.Sessions("", 0)
			if err != nil || len(rows) != marker {
				t.Errorf("sessions after migration: %v, %v", rows, err)
			}
			// Every table is there and usable.
			w := startWriter(t, s, WriterOptions{})
			if err := w.Add(readingItem(numeric("ox", 1, drivers.SpO2, 97, t0), "")); err != nil {
				t.Fatal(err)
			}
			flush(t, w.Writer)
		})
	}

	t.Run("newer version refused", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "newer.db")
		db := rawDB(t, path)
		if _, err := db.Exec(fmt.Sprintf("PRAGMA user_version = %d", latest+1)); err != nil {
			t.Fatal(err)
		}
		db.Close()
		_, err := Open(path, Options{})
		var sv *SchemaVersionError
		if !errors.As(err, &sv) || sv.Found != latest+1 || sv.Known != latest || !strings.Contains(err.Error(), path) {
			t.Fatalf("Open of a newer file: %v", err)
		}
		if !strings.Contains(err.Error(), "newer than this Vigil supports") {
			t.Errorf("message does not say why: %v", err)
		}
	})

	t.Run("failing step rolls back", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "fail.db")
		db := rawDB(t, path)
		steps := []string{
			`CREATE TABLE a (x INTEGER)`,
			`CREATE TABLE b (x INTEGER); INSERT INTO no_such_table VALUES (1)`,
		}
		if err := migrate(db, path, steps, discardLogger()); err == nil {
			t.Fatal("failing migration succeeded")
		}
		if v := userVersion(t, db); v != 1 {
			t.Errorf("user_version %d after failed step 2, want 1", v)
		}
		var n int
		if err := db.QueryRow(`SELECT COUNT(*) FROM sqlite_master WHERE name = 'b'`).Scan(&n); err != nil || n != 0 {
			t.Errorf("table of the failed step exists (%d, %v)", n, err)
		}
	})
}

func TestReadingsRoundTrip(t *testing.T) {
	s := openTest(t, Options{})
	w := startWriter(t, s, WriterOptions{})

	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	devTime := time.Date(2026, 3, 14, 9, 20, 0, 0, time.UTC)
	in := []StoredReading{
		{Reading: drivers.Reading{Device: "ox", Seq: 1, Metric: drivers.SpO2, Value: 97, Valid: true, Received: at(0),
			DeviceTime: devTime, Flags: drivers.FlagLowPerfusion}, Session: "S1"},
		{Reading: drivers.Reading{Device: "ox", Seq: 2, Metric: drivers.PulseRate, Valid: false, Received: at(1),
			Flags: drivers.FlagSensorOff | drivers.FlagSearching}, Session: "S1"},
		{Reading: drivers.Reading{Device: "ox", Seq: 3, Metric: drivers.Pleth, Samples: []float64{0, 1, 65535, 512},
			SampleRate: 75, Valid: true, Received: at(2)}, Session: "S1"},
		{Reading: drivers.Reading{Device: "ox", Seq: 4, Metric: drivers.Pleth, Samples: []float64{0.5, -3.25},
			SampleRate: 62.5, Valid: true, Received: at(3)}},
		{Reading: drivers.Reading{Device: "bp", Seq: 1, Metric: drivers.NIBPSystolic, Value: 128.5, Valid: true, Received: at(3)}},
		{Reading: drivers.Reading{Device: "ox", Seq: 5, Metric: drivers.Pleth, Samples: []float64{math.Pi, math.Inf(1), math.Copysign(0, -1)},
			SampleRate: 75, Received: at(4)}},
	}
	for _, r := range in {
		r := r
		if err := w.Add(Item{Reading: &r.Reading, Session: r.Session}); err != nil {
			t.Fatal(err)
		}
	}
	flush(t, w.Writer)

	got, err := s.Readings(ReadingQuery{Waveforms: true})
	if err != nil {
		t.Fatal(err)
	}
	// Ordered by received then seq: bp seq 1 before ox seq 4 at the same time.
	want := []StoredReading{in[0], in[1], in[2], in[4], in[3], in[5]}
	if len(got) != len(want) {
		t.Fatalf("got %d readings, want %d", len(got), len(want))
	}
	for i := range want {
		if !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("reading %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
	if !math.Signbit(got[5].Samples[2]) {
		t.Error("-0 sample lost its sign")
	}

	// Numerics only by default.
	got, err = s.Readings(ReadingQuery{})
	if err != nil || len(got) != 3 {
		t.Fatalf("numerics: %d, %v", len(got), err)
	}
	// Filters.
	for name, tc := range map[string]struct {
		q    ReadingQuery
		seqs []uint64
	}{
		"session":        {ReadingQuery{Session: "S1", Waveforms: true}, []uint64{1, 2, 3}},
		"device":         {ReadingQuery{Devices: []string{"bp"}, Waveforms: true}, []uint64{1}},
		"metrics":        {ReadingQuery{Metrics: []drivers.MetricID{drivers.PulseRate, drivers.Pleth}, Waveforms: true}, []uint64{2, 3, 4, 5}},
		"range":          {ReadingQuery{From: at(1), To: at(3), Waveforms: true}, []uint64{2, 3}},
		"limit":          {ReadingQuery{Limit: 2, Waveforms: true}, []uint64{1, 2}},
		"no such device": {ReadingQuery{Devices: []string{"x"}}, nil},
	} {
		got, err := s.Readings(tc.q)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		var seqs []uint64
		for _, r := range got {
			seqs = append(seqs, r.Seq)
		}
		if !reflect.DeepEqual(seqs, tc.seqs) {
			t.Errorf("%s: seqs %v, want %v", name, seqs, tc.seqs)
		}
	}

	// The raw row: value NULL for none, flag names for people, unit.
	var value sql.NullFloat64
	var names, unit string
	if err := s.rdb.QueryRow(`SELECT value, flag_names, unit FROM readings WHERE device = 'ox' AND seq = 2`).Scan(&value, &names, &unit); err != nil {
		t.Fatal(err)
	}
	if value.Valid || names != "sensor-off,searching" || unit != "/min" {
		t.Errorf("row: value %v, flag_names %q, unit %q", value, names, unit)
	}

	seqs, err := s.LastSeq()
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(seqs, map[string]uint64{"ox": 5, "bp": 1}) {
		t.Errorf("LastSeq %v", seqs)
	}
}

func TestReadingNonFiniteValueRecordedInvalid(t *testing.T) {
	s := openTest(t, Options{})
	w := startWriter(t, s, WriterOptions{})
	for i, v := range []float64{math.NaN(), math.Inf(-1)} {
		if err := w.Add(Item{Reading: numeric("ox", uint64(i+1), drivers.SpO2, v, t0)}); err != nil {
			t.Fatal(err)
		}
	}
	flush(t, w.Writer)
	got, err := s.Readings(ReadingQuery{})
	if err != nil || len(got) != 2 {
		t.Fatalf("%v, %v", got, err)
	}
	for _, r := range got {
		if r.Valid || !r.Flags.Has(drivers.FlagOutOfRange) || r.Value != 0 {
			t.Errorf("non-finite value stored as %+v", r)
		}
	}
}

func TestInvalidItemsRefused(t *testing.T) {
	s := openTest(t, Options{})
	w := startWriter(t, s, WriterOptions{})
	good := readingItem(numeric("ox", 1, drivers.SpO2, 97, t0), "")
	for name, it := range map[string]Item{
		"empty":          {},
		"unknown metric": {Reading: &drivers.Reading{Device: "ox", Metric: drivers.MetricID(200), Received: t0}},
		"no metric":      {Reading: &drivers.Reading{Device: "ox", Received: t0}},
		"huge seq":       {Reading: &drivers.Reading{Device: "ox", Seq: math.MaxUint64, Metric: drivers.SpO2, Received: t0}},
		"no topic":       {Outbox: &Message{Payload: []byte("x"), QoS: 1}},
		"qos 3":          {Outbox: &Message{Topic: "t", QoS: 3}},
		"NaN rate":       {Reading: &drivers.Reading{Device: "ox", Metric: drivers.Pleth, Samples: []float64{1}, SampleRate: math.NaN()}},
	} {
		// A bad item refuses the whole call: the good one is not queued.
		if err := w.Add(good, it); !errors.Is(err, ErrInvalidItem) {
			t.Errorf("%s: %v", name, err)
		}
	}
	flush(t, w.Writer)
	if st := w.Stats(); st.Items != 0 {
		t.Errorf("%d items committed", st.Items)
	}
}

func TestAlarmEventsRoundTrip(t *testing.T) {
	s := openTest(t, Options{})
	w := startWriter(t, s, WriterOptions{})
	v, lim, sess := 86.0, 90.0, "S1"
	events := []alarm.Event{
		{AlarmID: "spo2-low-medium/ox", EventID: "e1", Phase: alarm.PhaseStart, Kind: alarm.Physiological,
			Priority: alarm.Medium, State: alarm.Active, Metric: "spo2", Value: &v, Unit: "%", Limit: &lim,
			Condition: "below", Text: "** SpO2 86 < 90", Site: "clinic", Room: "room-1", Device: "ox", Session: &sess,
			Onset: t0, Sent: t0.Add(time.Second), AckURL: "https://vigil.local/ack?sig=secret"},
		{AlarmID: "device-lost/ox", EventID: "e2", Phase: alarm.PhaseEnd, Kind: alarm.Technical, Priority: alarm.High,
			State: alarm.Resolved, Condition: "device_lost", Text: "*** oximeter lost", Site: "clinic", Room: "room-1",
			Sent: t0.Add(2 * time.Second)},
	}
	for i := range events {
		if err := w.Add(Item{AlarmEvent: &events[i]}); err != nil {
			t.Fatal(err)
		}
	}
	flush(t, w.Writer)

	got, err := s.AlarmEvents(time.Time{}, time.Time{}, "")
	if err != nil {
		t.Fatal(err)
	}
	want := append([]alarm.Event(nil), events...)
	want[0].AckURL = "" // a credential: never stored
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	if got, _ := s.AlarmEvents(time.Time{}, time.Time{}, "S1"); len(got) != 1 || got[0].EventID != "e1" {
		t.Errorf("by session: %+v", got)
	}
	if got, _ := s.AlarmEvents(t0.Add(1500*time.Millisecond), time.Time{}, ""); len(got) != 1 || got[0].EventID != "e2" {
		t.Errorf("by time: %+v", got)
	}
	var n int
	if err := s.rdb.QueryRow(`SELECT COUNT(*) FROM alarm_events WHERE text LIKE '%secret%' OR text LIKE '%sig=%'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("ack URL stored (%d, %v)", n, err)
	}
}

func TestAuditRoundTrip(t *testing.T) {
	s := openTest(t, Options{})
	now := t0.Add(time.Hour)
	w := startWriter(t, s, WriterOptions{Now: func() time.Time { return now }})
	v := 86.0
	entries := []audit.Entry{
		{Time: t0, Seq: 77, Type: audit.TypeAlarm, AlarmID: "a", EventID: "e1", Phase: alarm.PhaseStart, State: alarm.Active,
			Kind: alarm.Physiological, Priority: "medium", Metric: "spo2", Value: &v, Unit: "%", Condition: "below",
			Device: "ox", Room: "room-1", Site: "clinic", Session: "S1", Onset: t0, Text: "** SpO2 < 90"},
		{Time: t0.Add(time.Minute), Type: audit.TypeAcknowledge, AlarmID: "a", EventID: "e1", By: "RN J.", Via: "http"},
		{Type: audit.TypeAgent, What: "stopped"}, // no time: stamped with Now
	}
	for i := range entries {
		if err := w.Add(Item{Audit: &entries[i]}); err != nil {
			t.Fatal(err)
		}
	}
	flush(t, w.Writer)
	got, err := s.AuditEntries(time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	want := append([]audit.Entry(nil), entries...)
	for i := range want {
		want[i].Seq = uint64(i + 1) // the store's numbering
	}
	want[2].Time = now
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	if got, _ := s.AuditEntries(t0.Add(time.Second), t0.Add(time.Hour)); len(got) != 1 || got[0].Type != audit.TypeAcknowledge {
		t.Errorf("by time: %+v", got)
	}
}

func TestDeviceEventsRoundTrip(t *testing.T) {
	s := openTest(t, Options{})
	w := startWriter(t, s, WriterOptions{})
	events := []DeviceEvent{
		{Time: t0, Device: "ox", State: devstatus.Connected,
			Conditions: []devstatus.Condition{devstatus.SensorOff, "odd, name \"quoted\""}},
		{Time: t0.Add(time.Second), Device: "ox", State: devstatus.Disconnected, Detail: "read /dev/ttyUSB0: EOF"},
		{Time: t0.Add(2 * time.Second), Device: "bp", State: devstatus.Silent},
	}
	for i := range events {
		if err := w.Add(Item{DeviceEvent: &events[i]}); err != nil {
			t.Fatal(err)
		}
	}
	flush(t, w.Writer)
	got, err := s.DeviceEvents(time.Time{}, time.Time{}, "")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, events) {
		t.Errorf("got  %+v\nwant %+v", got, events)
	}
	if got, _ := s.DeviceEvents(time.Time{}, time.Time{}, "bp"); len(got) != 1 || got[0].State != devstatus.Silent {
		t.Errorf("by device: %+v", got)
	}
}

func TestSessions(t *testing.T) {
	s := openTest(t, Options{})
	if _, err := s.Session("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing session: %v", err)
	}
	if _, ok, err := s.ActiveSession("room-1"); ok || err != nil {
		t.Errorf("active in an empty store: %v %v", ok, err)
	}
	end := t0.Add(2 * time.Hour)
	rows := []SessionRow{
		{ID: "A", Room: "room-1", Started: t0, Ended: &end, Data: []byte(`{"route":"IM"}`)},
		{ID: "B", Room: "room-1", Started: t0.Add(3 * time.Hour), Data: []byte{0, 1, 2, 0xff}},
		{ID: "C", Room: "room-2", Started: t0.Add(time.Hour), Data: []byte(`{}`)},
	}
	for _, r := range rows {
		if err := s.PutSession(r); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.Session("B")
	if err != nil || !reflect.DeepEqual(got, rows[1]) {
		t.Errorf("Session B: %+v, %v", got, err)
	}
	active, ok, err := s.ActiveSession("room-1")
	if err != nil || !ok || active.ID != "B" {
		t.Errorf("active room-1: %+v %v %v", active, ok, err)
	}
	list, err := s.Sessions("room-1", 0)
	if err != nil || len(list) != 2 || list[0].ID != "B" || list[1].ID != "A" {
		t.Errorf("Sessions room-1: %+v %v", list, err)
	}
	list, err = s.Sessions("", 2)
	if err != nil || len(list) != 2 || list[0].ID != "B" || list[1].ID != "C" {
		t.Errorf("Sessions all, limit 2: %+v %v", list, err)
	}

	// Update: end B and change its data.
	rows[1].Ended = &end
	rows[1].Data = []byte(`{"doses":2}`)
	if err := s.PutSession(rows[1]); err != nil {
		t.Fatal(err)
	}
	if got, err := s.Session("B"); err != nil || !reflect.DeepEqual(got, rows[1]) {
		t.Errorf("updated B: %+v, %v", got, err)
	}
	if _, ok, err := s.ActiveSession("room-1"); ok || err != nil {
		t.Errorf("room-1 still active after end: %v %v", ok, err)
	}

	if err := s.PutSession(SessionRow{Room: "r", Started: t0}); !errors.Is(err, ErrInvalidItem) {
		t.Errorf("session without id: %v", err)
	}
	if err := s.PutSession(SessionRow{ID: "x", Room: "r"}); !errors.Is(err, ErrInvalidItem) {
		t.Errorf("session without start: %v", err)
	}
}

func TestSamplesEncoding(t *testing.T) {
	for _, tc := range []struct {
		in     []float64
		format byte
	}{
		{[]float64{0, 1, 65535}, samplesUint16},
		{[]float64{0.5, -1, 65536}, samplesFloat32},
		{[]float64{math.Inf(1), math.Inf(-1)}, samplesFloat32},
		{[]float64{0.1}, samplesFloat64},
		{[]float64{math.NaN(), 1}, samplesFloat64},
		{[]float64{math.Copysign(0, -1)}, samplesFloat32},
	} {
		b := appendSamples(nil, tc.in)
		if b[0] != tc.format {
			t.Errorf("%v: format %d, want %d", tc.in, b[0], tc.format)
		}
		out, err := decodeSamples(b, len(tc.in))
		if err != nil {
			t.Fatal(err)
		}
		for i := range tc.in {
			if math.Float64bits(out[i]) != math.Float64bits(tc.in[i]) && !(math.IsNaN(out[i]) && math.IsNaN(tc.in[i])) {
				t.Errorf("%v: sample %d came back %v", tc.in, i, out[i])
			}
		}
	}
	for _, bad := range [][]byte{nil, {9, 0, 0}, {samplesUint16, 1}, {samplesFloat64, 0, 0, 0, 0}} {
		if _, err := decodeSamples(bad, 1); err == nil {
			t.Errorf("decodeSamples(%v) accepted", bad)
		}
	}
}
