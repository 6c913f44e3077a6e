package suntech

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
	"github.com/vigil-monitor/vigil/drivers/drivertest"
)

// line connects a Decoder and a Module through a fake clock, as the agent
// would: Start once, Tick every PollEvery, Command on request; whatever the
// host writes goes to the module at once, and the module's reply is fed
// back at the same instant.
type line struct {
	t    *testing.T
	dec  *Decoder
	mod  *Module
	sink *drivertest.Recorder
	cuff []drivers.Reading // nibp_cuff_pressure readings, kept apart from the results
	now  time.Time
	sent []byte // everything the host wrote
	wire bytes.Buffer
}

func newLine(t *testing.T, mod *Module) *line {
	t.Helper()
	l := &line{t: t, dec: NewDecoder(PatientAdult), mod: mod, sink: &drivertest.Recorder{}, now: testNow}
	if err := l.dec.Start(&l.wire, l.now); err != nil {
		t.Fatalf("Start: %v", err)
	}
	l.deliver()
	return l
}

// deliver hands the host's bytes to the module and its reply to the decoder.
func (l *line) deliver() {
	l.sent = append(l.sent, l.wire.Bytes()...)
	reply := l.mod.Exchange(l.wire.Bytes(), l.now)
	l.wire.Reset()
	l.dec.Feed(reply, l.now, cuffSplitter{l})
}

// cuffSplitter records cuff-pressure readings in line.cuff and everything
// else in line.sink, so the tests compare measurement results alone.
type cuffSplitter struct{ l *line }

func (c cuffSplitter) Reading(r drivers.Reading) {
	if r.Metric == drivers.NIBPCuffPressure {
		c.l.cuff = append(c.l.cuff, r)
		return
	}
	c.l.sink.Reading(r)
}

func (c cuffSplitter) Frame(result drivers.FrameResult, dropped int) { c.l.sink.Frame(result, dropped) }

// tick advances the clock by one PollEvery and runs one Tick.
func (l *line) tick() {
	l.t.Helper()
	l.now = l.now.Add(PollEvery)
	if err := l.dec.Tick(&l.wire, l.now); err != nil {
		l.t.Fatalf("Tick: %v", err)
	}
	l.deliver()
}

// tickUntil ticks until the decoder reaches phase, failing after limit.
func (l *line) tickUntil(phase Phase, limit time.Duration) {
	l.t.Helper()
	for start := l.now; l.dec.Phase() != phase; l.tick() {
		if l.now.Sub(start) > limit {
			l.t.Fatalf("still %v after %v, waiting for %v", l.dec.Phase(), limit, phase)
		}
	}
}

func (l *line) command(name string) error {
	err := l.dec.Command(name, &l.wire, l.now)
	l.deliver()
	return err
}

// runUntilIdle ticks until the measurement ends, failing after limit.
func (l *line) runUntilIdle(limit time.Duration) time.Duration {
	l.t.Helper()
	start := l.now
	for l.dec.Measuring() {
		if l.now.Sub(start) > limit {
			l.t.Fatalf("still %v after %v", l.dec.Phase(), limit)
		}
		l.tick()
	}
	return l.now.Sub(start)
}

// akgitResult is the worked example's result, as the emulator's setting.
var akgitResult = Result{Systolic: 115, Diastolic: 74, Beats: 30, Status: 1,
	TestCodes: [8]byte{6: 0x31, 7: 0x07}, HeartRate: 85, Mean: 88}

