package audit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"go.uber.org/goleak"

	"github.com/vigil-monitor/vigil/agent/alarm"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2026, 3, 14, 9, 26, 53, 589793238, time.UTC)

func fixedClock() time.Time { return t0 }

// logBuffer collects a Log's slog output.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func newLogger() (*slog.Logger, *logBuffer) {
	var b logBuffer
	return slog.New(slog.NewTextHandler(&b, nil)), &b
}

func ptr[T any](v T) *T { return &v }

func physiological() alarm.Event {
	return alarm.Event{
		AlarmID: "spo2-low-medium/oximeter-1", EventID: "ev-42",
		Phase: alarm.PhaseStart, Kind: alarm.Physiological, Priority: alarm.Medium, State: alarm.Active,
		Metric: "spo2", Value: ptr(89.0), Unit: "%", Limit: ptr(90.0), Condition: "below",
		Text: "** SpO2 89 % < 90 %",
		Site: "clinic-a", Room: "room-1", Device: "oximeter-1", Session: ptr("s-7"),
		Onset: time.Date(2026, 3, 14, 9, 26, 41, 250000000, time.UTC),
		// Sent in another zone: the line must say UTC.
		Sent:   time.Date(2026, 3, 14, 10, 26, 53, 500000000, time.FixedZone("CET", 3600)),
		AckURL: "https://vigil.local/ack?alarm=ev-42&sig=SECRETSIG",
	}
}

func technical() alarm.Event {
	return alarm.Event{
		AlarmID: "device-lost/oximeter-1", EventID: "ev-43",
		Phase: alarm.PhaseStart, Kind: alarm.Technical, Priority: alarm.High, State: alarm.Active,
		Condition: "device_lost", Text: "*** oximeter-1 lost",
		Site: "clinic-a", Room: "room-1", Device: "oximeter-1",
	}
}

// goldenLines are the exact lines writeGolden produces.
var goldenLines = []string{
	`{"time":"2026-03-14T09:26:53.500000000Z","seq":1,"type":"alarm","alarm_id":"spo2-low-medium/oximeter-1","event_id":"ev-42","phase":"start","state":"active","kind":"physiological","priority":"medium","metric":"spo2","value":89,"unit":"%","limit":90,"condition":"below","device":"oximeter-1","room":"room-1","site":"clinic-a","session":"s-7","onset":"2026-03-14T09:26:41.250000000Z","text":"** SpO2 89 % < 90 %"}`,
	`{"time":"2026-03-14T09:26:53.589793238Z","seq":2,"type":"alarm","alarm_id":"device-lost/oximeter-1","event_id":"ev-43","phase":"start","state":"active","kind":"technical","priority":"high","condition":"device_lost","device":"oximeter-1","room":"room-1","site":"clinic-a","text":"*** oximeter-1 lost"}`,
	`{"time":"2026-03-14T09:26:55.589793238Z","seq":3,"type":"acknowledge","alarm_id":"spo2-low-medium/oximeter-1","event_id":"ev-42","by":"J.D.","via":"phone link"}`,
	`{"time":"2026-03-14T09:26:53.589793238Z","seq":4,"type":"pause","by":"Dr Rivera","via":"http","until":"2026-03-14T09:28:53.589793238Z"}`,
	`{"time":"2026-03-14T09:26:54.589793238Z","seq":5,"type":"notification","channel":"nurses-ntfy","alarm_id":"spo2-low-medium/oximeter-1","event_id":"ev-42","phase":"start","result":"retry","error":"ntfy: HTTP 503 Service Unavailable"}`,
	`{"time":"2026-03-14T09:26:56.589793238Z","seq":6,"type":"notification","channel":"nurses-ntfy","alarm_id":"spo2-low-medium/oximeter-1","event_id":"ev-42","phase":"start","result":"delivered"}`,
	`{"time":"2026-03-14T09:26:53.589793238Z","seq":7,"type":"agent","what":"started"}`,
	`{"time":"2026-03-14T09:26:57.589793238Z","seq":8,"type":"acknowledge","alarm_id":"device-lost/oximeter-1","event_id":"ev-43","by":"AK","via":"channel pushover"}`,
}

