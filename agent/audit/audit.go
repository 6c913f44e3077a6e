// Package audit is Vigil's append-only alarm audit log: every alarm
// transition, acknowledgement, pause, notification attempt and agent start or
// stop, with who, how and when (clinical.md 1: "Every state change is audited
// with who, when, how"). The log is a file of JSON lines, one entry per line,
// numbered by seq; issue 5 (durability) moves it into the SQLite store, and
// Read is the way the migration gets the entries back.
//
// Guarantees: the file is opened O_APPEND and never truncated or rewritten;
// each entry is written with one write call (so a concurrent reader such as
// tail -f never sees half of one entry joined to another) and, with
// Options.Sync, fsynced before the method returns; a write error is returned
// to the caller, which raises the "storage failing" technical alarm, and the
// next entry is tried again (a full disk may clear).
package audit

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"log/slog"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/vigil-monitor/vigil/agent/alarm"
)

// Type says what an entry records.
type Type string

const (
	TypeAlarm        Type = "alarm"        // an alarm event: a transition of one alarm
	TypeAcknowledge  Type = "acknowledge"  // someone acknowledged an alarm
	TypePause        Type = "pause"        // someone paused alarm signalling until a time
	TypeNotification Type = "notification" // one send attempt through a channel
	TypeAgent        Type = "agent"        // the agent started or stopped
	TypeSession      Type = "session"      // a dosing session started, was dosed or ended
)

// Notification results, as notify.Verdict spells them (notify.Verdict.String).
const (
	ResultDelivered = "delivered"
	ResultRetry     = "retry"
	ResultGiveUp    = "give_up"
)

// FileMode is the permission a new log file is created with (less the
// umask): the agent writes, its group (auditors, a backup job) reads, others
// nothing. An existing file keeps its mode.
const FileMode os.FileMode = 0o640

// MaxFieldBytes bounds each text field of an entry. A notifier's error text
// can carry a whole HTTP error page, and an acknowledging name comes from a
// form: the cap keeps every line short enough for Read (MaxLineBytes) and for
// a person reading the file. A longer value is cut at a UTF-8 boundary and
// ends with TruncatedMark.
const MaxFieldBytes = 1024

// TruncatedMark ends a text field cut at MaxFieldBytes.
const TruncatedMark = "…"

// MaxLineBytes is the longest line Read accepts, and the longest line Open
// looks at when it searches for the last seq. An entry the Log writes stays
// far below it: under 30 fields of at most MaxFieldBytes, each byte escaped
// to at most 6 ("\u0000").
const MaxLineBytes = 1 << 20

// timeLayout is RFC 3339 with nanoseconds, always nine digits and always
// UTC, so every time in the file has the same width and sorts as text.
const timeLayout = "2006-01-02T15:04:05.000000000Z"

// ErrClosed is returned by the write methods after Close.
var ErrClosed = errors.New("audit: log closed")

// ErrLocked is returned by Open when another Log (in this process or another)
// holds the file: two writers would number their entries with the same seq.
var ErrLocked = errors.New("audit: log file in use by another writer")

// WriteError is a failed write or fsync of one entry. Errors.Is reaches the
// cause (syscall.ENOSPC on a full disk).
type WriteError struct {
	Seq uint64 // the entry's seq
	Op  string // "write" or "sync" ("encode" is kept for a field JSON cannot hold; none can today)
	Err error
}

func (e *WriteError) Error() string {
	return fmt.Sprintf("audit: %s of entry seq %d: %v", e.Op, e.Seq, e.Err)
}

func (e *WriteError) Unwrap() error { return e.Err }

// LineError is a line of a log file that is not an entry (Read). Torn lines
// are not LineErrors: Read skips them.
type LineError struct {
	Line int // 1-based
	Err  error
}

func (e *LineError) Error() string { return fmt.Sprintf("audit: line %d: %v", e.Line, e.Err) }

func (e *LineError) Unwrap() error { return e.Err }

// BadLinesError is ReadAll's report of the lines it could not read; the
// entries of every other line are returned beside it.
type BadLinesError struct {
	Lines []*LineError
}

func (e *BadLinesError) Error() string {
	if len(e.Lines) == 1 {
		return e.Lines[0].Error()
	}
	return fmt.Sprintf("audit: %d bad lines, first: %v", len(e.Lines), e.Lines[0])
}