func TestConversationSuccess(t *testing.T) {
	mod := &Module{Result: akgitResult, Duration: 30 * time.Second}
	l := newLine(t, mod)
	if w, ok := l.dec.ModuleStatus(); !ok || w != 0 {
		t.Fatalf("ModuleStatus = %d %v after Start", w, ok)
	}
	if err := l.command(CommandStart); err != nil {
		t.Fatalf("start: %v", err)
	}
	if l.dec.Phase() != PhaseMeasuring || !mod.Measuring() {
		t.Fatalf("after start: decoder %v, module measuring %v", l.dec.Phase(), mod.Measuring())
	}
	peak := 0
	start := l.now
	for l.dec.Measuring() {
		l.tick()
		if p, at, ok := l.dec.CuffPressure(); ok && at.Equal(l.now) && p > peak {
			peak = p
		}
		if len(l.sink.Readings) != 0 && l.dec.Measuring() {
			t.Fatalf("readings while measuring: %v", views(l.sink.Readings))
		}
		if l.now.Sub(start) > time.Minute {
			t.Fatal("no result after a minute")
		}
	}
	if got := views(l.sink.Readings); !reflect.DeepEqual(got, goodResult) {
		t.Fatalf("readings\n got %v\nwant %v", got, goodResult)
	}
	// The cuff pressure was published while the measurement ran, flagged
	// inflating, up to the peak the module reported.
	cuffPeak := 0.0
	for _, r := range l.cuff {
		if !r.Valid || r.Flags != drivers.FlagInflating {
			t.Errorf("cuff pressure reading %+v: want valid, flagged inflating", r)
		}
		cuffPeak = max(cuffPeak, r.Value)
	}
	if len(l.cuff) < 10 || int(cuffPeak) != peak {
		t.Errorf("%d cuff pressure readings peaking at %v; want one per poll, peaking at %d", len(l.cuff), cuffPeak, peak)
	}
	// The result comes at most two ticks after the module's 30 s: one to
	// see 'K', one to fetch.
	if took := l.now.Sub(start); took < 30*time.Second || took > 30*time.Second+2*PollEvery {
		t.Fatalf("result after %v", took)
	}
	if peak < 150 || peak > DefaultPeakPressure {
		t.Fatalf("cuff pressure peaked at %d mmHg, want about %d", peak, DefaultPeakPressure)
	}
	if code, text := l.dec.LastError(); code != CodeOK || text != "" {
		t.Fatalf("LastError = %d %q", code, text)
	}
	if l.sink.Frames.Checksum+l.sink.Frames.Malformed+l.sink.Frames.InvalidValue != 0 {
		t.Fatalf("frames %+v", l.sink.Frames)
	}
	if mod.Fetches != 1 || mod.Starts != 1 || mod.StatusQueries != 1 || mod.Aborts != 0 {
		t.Fatalf("module saw starts %d fetches %d status %d aborts %d", mod.Starts, mod.Fetches, mod.StatusQueries, mod.Aborts)
	}
	// One poll per tick while measuring: 2 Hz.
	if mod.Polls < 55 || mod.Polls > 62 {
		t.Fatalf("%d polls in 30 s", mod.Polls)
	}
	// The host's bytes: status query, start, polls, fetch.
	want := cat(AppendGetModuleStatus(nil), AppendStart(nil, PatientAdult), AppendGetCuffPressure(nil))
	if !bytes.HasPrefix(l.sent, want) || !bytes.HasSuffix(l.sent, AppendGetBPData(nil)) {
		t.Fatalf("host sent % X", l.sent)
	}
	// A second measurement may start now.
	if err := l.command(CommandStart); err != nil {
		t.Fatalf("second start: %v", err)
	}
}

func TestConversationEachErrorCode(t *testing.T) {
	for _, code := range documentedErrorCodes {
		r := akgitResult // values left in place: they must not be used
		r.ErrorCode = code
		l := newLine(t, &Module{Result: r, Duration: 5 * time.Second})
		if err := l.command(CommandStart); err != nil {
			t.Fatal(err)
		}
		l.runUntilIdle(time.Minute)
		if got := views(l.sink.Readings); !reflect.DeepEqual(got, failedResult) {
			t.Fatalf("code 0x%02X: readings %v", code, got)
		}
		if c, text := l.dec.LastError(); c != int(code) || text != ErrorText(int(code)) {
			t.Fatalf("code 0x%02X: LastError %#x %q", code, c, text)
		}
	}
}