func writeGolden(t *testing.T, l *Log) {
	t.Helper()
	ev := physiological()
	for i, err := range []error{
		l.Alarm(ev),
		l.Alarm(technical()), // Sent zero: stamped with Now
		l.Acknowledge(ev.AlarmID, ev.EventID, "J.D.", "phone link", t0.Add(2*time.Second)),
		l.Pause(t0.Add(2*time.Minute), "Dr Rivera", "http", time.Time{}),
		l.Notification("nurses-ntfy", ev, ResultRetry, "ntfy: HTTP 503 Service Unavailable", t0.Add(time.Second)),
		l.Notification("nurses-ntfy", ev, ResultDelivered, "", t0.Add(3*time.Second)),
		l.Agent("started", time.Time{}),
		l.Acknowledge("device-lost/oximeter-1", "ev-43", "AK", "channel pushover", t0.Add(4*time.Second).In(time.FixedZone("X", -5*3600))),
	} {
		if err != nil {
			t.Fatalf("entry %d: %v", i+1, err)
		}
	}
}

func openTemp(t *testing.T, opts Options) (*Log, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l, path
}

func fileLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 0 && b[len(b)-1] != '\n' {
		t.Fatalf("file does not end in a newline: %q", b[max(0, len(b)-80):])
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

func TestGoldenLines(t *testing.T) {
	l, path := openTemp(t, Options{Now: fixedClock, Sync: true})
	writeGolden(t, l)
	got := fileLines(t, path)
	if len(got) != len(goldenLines) {
		t.Fatalf("got %d lines, want %d:\n%s", len(got), len(goldenLines), strings.Join(got, "\n"))
	}
	for i := range got {
		if got[i] != goldenLines[i] {
			t.Errorf("line %d\n got %s\nwant %s", i+1, got[i], goldenLines[i])
		}
	}
	if l.LastSeq() != 8 {
		t.Errorf("LastSeq = %d, want 8", l.LastSeq())
	}
	b, _ := os.ReadFile(path)
	if bytes.Contains(b, []byte("SECRETSIG")) || bytes.Contains(b, []byte("ack_url")) {
		t.Error("the alarm's ack URL (a signed link) reached the audit log")
	}
}

func TestReadAllRoundTrip(t *testing.T) {
	l, path := openTemp(t, Options{Now: fixedClock, Sync: true})
	writeGolden(t, l)
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	entries, err := ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(goldenLines) {
		t.Fatalf("ReadAll: %d entries, want %d", len(entries), len(goldenLines))
	}
	// Writing what was read gives the same line back: nothing is lost or
	// changed on the way into the store.
	for i, e := range entries {
		b, err := e.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != goldenLines[i] {
			t.Errorf("entry %d re-encoded\n got %s\nwant %s", i+1, b, goldenLines[i])
		}
	}
	first := entries[0]
	want := Entry{
		Time: time.Date(2026, 3, 14, 9, 26, 53, 500000000, time.UTC), Seq: 1, Type: TypeAlarm,
		AlarmID: "spo2-low-medium/oximeter-1", EventID: "ev-42", Phase: alarm.PhaseStart, State: alarm.Active,
		Kind: alarm.Physiological, Priority: "medium", Metric: "spo2", Value: ptr(89.0), Unit: "%", Limit: ptr(90.0),
		Condition: "below", Device: "oximeter-1", Room: "room-1", Site: "clinic-a", Session: "s-7",
		Onset: time.Date(2026, 3, 14, 9, 26, 41, 250000000, time.UTC), Text: "** SpO2 89 % < 90 %",
	}
	if fmt.Sprintf("%+v|%v|%v", stripPtrs(first), *first.Value, *first.Limit) != fmt.Sprintf("%+v|%v|%v", stripPtrs(want), *want.Value, *want.Limit) {
		t.Errorf("entry 1\n got %+v\nwant %+v", first, want)
	}
	if p := entries[3]; p.Type != TypePause || !p.Until.Equal(t0.Add(2*time.Minute)) || p.By != "Dr Rivera" {
		t.Errorf("pause entry = %+v", p)
	}
}

func stripPtrs(e Entry) Entry {
	e.Value, e.Limit = nil, nil
	return e
}

func TestSeqContinuesAcrossReopenWithoutTruncating(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.jsonl")
	l, err := Open(path, Options{Now: fixedClock, Sync: true})
	if err != nil {
		t.Fatal(err)
	}
	writeGolden(t, l)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(path)

	l, err = Open(path, Options{Now: fixedClock, Sync: true})
	if err != nil {
		t.Fatal(err)
	}
	if l.LastSeq() != 8 {
		t.Errorf("after reopen LastSeq = %d, want 8", l.LastSeq())
	}
	if err := l.Agent("stopped", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	after, _ := os.ReadFile(path)
	if !bytes.HasPrefix(after, before) {
		t.Fatal("reopening changed what the file held")
	}
	want := `{"time":"2026-03-14T09:26:53.589793238Z","seq":9,"type":"agent","what":"stopped"}` + "\n"
	if got := string(after[len(before):]); got != want {
		t.Errorf("appended after reopen\n got %q\nwant %q", got, want)
	}
	if TornLinesOf(t, path) != 0 {
		t.Error("a clean file was reported torn")
	}
}

// TornLinesOf opens path once and returns the Log's TornLines.
func TornLinesOf(t *testing.T, path string) uint64 {
	t.Helper()
	l, err := Open(path, Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.TornLines()
}

func TestTornLastLine(t *testing.T) {
	for _, tc := range []struct {
		name string
		tail string // what a crash left after two complete entries
		bad  []int  // line numbers ReadAll reports
	}{
		{name: "entry cut short", tail: `{"time":"2026-03-14T09:26:53.589793238Z","seq":3,"type":"ack`},
		{name: "cut inside a number", tail: `{"time":"2026-03-14T09:26:53.589793238Z","seq":3`},
		// ext4 after a power cut can show the new size with zero bytes in
		// it: not a torn entry but garbage, which Read reports.
		{name: "zero bytes", tail: "\x00\x00\x00\x00\x00\x00\x00\x00", bad: []int{3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "audit.jsonl")
			content := goldenLines[0] + "\n" + goldenLines[1] + "\n" + tc.tail
			if err := os.WriteFile(path, []byte(content), 0o640); err != nil {
				t.Fatal(err)
			}
			logger, logs := newLogger()
			l, err := Open(path, Options{Now: fixedClock, Logger: logger, Sync: true})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Close()
			if l.TornLines() != 1 {
				t.Errorf("TornLines = %d, want 1", l.TornLines())
			}
			if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "incomplete line") {
				t.Errorf("no warning about the torn line; log:\n%s", logs)
			}
			if err := l.Agent("started", time.Time{}); err != nil {
				t.Fatal(err)
			}
			if err := l.Agent("stopped", time.Time{}); err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(path)
			want := content + "\n" +
				`{"time":"2026-03-14T09:26:53.589793238Z","seq":3,"type":"agent","what":"started"}` + "\n" +
				`{"time":"2026-03-14T09:26:53.589793238Z","seq":4,"type":"agent","what":"stopped"}` + "\n"
			if string(b) != want {
				t.Errorf("file\n got %q\nwant %q", b, want)
			}

			entries, err := ReadAll(bytes.NewReader(b))
			var seqs []uint64
			for _, e := range entries {
				seqs = append(seqs, e.Seq)
			}
			if !slices.Equal(seqs, []uint64{1, 2, 3, 4}) {
				t.Errorf("ReadAll seqs = %v, want [1 2 3 4]", seqs)
			}
			if got := badLines(err); !slices.Equal(got, tc.bad) {
				t.Errorf("ReadAll bad lines = %v (err %v), want %v", got, err, tc.bad)
			}
		})
	}
}

func badLines(err error) []int {
	var ble *BadLinesError
	if !errors.As(err, &ble) {
		return nil
	}
	var lines []int
	for _, le := range ble.Lines {
		lines = append(lines, le.Line)
	}
	return lines
}

func TestOpenResumesPastGarbageAndLongFiles(t *testing.T) {
	t.Run("many entries across read chunks", func(t *testing.T) {
		l, path := openTemp(t, Options{Now: fixedClock})
		for range 3000 {
			if err := l.Alarm(physiological()); err != nil {
				t.Fatal(err)
			}
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if st, _ := os.Stat(path); st.Size() < 256<<10 {
			t.Fatalf("file only %d bytes: too small to cross read chunks", st.Size())
		}
		l2, err := Open(path, Options{Now: fixedClock})
		if err != nil {
			t.Fatal(err)
		}
		defer l2.Close()
		if l2.LastSeq() != 3000 {
			t.Errorf("LastSeq = %d, want 3000", l2.LastSeq())
		}
	})
	t.Run("megabytes of garbage after the last entry", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "audit.jsonl")
		garbage := bytes.Repeat([]byte{0}, 3*MaxLineBytes)
		content := slices.Concat([]byte(goldenLines[0]+"\n"+goldenLines[1]+"\n"), garbage, []byte("\nnot json\n"), garbage)
		if err := os.WriteFile(path, content, 0o640); err != nil {
			t.Fatal(err)
		}
		logger, logs := newLogger()
		l, err := Open(path, Options{Now: fixedClock, Logger: logger})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		if l.LastSeq() != 2 || l.TornLines() != 1 {
			t.Errorf("LastSeq = %d, TornLines = %d; want 2, 1", l.LastSeq(), l.TornLines())
		}
		if !strings.Contains(logs.String(), "not entries") {
			t.Errorf("no warning about the unreadable lines; log:\n%s", logs)
		}
		if err := l.Agent("started", time.Time{}); err != nil {
			t.Fatal(err)
		}
		f, _ := os.Open(path)
		defer f.Close()
		entries, err := ReadAll(f)
		if len(entries) != 3 || entries[2].Seq != 3 || entries[2].What != "started" {
			t.Errorf("ReadAll entries = %+v", entries)
		}
		if got := badLines(err); !slices.Equal(got, []int{3, 4, 5}) {
			t.Errorf("bad lines = %v (err %v), want [3 4 5]", got, err)
		}
	})
	t.Run("no entry at all", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "audit.jsonl")
		if err := os.WriteFile(path, []byte("hello\nworld\n"), 0o640); err != nil {
			t.Fatal(err)
		}
		logger, logs := newLogger()
		l, err := Open(path, Options{Now: fixedClock, Logger: logger})
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		if l.LastSeq() != 0 || l.TornLines() != 0 {
			t.Errorf("LastSeq = %d, TornLines = %d; want 0, 0", l.LastSeq(), l.TornLines())
		}
		if !strings.Contains(logs.String(), "not entries") {
			t.Errorf("no warning; log:\n%s", logs)
		}
	})
}