// Entry is one line of the log. Empty fields are left out of the line. It
// never holds a secret: the alarm event's AckURL (a signed link) is not
// copied, and notifier error texts must already be free of them
// (notify.Result). By is a staff name or initials as the acknowledging path
// gave it, never a patient's.
type Entry struct {
	Time time.Time // when it happened, UTC
	Seq  uint64    // 1, 2, 3 ... per file, in file order
	Type Type

	Channel  string // notification: the channel's configured name
	AlarmID  string
	EventID  string
	Phase    alarm.Phase
	State    alarm.State
	Kind     alarm.Kind
	Priority string // "low", "medium", "high"
	Metric   string
	Value    *float64
	Unit     string
	Limit    *float64
	// Condition is "below", "above", "rise_over_baseline" or the technical
	// condition.
	Condition string
	Device    string
	Room      string
	Site      string
	Session   string    // opaque session id
	Onset     time.Time // alarm: when the condition began
	Text      string

	Result string // notification: delivered, retry or give_up
	Error  string // notification: why it was not delivered

	By    string    // acknowledge, pause: who
	Via   string    // acknowledge, pause: how ("http", "cli", "mqtt", "phone link", "channel pushover")
	Until time.Time // pause: signalling paused until then

	What string // agent: "started", "stopped"; session: "start", "dose", "end"
}

// wireEntry is Entry as a line: times as fixed-width text, empty fields left
// out. The field order is the order in the line.
type wireEntry struct {
	Time      string   `json:"time"`
	Seq       uint64   `json:"seq"`
	Type      Type     `json:"type"`
	Channel   string   `json:"channel,omitempty"`
	AlarmID   string   `json:"alarm_id,omitempty"`
	EventID   string   `json:"event_id,omitempty"`
	Phase     string   `json:"phase,omitempty"`
	State     string   `json:"state,omitempty"`
	Kind      string   `json:"kind,omitempty"`
	Priority  string   `json:"priority,omitempty"`
	Metric    string   `json:"metric,omitempty"`
	Value     *float64 `json:"value,omitempty"`
	Unit      string   `json:"unit,omitempty"`
	Limit     *float64 `json:"limit,omitempty"`
	Condition string   `json:"condition,omitempty"`
	Device    string   `json:"device,omitempty"`
	Room      string   `json:"room,omitempty"`
	Site      string   `json:"site,omitempty"`
	Session   string   `json:"session,omitempty"`
	Onset     string   `json:"onset,omitempty"`
	Text      string   `json:"text,omitempty"`
	Result    string   `json:"result,omitempty"`
	Error     string   `json:"error,omitempty"`
	By        string   `json:"by,omitempty"`
	Via       string   `json:"via,omitempty"`
	Until     string   `json:"until,omitempty"`
	What      string   `json:"what,omitempty"`
}

// MarshalJSON writes the entry as one line's object. A non-finite value or
// limit (which JSON cannot hold) is left out rather than losing the entry;
// the text still says what was seen.
func (e Entry) MarshalJSON() ([]byte, error) {
	w := wireEntry{
		Time: formatTime(e.Time), Seq: e.Seq, Type: e.Type,
		Channel: e.Channel, AlarmID: e.AlarmID, EventID: e.EventID,
		Phase: string(e.Phase), State: string(e.State), Kind: string(e.Kind), Priority: e.Priority,
		Metric: e.Metric, Value: finite(e.Value), Unit: e.Unit, Limit: finite(e.Limit), Condition: e.Condition,
		Device: e.Device, Room: e.Room, Site: e.Site, Session: e.Session,
		Onset: formatTime(e.Onset), Text: e.Text,
		Result: e.Result, Error: e.Error,
		By: e.By, Via: e.Via, Until: formatTime(e.Until),
		What: e.What,
	}
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	// Texts such as "SpO2 < 90" stay readable in the file.
	enc.SetEscapeHTML(false)
	if err := enc.Encode(w); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// UnmarshalJSON reads one line's object.
func (e *Entry) UnmarshalJSON(data []byte) error {
	var w wireEntry
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	var err error
	parse := func(field, s string) time.Time {
		if s == "" || err != nil {
			return time.Time{}
		}
		t, perr := time.Parse(time.RFC3339Nano, s)
		if perr != nil {
			err = fmt.Errorf("%s: %w", field, perr)
		}
		return t.UTC()
	}
	*e = Entry{
		Time: parse("time", w.Time), Seq: w.Seq, Type: w.Type,
		Channel: w.Channel, AlarmID: w.AlarmID, EventID: w.EventID,
		Phase: alarm.Phase(w.Phase), State: alarm.State(w.State), Kind: alarm.Kind(w.Kind), Priority: w.Priority,
		Metric: w.Metric, Value: w.Value, Unit: w.Unit, Limit: w.Limit, Condition: w.Condition,
		Device: w.Device, Room: w.Room, Site: w.Site, Session: w.Session,
		Onset: parse("onset", w.Onset), Text: w.Text,
		Result: w.Result, Error: w.Error,
		By: w.By, Via: w.Via, Until: parse("until", w.Until),
		What: w.What,
	}
	return err
}

func formatTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(timeLayout)
}