// TestConversationTimeout: a module still measuring after MaxMeasurement is
// abandoned: no values, cuff error, an abort sent, back to idle.
func TestConversationTimeout(t *testing.T) {
	mod := &Module{Result: akgitResult, Duration: 10 * time.Minute}
	l := newLine(t, mod)
	if err := l.command(CommandStart); err != nil {
		t.Fatal(err)
	}
	took := l.runUntilIdle(MaxMeasurement + time.Second)
	if took != MaxMeasurement {
		t.Fatalf("gave up after %v, want %v", took, MaxMeasurement)
	}
	if got := views(l.sink.Readings); !reflect.DeepEqual(got, failedResult) {
		t.Fatalf("readings %v", got)
	}
	if code, text := l.dec.LastError(); code != CodeTimedOut || !strings.Contains(text, "3m0s") {
		t.Fatalf("LastError %d %q", code, text)
	}
	if mod.Aborts != 1 || mod.Measuring() {
		t.Fatalf("module: aborts %d, measuring %v: the cuff must be deflated", mod.Aborts, mod.Measuring())
	}
	if l.dec.Phase() != PhaseIdle {
		t.Fatalf("phase %v", l.dec.Phase())
	}
	for _, r := range l.sink.Readings {
		if !r.Received.Equal(testNow.Add(MaxMeasurement)) {
			t.Fatalf("timeout reading received at %v", r.Received)
		}
	}
	// The 'A' 'K' of the abort arrive while idle and change nothing.
	l.tick()
	if len(l.sink.Readings) != 4 || l.dec.Phase() != PhaseIdle {
		t.Fatalf("after the abort's reply: %v, %v", views(l.sink.Readings), l.dec.Phase())
	}
}

// TestConversationNoReply: a module that stops answering mid-measurement
// is given MaxRetries resends, then the measurement is abandoned.
func TestConversationNoReply(t *testing.T) {
	mod := &Module{Result: akgitResult}
	l := newLine(t, mod)
	if err := l.command(CommandStart); err != nil {
		t.Fatal(err)
	}
	for range 6 {
		l.tick()
	}
	mod.Mute = true
	polls := mod.Polls
	took := l.runUntilIdle(30 * time.Second)
	if got := views(l.sink.Readings); !reflect.DeepEqual(got, failedResult) {
		t.Fatalf("readings %v", got)
	}
	if code, _ := l.dec.LastError(); code != CodeNoReply {
		t.Fatalf("LastError %d", code)
	}
	// One unanswered poll plus MaxRetries resends, ReplyTimeout apart.
	if n := mod.Polls - polls; n != MaxRetries+1 {
		t.Fatalf("%d polls sent to the mute module, want %d", n, MaxRetries+1)
	}
	if lim := ReplyTimeout*(MaxRetries+1) + PollEvery; took > lim {
		t.Fatalf("gave up after %v, want at most %v", took, lim)
	}
	if mod.Aborts != 1 || mod.Measuring() {
		t.Fatalf("module: aborts %d measuring %v", mod.Aborts, mod.Measuring())
	}
}

// TestConversationDeadModule: no 'O' to the start: the start is resent
// (a 'B' would then mean our first start did arrive), then abandoned.
func TestConversationDeadModule(t *testing.T) {
	mod := &Module{Mute: true}
	l := newLine(t, mod)
	if _, ok := l.dec.ModuleStatus(); ok {
		t.Fatal("module status from a mute module")
	}
	if err := l.command(CommandStart); err != nil {
		t.Fatal(err)
	}
	l.runUntilIdle(10 * time.Second)
	if got := views(l.sink.Readings); !reflect.DeepEqual(got, failedResult) {
		t.Fatalf("readings %v", got)
	}
	if code, _ := l.dec.LastError(); code != CodeNoReply {
		t.Fatalf("LastError %d", code)
	}
	if mod.Starts != MaxRetries+1 || mod.Aborts != 1 {
		t.Fatalf("module saw %d starts, %d aborts", mod.Starts, mod.Aborts)
	}
}

func TestStartWhileRunning(t *testing.T) {
	mod := &Module{Result: akgitResult, Duration: 10 * time.Second}
	l := newLine(t, mod)
	if err := l.command(CommandStart); err != nil {
		t.Fatal(err)
	}
	for _, phase := range []Phase{PhaseMeasuring, PhaseFetching} {
		l.tickUntil(phase, time.Minute)
		sentBefore := len(l.sent)
		err := l.dec.Command(CommandStart, &l.wire, l.now)
		if !errors.Is(err, ErrMeasurementRunning) {
			t.Fatalf("%v: start returned %v, want ErrMeasurementRunning", phase, err)
		}
		if l.wire.Len() != 0 || len(l.sent) != sentBefore {
			t.Fatalf("%v: a refused start wrote % X", phase, l.wire.Bytes())
		}
	}
	l.runUntilIdle(time.Minute)
	if got := views(l.sink.Readings); !reflect.DeepEqual(got, goodResult) {
		t.Fatalf("readings %v", got)
	}
	if mod.Starts != 1 {
		t.Fatalf("module saw %d starts", mod.Starts)
	}
}