func TestConcurrentWritersWholeLinesUniqueSeq(t *testing.T) {
	l, path := openTemp(t, Options{Now: time.Now, Sync: false})
	const writers, each = 16, 150
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Go(func() {
			ev := physiological()
			ev.EventID = fmt.Sprintf("ev-w%d", w)
			for i := range each {
				var err error
				switch i % 4 {
				case 0:
					err = l.Alarm(ev)
				case 1:
					err = l.Acknowledge(ev.AlarmID, ev.EventID, fmt.Sprintf("nurse-%d", w), "http", time.Time{})
				case 2:
					err = l.Notification("nurses-ntfy", ev, ResultGiveUp, strings.Repeat("x", 900), time.Time{})
				case 3:
					err = l.Pause(time.Now().Add(time.Minute), ev.EventID, "cli", time.Time{})
				}
				if err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	entries, err := ReadAll(f)
	if err != nil {
		t.Fatalf("ReadAll: %v", err)
	}
	if len(entries) != writers*each {
		t.Fatalf("%d entries, want %d", len(entries), writers*each)
	}
	perWriter := map[string]int{}
	for i, e := range entries {
		if e.Seq != uint64(i+1) {
			t.Fatalf("line %d has seq %d: seq must follow file order", i+1, e.Seq)
		}
		writer := e.EventID
		if e.Type == TypePause {
			writer = e.By
		}
		perWriter[writer]++
	}
	for w := range writers {
		if n := perWriter[fmt.Sprintf("ev-w%d", w)]; n != each {
			t.Errorf("writer %d: %d entries, want %d", w, n, each)
		}
	}
}

// TestWriteFailureFullDisk writes to /dev/full, where every write fails with
// ENOSPC: exactly what a full disk returns.
func TestWriteFailureFullDisk(t *testing.T) {
	if _, err := os.Stat("/dev/full"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("/dev/full is needed: %v", err)
		}
		t.Skipf("no /dev/full: %v", err)
	}
	logger, logs := newLogger()
	opts := DefaultOptions()
	opts.Logger = logger
	l, err := Open("/dev/full", opts)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := 1; i <= 3; i++ {
		err := l.Agent("started", time.Time{})
		if !errors.Is(err, syscall.ENOSPC) {
			t.Fatalf("write %d: err = %v, want ENOSPC", i, err)
		}
		var we *WriteError
		if !errors.As(err, &we) || we.Op != "write" || we.Seq != 1 {
			t.Errorf("write %d: err = %#v, want a *WriteError for seq 1 (nothing written, no seq spent)", i, err)
		}
		if l.WriteErrors() != uint64(i) {
			t.Errorf("WriteErrors = %d, want %d", l.WriteErrors(), i)
		}
	}
	if l.LastSeq() != 0 {
		t.Errorf("LastSeq = %d after failed writes, want 0", l.LastSeq())
	}
	if n := strings.Count(logs.String(), "audit log write failing"); n != 1 {
		t.Errorf("%d warnings for a run of 3 failures, want 1; log:\n%s", n, logs)
	}
}

// TestWriteCutShortThenRecovers makes the kernel cut a write short, as a disk
// filling in the middle of an entry does, with the file size limit
// (RLIMIT_FSIZE, its SIGXFSZ ignored: the write then fails with EFBIG), then
// lifts the limit as if space was freed.
func TestWriteCutShortThenRecovers(t *testing.T) {
	l, path := openTemp(t, Options{Now: fixedClock, Sync: true, Logger: nil})
	logger, logs := newLogger()
	l.log = logger
	if err := l.Agent("started", time.Time{}); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}

	signal.Ignore(syscall.SIGXFSZ)
	defer signal.Reset(syscall.SIGXFSZ)
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	limit := syscall.Rlimit{Cur: uint64(st.Size()) + 40, Max: old.Max}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &limit); err != nil {
		t.Fatal(err)
	}
	err = l.Alarm(physiological())
	if rerr := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); rerr != nil {
		t.Fatal(rerr)
	}
	if !errors.Is(err, syscall.EFBIG) {
		t.Fatalf("cut-short write: err = %v, want EFBIG", err)
	}
	if l.TornLines() != 1 || l.WriteErrors() != 1 {
		t.Errorf("TornLines = %d, WriteErrors = %d; want 1, 1", l.TornLines(), l.WriteErrors())
	}
	if !strings.Contains(logs.String(), "audit log write failing") {
		t.Errorf("no warning; log:\n%s", logs)
	}

	if err := l.Agent("stopped", time.Time{}); err != nil {
		t.Fatalf("write after space came back: %v", err)
	}
	if !strings.Contains(logs.String(), "audit log writing again") {
		t.Errorf("no recovery message; log:\n%s", logs)
	}
	b, _ := os.ReadFile(path)
	lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(lines) != 3 || len(lines[1]) != 40 || !strings.HasPrefix(goldenLines[0], lines[1]) {
		t.Fatalf("file lines = %q; want entry, 40 torn bytes, entry", lines)
	}
	// The torn entry spent seq 2: the gap tells a reader one entry was lost.
	want := `{"time":"2026-03-14T09:26:53.589793238Z","seq":3,"type":"agent","what":"stopped"}`
	if lines[2] != want {
		t.Errorf("entry after recovery\n got %s\nwant %s", lines[2], want)
	}
	entries, err := ReadAll(bytes.NewReader(b))
	if err != nil || len(entries) != 2 || entries[0].Seq != 1 || entries[1].Seq != 3 {
		t.Errorf("ReadAll = %+v, %v; want seqs 1 and 3, torn line skipped", entries, err)
	}
}