func finite(v *float64) *float64 {
	if v == nil || math.IsNaN(*v) || math.IsInf(*v, 0) {
		return nil
	}
	x := *v
	return &x
}

// capField cuts s to MaxFieldBytes at a UTF-8 boundary.
func capField(s string) string {
	if len(s) <= MaxFieldBytes {
		return s
	}
	cut := MaxFieldBytes - len(TruncatedMark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + TruncatedMark
}

func (e *Entry) capFields() {
	for _, p := range []*string{
		&e.Channel, &e.AlarmID, &e.EventID, &e.Priority, &e.Metric, &e.Unit, &e.Condition,
		&e.Device, &e.Room, &e.Site, &e.Session, &e.Text, &e.Result, &e.Error, &e.By, &e.Via, &e.What,
	} {
		*p = capField(*p)
	}
	for _, p := range []*string{(*string)(&e.Phase), (*string)(&e.State), (*string)(&e.Kind), (*string)(&e.Type)} {
		*p = capField(*p)
	}
}

// Options configure Open. Start from DefaultOptions: the zero Options has
// Sync false.
type Options struct {
	// Now stamps entries whose time the caller left zero; default time.Now.
	Now func() time.Time
	// Logger gets the warnings (torn line found, writes failing and
	// recovering); nil means slog.Default().
	Logger *slog.Logger
	// Sync fsyncs the file after every entry, so an entry a method returned
	// nil for survives a power cut. DefaultOptions sets it; turn it off only
	// in tests and benchmarks.
	Sync bool
}

// DefaultOptions is what the agent opens its log with: Sync on.
func DefaultOptions() Options { return Options{Sync: true} }

// Log appends entries to one file. Its methods are safe for concurrent use.
type Log struct {
	path string
	now  func() time.Time
	log  *slog.Logger
	sync bool

	tornLines   atomic.Uint64
	writeErrors atomic.Uint64

	mu          sync.Mutex
	f           *os.File // nil once closed
	seq         uint64   // last seq given out
	needNewline bool     // the file ends in a torn line: start the next entry on a new line
	failing     uint64   // failed entries since the last one written
	buf         bytes.Buffer
}

// Open opens (creating it with FileMode when missing, never truncating) the
// log file at path for appending. The directory must exist. Seq continues
// from the last entry in the file. A last line left incomplete by a crash is
// reported (a warning and TornLines) and the next entry starts on a new line.
// A regular file is locked (flock) for as long as the Log is open.
func Open(path string, opts Options) (*Log, error) {
	l := &Log{path: path, now: opts.Now, log: opts.Logger, sync: opts.Sync}
	if l.now == nil {
		l.now = time.Now
	}
	if l.log == nil {
		l.log = slog.Default()
	}
	f, err := os.OpenFile(path, os.O_APPEND|os.O_CREATE|os.O_WRONLY, FileMode)
	if err != nil {
		return nil, fmt.Errorf("audit: open: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("audit: open: %w", err)
	}
	// Only a regular file carries a seq to continue. A device (/dev/full in
	// tests) is neither locked nor read.
	if st.Mode().IsRegular() {
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
			f.Close()
			if errors.Is(err, syscall.EWOULDBLOCK) {
				return nil, fmt.Errorf("%w: %s", ErrLocked, path)
			}
			return nil, fmt.Errorf("audit: lock %s: %w", path, err)
		}
		if err := l.resume(f, st); err != nil {
			f.Close()
			return nil, err
		}
	}
	l.f = f
	return l, nil
}

// resume finds the last seq and whether the file ends in a torn line. It
// reads through a second descriptor because the log's own is write-only;
// SameFile guards against the path being replaced in between.
func (l *Log) resume(w *os.File, wst os.FileInfo) error {
	r, err := os.Open(l.path)
	if err != nil {
		return fmt.Errorf("audit: open for reading: %w", err)
	}
	defer r.Close()
	rst, err := r.Stat()
	if err != nil {
		return fmt.Errorf("audit: open for reading: %w", err)
	}
	if !os.SameFile(wst, rst) {
		return fmt.Errorf("audit: %s was replaced while opening", l.path)
	}
	size := rst.Size()
	if size == 0 {
		return nil
	}
	var last [1]byte
	if _, err := r.ReadAt(last[:], size-1); err != nil {
		return fmt.Errorf("audit: read last byte: %w", err)
	}
	if last[0] != '\n' {
		l.needNewline = true
		l.tornLines.Add(1)
		l.log.Warn("audit log ends in an incomplete line (a write cut short by a crash or a full disk); the next entry starts on a new line",
			"path", l.path)
	}
	skipped := 0
	err = scanLinesBackward(r, size, func(line []byte) bool {
		var e Entry
		if decodeLine(line, &e) == nil {
			l.seq = e.Seq
			return true
		}
		skipped++
		return false
	})
	if err != nil {
		return fmt.Errorf("audit: read last entry: %w", err)
	}
	// A torn last line is expected after a crash; anything else unreadable
	// at the end of the file is worth a look.
	if torn := l.needNewline; skipped > 1 || (skipped == 1 && !torn) {
		l.log.Warn("audit log: lines at the end of the file are not entries; seq continues after the last entry",
			"path", l.path, "lines", skipped, "last_seq", l.seq)
	}
	return nil
}

// scanLinesBackward calls fn on each line of r[0:size], last line first,
// until fn returns true. A line longer than MaxLineBytes is passed as nil
// rather than kept, so a file ending in a run of garbage without newlines
// costs no memory.
func scanLinesBackward(r io.ReaderAt, size int64, fn func(line []byte) bool) error {
	const chunk = 64 << 10
	buf := make([]byte, chunk)
	var carry []byte // start of the line cut by the previous chunk's start
	tooLong := false // the line being carried exceeds MaxLineBytes
	for pos := size; pos > 0; {
		n := int64(min(chunk, pos))
		pos -= n
		if _, err := r.ReadAt(buf[:n], pos); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
		data := append(append([]byte(nil), buf[:n]...), carry...)
		for {
			i := bytes.LastIndexByte(data, '\n')
			if i < 0 {
				break
			}
			if line := data[i+1:]; tooLong {
				if fn(nil) {
					return nil
				}
				tooLong = false
			} else if len(line) > 0 && fn(line) {
				return nil
			}
			data = data[:i]
		}
		carry = data
		if len(carry) > MaxLineBytes {
			carry, tooLong = nil, true
		}
	}
	if tooLong {
		fn(nil)
	} else if len(carry) > 0 {
		fn(carry)
	}
	return nil
}

// Path is the file the Log writes.
func (l *Log) Path() string { return l.path }

// TornLines counts incomplete lines: the one Open found at the end of the
// file, and each entry a write cut short (a disk filling mid-entry).
func (l *Log) TornLines() uint64 { return l.tornLines.Load() }

// WriteErrors counts entries whose write or fsync failed.
func (l *Log) WriteErrors() uint64 { return l.writeErrors.Load() }

// LastSeq is the seq of the last entry written (0 when none).
func (l *Log) LastSeq() uint64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.seq
}