// TestGarbageInReplies: line noise before every reply, including a false
// '>' 0x18 start that swallows real frames until its checksum fails.
func TestGarbageInReplies(t *testing.T) {
	for name, noise := range map[string][]byte{
		"plain noise":          {0x00, 0xFF, 0x55, 0x3A, 0x0D, 0x0A},
		"'>' with a bad LEN":   {0x3E, 0x00, 0x3E, 0x3E, 0x7F},
		"false start LEN 0x18": {0x3E, 0x18},
		"false start LEN 4":    {0x3E, 0x04},
	} {
		t.Run(name, func(t *testing.T) {
			mod := &Module{Result: akgitResult, Duration: 10 * time.Second, Noise: noise}
			l := newLine(t, mod)
			if err := l.command(CommandStart); err != nil {
				t.Fatal(err)
			}
			l.runUntilIdle(time.Minute)
			if got := views(l.sink.Readings); !reflect.DeepEqual(got, goodResult) {
				t.Fatalf("readings %v", got)
			}
			if l.sink.Frames.Malformed+l.sink.Frames.Checksum == 0 || l.sink.Frames.Dropped == 0 {
				t.Fatalf("noise not counted: %+v", l.sink.Frames)
			}
		})
	}
}

func TestCorruptedAndLostReplies(t *testing.T) {
	t.Run("corrupted polls are resent", func(t *testing.T) {
		mod := &Module{Result: akgitResult, Duration: 10 * time.Second}
		l := newLine(t, mod)
		if err := l.command(CommandStart); err != nil {
			t.Fatal(err)
		}
		l.tick()
		mod.CorruptReplies = MaxRetries // one fewer than abandons
		l.runUntilIdle(time.Minute)
		if got := views(l.sink.Readings); !reflect.DeepEqual(got, goodResult) {
			t.Fatalf("readings %v", got)
		}
		if l.sink.Frames.Checksum != MaxRetries {
			t.Fatalf("frames %+v", l.sink.Frames)
		}
	})
	t.Run("lost result is fetched again", func(t *testing.T) {
		mod := &Module{Result: akgitResult, Duration: 10 * time.Second}
		l := newLine(t, mod)
		if err := l.command(CommandStart); err != nil {
			t.Fatal(err)
		}
		l.tickUntil(PhaseFetching, time.Minute)
		mod.DropReplies = 1
		l.runUntilIdle(time.Minute)
		if got := views(l.sink.Readings); !reflect.DeepEqual(got, goodResult) {
			t.Fatalf("readings %v", got)
		}
		if mod.Fetches != 2 {
			t.Fatalf("%d fetches", mod.Fetches)
		}
	})
	t.Run("lost O: start resent, B taken as measuring", func(t *testing.T) {
		mod := &Module{Result: akgitResult, Duration: 10 * time.Second, DropReplies: 1}
		l := newLine(t, mod) // the module-status reply is the one lost
		mod.DropReplies = 1
		if err := l.command(CommandStart); err != nil {
			t.Fatal(err)
		}
		if l.dec.Phase() != PhaseStarting {
			t.Fatalf("phase %v", l.dec.Phase())
		}
		l.runUntilIdle(time.Minute)
		if got := views(l.sink.Readings); !reflect.DeepEqual(got, goodResult) {
			t.Fatalf("readings %v", got)
		}
		if mod.Starts != 2 {
			t.Fatalf("%d starts", mod.Starts)
		}
	})
}