func TestFileMode(t *testing.T) {
	umask := syscall.Umask(0)
	syscall.Umask(umask)
	_, path := openTemp(t, DefaultOptions())
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if want := FileMode &^ os.FileMode(umask); st.Mode().Perm() != want {
		t.Errorf("new file mode %v, want %v (0640 less umask %03o)", st.Mode().Perm(), want, umask)
	}

	// An existing file keeps the mode its owner gave it.
	other := filepath.Join(t.TempDir(), "audit.jsonl")
	if err := os.WriteFile(other, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	l, err := Open(other, DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if st, _ := os.Stat(other); st.Mode().Perm() != 0o600 {
		t.Errorf("existing file mode changed to %v", st.Mode().Perm())
	}
}

func TestOpenErrors(t *testing.T) {
	l, path := openTemp(t, DefaultOptions())
	if _, err := Open(path, DefaultOptions()); !errors.Is(err, ErrLocked) {
		t.Errorf("second Open of a file in use: err = %v, want ErrLocked", err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	l2, err := Open(path, DefaultOptions())
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	if err := l2.Close(); err != nil {
		t.Fatal(err)
	}

	if _, err := Open(filepath.Join(t.TempDir(), "missing-dir", "audit.jsonl"), DefaultOptions()); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Open in a missing directory: err = %v, want ErrNotExist (Open creates no directory)", err)
	}
}

func TestClosed(t *testing.T) {
	l, path := openTemp(t, DefaultOptions())
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := l.Agent("stopped", time.Time{}); !errors.Is(err, ErrClosed) {
		t.Errorf("write after Close: err = %v, want ErrClosed", err)
	}
	if b, _ := os.ReadFile(path); len(b) != 0 {
		t.Errorf("file holds %q after a write to a closed log", b)
	}
}

func TestOddInputStaysOneValidLine(t *testing.T) {
	l, path := openTemp(t, Options{Now: fixedClock, Sync: true})
	ev := technical()
	ev.Value, ev.Limit = ptr(0.0), ptr(nan())
	ev.Text = "*** line one\nline two \"quoted\" \x00 <b>"
	if err := l.Alarm(ev); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("é", 2000) // 4000 bytes
	if err := l.Acknowledge("a", "e", long, "http", time.Time{}); err != nil {
		t.Fatal(err)
	}
	if err := l.Notification("webhook", ev, ResultGiveUp, "bad \xff utf-8", time.Time{}); err != nil {
		t.Fatal(err)
	}
	lines := fileLines(t, path)
	if len(lines) != 3 {
		t.Fatalf("%d lines, want 3: %q", len(lines), lines)
	}
	want := `{"time":"2026-03-14T09:26:53.589793238Z","seq":1,"type":"alarm","alarm_id":"device-lost/oximeter-1","event_id":"ev-43","phase":"start","state":"active","kind":"technical","priority":"high","value":0,"condition":"device_lost","device":"oximeter-1","room":"room-1","site":"clinic-a","text":"*** line one\nline two \"quoted\" \u0000 <b>"}`
	if lines[0] != want {
		t.Errorf("odd alarm\n got %s\nwant %s", lines[0], want)
	}
	entries, err := ReadAll(strings.NewReader(strings.Join(lines, "\n")))
	if err != nil || len(entries) != 3 {
		t.Fatalf("ReadAll = %d entries, %v", len(entries), err)
	}
	by := entries[1].By
	if len(by) > MaxFieldBytes || !utf8.ValidString(by) || !strings.HasSuffix(by, TruncatedMark) || !strings.HasPrefix(long, strings.TrimSuffix(by, TruncatedMark)) {
		t.Errorf("long by: %d bytes, valid %v, %q...", len(by), utf8.ValidString(by), by[:min(20, len(by))])
	}
	if entries[2].Error != "bad \uFFFD utf-8" {
		t.Errorf("invalid UTF-8 error text read back as %q", entries[2].Error)
	}
}

func nan() float64 {
	zero := 0.0
	return zero / zero
}

func TestReadReportsBadLines(t *testing.T) {
	input := strings.Join([]string{
		goldenLines[0],                       // 1
		`{"time":"2026-03-14T09:26:53Z"`,     // 2 torn in the middle (a crash, then a restart): skipped
		`not json`,                           // 3 bad
		`{"type":"agent","what":"started"}`,  // 4 no seq, no time
		``,                                   // 5 empty: skipped
		strings.Repeat("x", MaxLineBytes+10), // 6 too long
		`{"time":"yesterday","seq":9,"type":"agent"}`,                                    // 7 bad time
		`{"time":"2026-03-14T09:26:53Z","seq":10,"type":"agent","what":"started"} {}`,    // 8 two values
		`{"time":"2026-03-14T09:26:53Z","seq":11,"type":"agent","what":"started","x":1}`, // 9 unknown field: kept (a later version's)
		goldenLines[1], // 10
		`{"time":"2026-03-14T09:26:53Z","seq":12,"ty`, // 11 torn last line
	}, "\n")
	entries, err := ReadAll(strings.NewReader(input))
	var seqs []uint64
	for _, e := range entries {
		seqs = append(seqs, e.Seq)
	}
	if !slices.Equal(seqs, []uint64{1, 11, 2}) {
		t.Errorf("seqs = %v, want [1 11 2]", seqs)
	}
	if got := badLines(err); !slices.Equal(got, []int{3, 4, 6, 7, 8}) {
		t.Errorf("bad lines = %v, want [3 4 6 7 8]; err: %v", got, err)
	}
	if err != nil && !strings.Contains(err.Error(), "5 bad lines, first: audit: line 3:") {
		t.Errorf("error text %q", err)
	}

	// The iterator stops when the caller does.
	n := 0
	for range Read(strings.NewReader(input)) {
		n++
		break
	}
	if n != 1 {
		t.Errorf("iterated %d times after break", n)
	}
}

type failingReader struct{ after io.Reader }

func (r failingReader) Read(p []byte) (int, error) {
	n, err := r.after.Read(p)
	if err == io.EOF {
		return n, errors.New("disk read error")
	}
	return n, err
}

func TestReadError(t *testing.T) {
	entries, err := ReadAll(failingReader{strings.NewReader(goldenLines[0] + "\n" + goldenLines[1] + "\n")})
	if len(entries) != 2 || err == nil || !strings.Contains(err.Error(), "disk read error") {
		t.Errorf("ReadAll = %d entries, %v; want 2 and the read error", len(entries), err)
	}
	var ble *BadLinesError
	if errors.As(err, &ble) {
		t.Error("a read error reported as bad lines")
	}
}

func BenchmarkEntry(b *testing.B) {
	for _, sync := range []bool{true, false} {
		b.Run(fmt.Sprintf("sync=%v", sync), func(b *testing.B) {
			l, err := Open(filepath.Join(b.TempDir(), "audit.jsonl"), Options{Sync: sync})
			if err != nil {
				b.Fatal(err)
			}
			defer l.Close()
			ev := physiological()
			b.ReportAllocs()
			for b.Loop() {
				if err := l.Alarm(ev); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