// Alarm records one alarm event. The entry's time is the event's Sent time
// (Now when zero); its AckURL is never written.
func (l *Log) Alarm(ev alarm.Event) error { return l.append(AlarmEntry(ev)) }

// AlarmEntry is the entry of one alarm event (its time is the event's Sent).
func AlarmEntry(ev alarm.Event) Entry {
	e := Entry{
		Time: ev.Sent, Type: TypeAlarm,
		AlarmID: ev.AlarmID, EventID: ev.EventID, Phase: ev.Phase, State: ev.State, Kind: ev.Kind,
		Metric: ev.Metric, Value: ev.Value, Unit: ev.Unit, Limit: ev.Limit, Condition: ev.Condition,
		Device: ev.Device, Room: ev.Room, Site: ev.Site, Onset: ev.Onset, Text: ev.Text,
	}
	if ev.Priority != 0 {
		e.Priority = ev.Priority.String()
	}
	if ev.Session != nil {
		e.Session = *ev.Session
	}
	return e
}

// Acknowledge records who acknowledged which alarm occurrence, and how.
func (l *Log) Acknowledge(alarmID, eventID, by, via string, at time.Time) error {
	return l.append(AcknowledgeEntry(alarmID, eventID, by, via, at))
}

// AcknowledgeEntry is the entry of an acknowledgement.
func AcknowledgeEntry(alarmID, eventID, by, via string, at time.Time) Entry {
	return Entry{Time: at, Type: TypeAcknowledge, AlarmID: alarmID, EventID: eventID, By: by, Via: via}
}