func TestAbort(t *testing.T) {
	mod := &Module{Result: akgitResult}
	l := newLine(t, mod)
	if err := l.command(CommandStart); err != nil {
		t.Fatal(err)
	}
	for range 10 {
		l.tick()
	}
	if err := l.command(CommandAbort); err != nil {
		t.Fatal(err)
	}
	if l.dec.Phase() != PhaseIdle || mod.Measuring() {
		t.Fatalf("after abort: %v, module measuring %v", l.dec.Phase(), mod.Measuring())
	}
	if len(l.sink.Readings) != 0 {
		t.Fatalf("an aborted measurement gave readings %v", views(l.sink.Readings))
	}
	if code, _ := l.dec.LastError(); code != CodeAborted {
		t.Fatalf("LastError %d", code)
	}
	if !bytes.HasSuffix(l.sent, hexBytes(t, "3A 79 01 00 4C")) {
		t.Fatalf("host sent % X", l.sent)
	}
	// Abort while idle: sent, harmless, stays idle.
	if err := l.command(CommandAbort); err != nil || l.dec.Phase() != PhaseIdle || mod.Aborts != 2 {
		t.Fatalf("idle abort: %v %v %d", err, l.dec.Phase(), mod.Aborts)
	}
	if err := l.command(CommandStart); err != nil {
		t.Fatalf("start after abort: %v", err)
	}
}

func TestAbortUnanswered(t *testing.T) {
	mod := &Module{Result: akgitResult}
	l := newLine(t, mod)
	if err := l.command(CommandStart); err != nil {
		t.Fatal(err)
	}
	mod.Mute = true
	if err := l.command(CommandAbort); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(l.dec.Command(CommandStart, &l.wire, l.now), ErrMeasurementRunning) {
		t.Fatal("start accepted while an abort is unconfirmed")
	}
	for i := 0; l.dec.Phase() == PhaseAborting; i++ {
		if i > 20 {
			t.Fatal("abort never given up")
		}
		l.tick()
	}
	if mod.Aborts != MaxRetries+1 || len(l.sink.Readings) != 0 {
		t.Fatalf("aborts %d readings %v", mod.Aborts, views(l.sink.Readings))
	}
}

// TestStatusRepliesToStart feeds the decoder the module's replies by hand.
func TestStatusRepliesToStart(t *testing.T) {
	for _, tt := range []struct {
		reply byte
		phase Phase
		code  int
	}{
		{'O', PhaseMeasuring, CodeOK},
		{'B', PhaseMeasuring, CodeOK},
		{'K', PhaseStarting, CodeOK}, // tail of an earlier abort
		{'A', PhaseStarting, CodeOK},
		{'E', PhaseIdle, CodeRefused},
		{'N', PhaseIdle, CodeRefused},
		{'D', PhaseIdle, CodeRefused},
		{'S', PhaseIdle, CodeRefused},
		{'T', PhaseIdle, CodeRefused},
		{'?', PhaseIdle, CodeRefused},
	} {
		d := NewDecoder(PatientAdult)
		s := &drivertest.Recorder{}
		var w bytes.Buffer
		if err := d.Command(CommandStart, &w, testNow); err != nil {
			t.Fatal(err)
		}
		d.Feed(AppendStatusReply(nil, tt.reply), testNow, s)
		code, text := d.LastError()
		if d.Phase() != tt.phase || code != tt.code {
			t.Errorf("'%c': phase %v code %d, want %v %d", tt.reply, d.Phase(), code, tt.phase, tt.code)
		}
		if tt.code == CodeRefused {
			if !reflect.DeepEqual(views(s.Readings), failedResult) || !strings.Contains(text, "'"+string(tt.reply)+"'") {
				t.Errorf("'%c': readings %v text %q", tt.reply, views(s.Readings), text)
			}
		} else if len(s.Readings) != 0 {
			t.Errorf("'%c': readings %v", tt.reply, views(s.Readings))
		}
	}
}