// Pause records a notification pause until until (until == at ends one).
func (l *Log) Pause(until time.Time, by, via string, at time.Time) error {
	return l.append(PauseEntry(until, by, via, at))
}

// PauseEntry is the entry of a pause or, with until == at, a resume.
func PauseEntry(until time.Time, by, via string, at time.Time) Entry {
	return Entry{Time: at, Type: TypePause, Until: until, By: by, Via: via}
}

// Notification records one attempt to send ev through channel.
func (l *Log) Notification(channel string, ev alarm.Event, result string, errText string, at time.Time) error {
	return l.append(NotificationEntry(channel, ev, result, errText, at))
}

// NotificationEntry is the entry of one notification attempt.
func NotificationEntry(channel string, ev alarm.Event, result string, errText string, at time.Time) Entry {
	return Entry{
		Time: at, Type: TypeNotification, Channel: channel,
		AlarmID: ev.AlarmID, EventID: ev.EventID, Phase: ev.Phase,
		Result: result, Error: errText,
	}
}

// Record appends an entry built by one of the *Entry functions; the Log
// gives it its seq (and its time, when zero).
func (l *Log) Record(e Entry) error { return l.append(e) }

// Agent records the agent starting or stopping ("started", "stopped").
func (l *Log) Agent(what string, at time.Time) error {
	return l.append(AgentEntry(what, at))
}

// AgentEntry is the entry of the agent starting or stopping.
func AgentEntry(what string, at time.Time) Entry {
	return Entry{Time: at, Type: TypeAgent, What: what}
}

// append numbers the entry and writes it as one line with one write call.
// The lock keeps seq order equal to file order.
func (l *Log) append(e Entry) error {
	if e.Time.IsZero() {
		e.Time = l.now()
	}
	e.capFields()

	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return ErrClosed
	}
	e.Seq = l.seq + 1
	line, err := e.MarshalJSON()
	if err != nil {
		// Cannot happen for the fields above (strings, finite floats); kept
		// so a future field cannot lose entries silently.
		l.writeErrors.Add(1)
		return &WriteError{Seq: e.Seq, Op: "encode", Err: err}
	}
	l.buf.Reset()
	prefix := 0
	if l.needNewline {
		l.buf.WriteByte('\n')
		prefix = 1
	}
	l.buf.Write(line)
	l.buf.WriteByte('\n')

	n, err := l.f.Write(l.buf.Bytes())
	if n >= 1 {
		l.needNewline = false
	}
	if n > prefix {
		// Some of the entry reached the file: its seq is spent.
		l.seq = e.Seq
	}
	if err != nil {
		if n > prefix && n < l.buf.Len() {
			l.needNewline = true
			l.tornLines.Add(1)
		}
		return l.failed(&WriteError{Seq: e.Seq, Op: "write", Err: err})
	}
	if l.sync {
		if err := l.f.Sync(); err != nil {
			return l.failed(&WriteError{Seq: e.Seq, Op: "sync", Err: err})
		}
	}
	if l.failing > 0 {
		l.log.Info("audit log writing again", "path", l.path, "failed_entries", l.failing)
		l.failing = 0
	}
	return nil
}

// failed counts a failure and logs the first of a run, so a full disk does
// not flood the log; the caller raises the technical alarm.
func (l *Log) failed(err *WriteError) error {
	l.writeErrors.Add(1)
	if l.failing == 0 {
		l.log.Warn("audit log write failing", "path", l.path, "err", err)
	}
	l.failing++
	return err
}

// Close syncs and closes the file (releasing its lock). Later writes return
// ErrClosed; a second Close returns nil.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	f := l.f
	l.f = nil
	var errs []error
	if st, err := f.Stat(); err == nil && st.Mode().IsRegular() {
		if err := f.Sync(); err != nil {
			errs = append(errs, fmt.Errorf("audit: sync on close: %w", err))
		}
	}
	if err := f.Close(); err != nil {
		errs = append(errs, fmt.Errorf("audit: close: %w", err))
	}
	return errors.Join(errs...)
}

// errTornLine marks a line cut short: the start of an entry whose write never
// finished. Read skips such lines.
var errTornLine = errors.New("torn line")

// decodeLine reads one line (without its newline) into e.
func decodeLine(line []byte, e *Entry) error {
	dec := json.NewDecoder(bytes.NewReader(line))
	var raw json.RawMessage
	if err := dec.Decode(&raw); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return errTornLine
		}
		return err
	}
	if dec.More() {
		return errors.New("text after the entry")
	}
	if err := json.Unmarshal(raw, e); err != nil {
		return err
	}
	switch {
	case e.Seq == 0:
		return errors.New("no seq")
	case e.Type == "":
		return errors.New("no type")
	case e.Time.IsZero():
		return errors.New("no time")
	}
	return nil
}

// Read yields the entries of a log file in order. A line that is not an
// entry yields a *LineError with its line number and reading goes on; a torn
// line (an entry cut short by a crash or a full disk) is skipped; an empty
// line is skipped. A read error ends the sequence with that error.
func Read(r io.Reader) iter.Seq2[Entry, error] {
	return func(yield func(Entry, error) bool) {
		br := bufio.NewReaderSize(r, 64<<10)
		var line []byte
		for n := 1; ; n++ {
			line = line[:0]
			tooLong := false
			var err error
			for {
				var part []byte
				part, err = br.ReadSlice('\n')
				if !tooLong {
					if len(line)+len(part) > MaxLineBytes+1 {
						tooLong, line = true, line[:0]
					} else {
						line = append(line, part...)
					}
				}
				if !errors.Is(err, bufio.ErrBufferFull) {
					break
				}
			}
			atEOF := errors.Is(err, io.EOF)
			if err != nil && !atEOF {
				yield(Entry{}, fmt.Errorf("audit: read line %d: %w", n, err))
				return
			}
			if tooLong {
				if !yield(Entry{}, &LineError{Line: n, Err: fmt.Errorf("longer than %d bytes", MaxLineBytes)}) {
					return
				}
			} else if trimmed := bytes.TrimSuffix(line, []byte("\n")); len(trimmed) > 0 {
				var e Entry
				switch derr := decodeLine(trimmed, &e); {
				case derr == nil:
					if !yield(e, nil) {
						return
					}
				case errors.Is(derr, errTornLine):
				default:
					if !yield(Entry{}, &LineError{Line: n, Err: derr}) {
						return
					}
				}
			}
			if atEOF {
				return
			}
		}
	}
}

// ReadAll reads every entry of a log file. Bad lines come back as a
// *BadLinesError beside the entries of all other lines; a read error is
// returned with the entries read before it.
func ReadAll(r io.Reader) ([]Entry, error) {
	var entries []Entry
	var bad []*LineError
	for e, err := range Read(r) {
		if err != nil {
			var le *LineError
			if errors.As(err, &le) {
				bad = append(bad, le)
				continue
			}
			return entries, err
		}
		entries = append(entries, e)
	}
	if len(bad) > 0 {
		return entries, &BadLinesError{Lines: bad}
	}
	return entries, nil
}

// SessionEntry is the entry of a dosing session's start, dose or end (what),
// with who and how. The session's clinic reference is never in it.
func SessionEntry(what, sessionID, by, via string, at time.Time) Entry {
	return Entry{Time: at, Type: TypeSession, What: what, Session: sessionID, By: by, Via: via}
}