func TestStatusRepliesWhileMeasuring(t *testing.T) {
	for _, tt := range []struct {
		reply byte
		phase Phase
		code  int
	}{
		{'K', PhaseFetching, CodeOK},
		{'A', PhaseIdle, CodeModuleAborted},
		{'S', PhaseIdle, CodeRefused},
		{'E', PhaseMeasuring, CodeOK}, // a poll the module did not take
		{'D', PhaseMeasuring, CodeOK},
		{'N', PhaseMeasuring, CodeOK},
		{'T', PhaseMeasuring, CodeOK},
		{'B', PhaseMeasuring, CodeOK},
		{'O', PhaseMeasuring, CodeOK},
	} {
		d := NewDecoder(PatientAdult)
		s := &drivertest.Recorder{}
		var w bytes.Buffer
		if err := d.Command(CommandStart, &w, testNow); err != nil {
			t.Fatal(err)
		}
		d.Feed(AppendStatusReply(nil, 'O'), testNow, s)
		d.Feed(AppendStatusReply(nil, tt.reply), testNow, s)
		code, _ := d.LastError()
		if d.Phase() != tt.phase || code != tt.code {
			t.Errorf("'%c': phase %v code %d, want %v %d", tt.reply, d.Phase(), code, tt.phase, tt.code)
		}
		wantReadings := 0
		if tt.code != CodeOK {
			wantReadings = 4
		}
		if len(s.Readings) != wantReadings {
			t.Errorf("'%c': readings %v", tt.reply, views(s.Readings))
		}
	}
}

// TestOutcomeWithoutSink: Tick has no Sink parameter. A failure decided by
// the clock before any Feed waits for the next Feed, stamped with the time
// it was decided; Advance takes a Sink directly.
func TestOutcomeWithoutSink(t *testing.T) {
	d := NewDecoder(PatientAdult)
	var w bytes.Buffer
	if err := d.Command(CommandStart, &w, testNow); err != nil {
		t.Fatal(err)
	}
	now := testNow
	for d.Measuring() {
		if now.Sub(testNow) > time.Minute {
			t.Fatalf("still %v", d.Phase())
		}
		now = now.Add(PollEvery)
		if err := d.Tick(&w, now); err != nil {
			t.Fatal(err)
		}
	}
	decided := now
	s := &drivertest.Recorder{}
	d.Feed(nil, now.Add(time.Minute), s)
	if got := views(s.Readings); !reflect.DeepEqual(got, failedResult) {
		t.Fatalf("readings %v", got)
	}
	for _, r := range s.Readings {
		if !r.Received.Equal(decided) {
			t.Fatalf("Received %v, want %v", r.Received, decided)
		}
	}
	d.Feed(nil, now, s)
	if len(s.Readings) != 4 {
		t.Fatal("the deferred outcome was reported twice")
	}

	d = NewDecoder(PatientAdult)
	s = &drivertest.Recorder{}
	if err := d.Command(CommandStart, &w, testNow); err != nil {
		t.Fatal(err)
	}
	for now = testNow; d.Measuring(); {
		if now.Sub(testNow) > time.Minute {
			t.Fatalf("still %v", d.Phase())
		}
		now = now.Add(PollEvery)
		if err := d.Advance(&w, now, s); err != nil {
			t.Fatal(err)
		}
	}
	if got := views(s.Readings); !reflect.DeepEqual(got, failedResult) {
		t.Fatalf("Advance: readings %v", got)
	}
}

// TestIdleProbe: an idle module is asked for its cuff pressure every
// IdleProbeEvery, so a working module keeps sending frames (SilentAfter)
// and a dead one goes silent.
func TestIdleProbe(t *testing.T) {
	mod := &Module{}
	l := newLine(t, mod)
	for l.now.Sub(testNow) < time.Minute {
		l.tick()
	}
	if mod.Polls != 12 {
		t.Fatalf("%d probes in a minute, want 12 (every %v)", mod.Polls, IdleProbeEvery)
	}
	if l.sink.Frames.OK != 13 { // the status reply and 12 pressures
		t.Fatalf("frames %+v", l.sink.Frames)
	}
	if len(l.cuff) != 0 || len(l.sink.Readings) != 0 {
		t.Fatalf("idle probes published readings: cuff %v, others %v", l.cuff, views(l.sink.Readings))
	}
	if IdleProbeEvery*2 >= silentAfter {
		t.Fatalf("SilentAfter %v leaves no room for a lost probe", silentAfter)
	}
	// A mute module gets no resends while idle: silence is the signal.
	mod.Mute = true
	polls := mod.Polls
	for range 20 {
		l.tick()
	}
	if mod.Polls-polls != 2 {
		t.Fatalf("%d probes in 10 s to a mute module", mod.Polls-polls)
	}
}

// TestDuplicateResult: a second, identical result right after a fetch is
// the reply to a resent "get BP data", not a new measurement.
func TestDuplicateResult(t *testing.T) {
	d := NewDecoder(PatientAdult)
	s := &drivertest.Recorder{}
	var w bytes.Buffer
	if err := d.Command(CommandStart, &w, testNow); err != nil {
		t.Fatal(err)
	}
	d.Feed(AppendStatusReply(nil, 'O'), testNow, s)
	d.Feed(AppendStatusReply(nil, 'K'), testNow, s)
	if err := d.Tick(&w, testNow.Add(PollEvery)); err != nil {
		t.Fatal(err)
	}
	res := hexBytes(t, workedResult)
	d.Feed(res, testNow.Add(time.Second), s)
	d.Feed(res, testNow.Add(2*time.Second), s)
	if len(s.Readings) != 4 || s.Frames.OK != 4 {
		t.Fatalf("duplicate reported: %v %+v", views(s.Readings), s.Frames)
	}
	// Later, or different, results are reported (the simulator sends
	// results unasked).
	d.Feed(res, testNow.Add(time.Minute), s)
	if len(s.Readings) != 8 {
		t.Fatalf("later result not reported: %d readings", len(s.Readings))
	}
}

type failingWriter struct{}

var errUnplugged = errors.New("unplugged")

func (failingWriter) Write([]byte) (int, error) { return 0, errUnplugged }

func TestCommandErrors(t *testing.T) {
	d := NewDecoder(PatientAdult)
	var w bytes.Buffer
	if err := d.Command("nibp_inflate", &w, testNow); !errors.Is(err, drivers.ErrUnknownCommand) {
		t.Fatalf("unknown command: %v", err)
	}
	if w.Len() != 0 {
		t.Fatalf("unknown command wrote % X", w.Bytes())
	}
	if err := d.Command(CommandStart, failingWriter{}, testNow); !errors.Is(err, errUnplugged) {
		t.Fatalf("start on a broken port: %v", err)
	}
	if d.Phase() != PhaseIdle {
		t.Fatalf("a start that was never written left phase %v", d.Phase())
	}
	if err := d.Start(failingWriter{}, testNow); !errors.Is(err, errUnplugged) {
		t.Fatalf("Start: %v", err)
	}
	if got := d.Commands(); !reflect.DeepEqual(got, []string{"nibp_abort", "nibp_start"}) {
		t.Fatalf("Commands = %v", got)
	}
	if d.TickEvery() != PollEvery {
		t.Fatalf("TickEvery = %v", d.TickEvery())
	}
}

func TestPatientStartCommand(t *testing.T) {
	for p, want := range map[Patient]string{PatientAdult: "3A20A6", PatientPediatric: "3A873F", PatientNeonatal: "3A289E"} {
		d := NewDecoder(p)
		var w bytes.Buffer
		if err := d.Command(CommandStart, &w, testNow); err != nil {
			t.Fatal(err)
		}
		if hexOf(w.Bytes()) != want {
			t.Errorf("%v: start % X, want %s", p, w.Bytes(), want)
		}
		// Resends use the same command.
		w.Reset()
		if err := d.Tick(&w, testNow.Add(ReplyTimeout)); err != nil {
			t.Fatal(err)
		}
		if hexOf(w.Bytes()) != want {
			t.Errorf("%v: resent % X", p, w.Bytes())
		}
	}
}

func TestModuleStatusWord(t *testing.T) {
	l := newLine(t, &Module{StatusWord: 0x0102})
	if w, ok := l.dec.ModuleStatus(); !ok || w != 0x0102 {
		t.Fatalf("ModuleStatus = %#x %v", w, ok)
	}
	if _, _, ok := l.dec.CuffPressure(); ok {
		t.Fatal("the status word was taken as a cuff pressure")
	}
}

// TestInterfaces pins what the agent discovers by type assertion.
func TestInterfaces(t *testing.T) {
	var dec drivers.Decoder = NewDecoder(PatientAdult)
	if _, ok := dec.(drivers.Conversation); !ok {
		t.Error("not a Conversation")
	}
	if _, ok := dec.(drivers.Commander); !ok {
		t.Error("not a Commander")
	}
}
