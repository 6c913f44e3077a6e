package suntech

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
)

// Timing of the conversation. protocols.md 4.1 gives none of these except
// nPM's 200 ms pressure poll; each value's reason is beside it, and
// README.md "Conversation" lists them.
const (
	// PollEvery is TickEvery: one cuff-pressure poll per tick while a
	// measurement runs [I]. nPM polls every 200 ms; the pressure is not a
	// vital sign, so 2 Hz is enough, and it bounds the delay between the
	// module's 'K' and the host's "get BP data" to half a second.
	PollEvery = 500 * time.Millisecond
	// ReplyTimeout is how long a command waits for its reply before it is
	// sent again [I]. A reply is at most 24 bytes, 25 ms at 9600 baud; the
	// rest is slack for the module and for USB-serial latency.
	ReplyTimeout = time.Second
	// MaxRetries is how many times an unanswered command is sent again
	// before the measurement is abandoned (CodeNoReply) [I]: four sends
	// over about four seconds tell a dead module from a lost byte.
	MaxRetries = 3
	// MaxMeasurement bounds one measurement, from the start command to the
	// result. protocols.md gives no maximum; 180 s is the limit IEC
	// 80601-2-30 sets on one adult determination (cuff above venous
	// pressure), so a module still measuring after it is faulty [I].
	MaxMeasurement = 180 * time.Second
	// IdleProbeEvery is how often an idle module is asked for its cuff
	// pressure, so that a module that stopped answering shows as silent
	// (SilentAfter) between measurements [I].
	IdleProbeEvery = 5 * time.Second
	// duplicateWindow: a result identical to the one just fetched, arriving
	// within the time all the fetch's resends could take, is the late reply
	// to a resent "get BP data", not a new measurement.
	duplicateWindow = ReplyTimeout * (MaxRetries + 1)
	// maxGarbageRun reports a long run of non-frame bytes as one malformed
	// frame, so a stream of garbage is counted while it lasts.
	maxGarbageRun = 256
	// maxCuffPressure is the highest cuff pressure taken as a reading; the
	// module's over-pressure cut-off is below it (README.md).
	maxCuffPressure = 350
	// noPressure is nPM's "no value" for the cuff pressure: int16 -1.
	noPressure = 0xFFFF
)

// ErrMeasurementRunning is returned by Command("nibp_start") while a
// measurement (or an abort) is in progress: never two at once.
var ErrMeasurementRunning = errors.New("suntech: a measurement is already in progress")

// Commands the decoder takes (drivers.Commander).
const (
	CommandStart = "nibp_start"
	CommandAbort = "nibp_abort"
)

// Phase is where the host-driven conversation stands.
type Phase uint8

const (
	PhaseIdle      Phase = iota // no measurement
	PhaseStarting               // start sent, waiting for 'O'
	PhaseMeasuring              // module measuring: cuff pressure polled, waiting for 'K'
	PhaseFetching               // 'K' seen: "get BP data" sent or due
	PhaseAborting               // abort sent, waiting for 'A' or 'K'
)

func (p Phase) String() string {
	switch p {
	case PhaseIdle:
		return "idle"
	case PhaseStarting:
		return "starting"
	case PhaseMeasuring:
		return "measuring"
	case PhaseFetching:
		return "fetching"
	case PhaseAborting:
		return "aborting"
	}
	return "unknown"
}

// awaiting is the reply the decoder waits for.
type awaiting uint8

const (
	awaitNone     awaiting = iota
	awaitPressure          // cuff-pressure poll or idle probe: LEN=5 (or any status)
	awaitStatus            // module status, sent by Start: LEN=5 [I]
	awaitStartAck          // start: 'O' or 'B'
	awaitResult            // get BP data: LEN=0x18
	awaitAbortAck          // abort: 'A' or 'K'
)

// Decoder decodes the SunTech Advantage module's replies (protocols.md
// 4.1) and drives the conversation: it is the drivers.Decoder,
// drivers.Conversation and drivers.Commander of one connection.
//
// Feed, Tick, Command and the state getters must be called from one
// goroutine at a time (the agent serializes them); a Decoder is not safe
// for concurrent use. Everything time-driven uses the time passed in, never
// the wall clock, so tests drive it with a fake clock.
//
// Readings: the four NIBP metrics of each result, in the order systolic,
// diastolic, mean, pulse rate. A result with a non-zero error code, a
// refused start, a measurement over MaxMeasurement and a module that stops
// answering all give the four metrics with Valid=false and FlagCuffError,
// and LastError names why. Outcomes decided by the clock (timeout, no
// reply) come from Tick, whose signature has no Sink: they go to the Sink
// of the latest Feed call, or wait for the next Feed if there was none
// (README.md "Interface gap"). Advance is Tick with an explicit Sink.
type Decoder struct {
	patient Patient

	// Framing: unconsumed bytes, and the current run of non-frame bytes.
	buf     [64]byte // > 2*maxFrameLen: a partial frame plus a read
	n       int
	garbage int

	// Conversation.
	phase      Phase
	startedAt  time.Time
	await      awaiting
	sentAt     time.Time
	retries    int
	lastProbe  time.Time
	probedOnce bool

	cuffPressure   uint16
	cuffAt         time.Time
	cuffValid      bool
	moduleStatus   uint16
	moduleStatusOK bool

	lastCode int
	lastText string

	// The last fetched result, to drop a resent fetch's second reply.
	lastResult   [LenResult]byte
	lastResultAt time.Time
	fetchedOnce  bool

	sink    drivers.Sink // of the latest Feed, for Tick's outcomes
	queued  bool         // a failure waits for a Sink (LastError has its code)
	queueAt time.Time

	out [16]byte // scratch for commands
}

// NewDecoder returns a Decoder that starts measurements for patient.
func NewDecoder(patient Patient) *Decoder {
	return &Decoder{patient: patient}
}

var (
	sysInfo   = drivers.NIBPSystolic.Info()
	diaInfo   = drivers.NIBPDiastolic.Info()
	meanInfo  = drivers.NIBPMean.Info()
	pulseInfo = drivers.NIBPPulseRate.Info()
)

// Feed consumes module bytes. A packet is '>' + LEN + data + CHK with LEN
// one of 4, 5 or 0x18 and a zero byte sum; anything else is skipped byte by
// byte until the next '>' (resync, protocols.md 4.1 and 7.1).
func (d *Decoder) Feed(p []byte, now time.Time, sink drivers.Sink) {
	d.sink = sink
	if d.queued {
		d.queued = false
		d.emitInvalid(sink, d.queueAt, drivers.FlagCuffError)
	}
	for len(p) > 0 {
		k := copy(d.buf[d.n:], p)
		d.n += k
		p = p[k:]
		d.parse(now, sink)
	}
}

// parse consumes every complete frame and garbage byte in d.buf, keeping a
// possible frame's first bytes for the next call. Its decisions depend only
// on the bytes, so the same stream gives the same frames however it is cut.
func (d *Decoder) parse(now time.Time, sink drivers.Sink) {
	b := d.buf[:d.n]
	i := 0
	for i < len(b) {
		if b[i] != ModuleStart {
			d.skip(sink)
			i++
			continue
		}
		if len(b)-i < 2 {
			break
		}
		l := int(b[i+1])
		if l != LenStatus && l != LenPressure && l != LenResult {
			d.skip(sink) // a '>' that starts no frame
			i++
			continue
		}
		if len(b)-i < l {
			break
		}
		frame := b[i : i+l]
		d.flushGarbage(sink)
		if !sumIsZero(frame) {
			// Drop up to the next '>' inside the bad frame, which may be
			// the real start of a frame behind a false one.
			k := bytes.IndexByte(frame[1:], ModuleStart)
			if k < 0 {
				k = l
			} else {
				k++
			}
			sink.Frame(drivers.FrameChecksum, k)
			i += k
			continue
		}
		sink.Frame(d.handle(frame, now, sink), 0)
		i += l
	}
	d.n = copy(d.buf[:], b[i:])
}

func (d *Decoder) skip(sink drivers.Sink) {
	d.garbage++
	if d.garbage >= maxGarbageRun {
		d.flushGarbage(sink)
	}
}

func (d *Decoder) flushGarbage(sink drivers.Sink) {
	if d.garbage > 0 {
		sink.Frame(drivers.FrameMalformed, d.garbage)
		d.garbage = 0
	}
}

// handle acts on one checksum-valid frame and returns its outcome; the
// readings it gives are reported before the caller's Frame call.
func (d *Decoder) handle(frame []byte, now time.Time, sink drivers.Sink) drivers.FrameResult {
	switch len(frame) {
	case LenStatus:
		d.onStatus(frame[2], now, sink)
		return drivers.FrameOK
	case LenPressure:
		return d.onWord(binary.LittleEndian.Uint16(frame[2:]), now, sink)
	default:
		return d.onResult(frame, now, sink)
	}
}

func (d *Decoder) onStatus(c byte, now time.Time, sink drivers.Sink) {
	switch d.phase {
	case PhaseIdle:
		// 'A'/'K' after an abort, or a reply to a probe: the module is
		// alive; nothing runs.
		if d.await == awaitPressure || d.await == awaitStatus {
			d.answered()
		}
	case PhaseStarting:
		switch c {
		case StatusReceived, StatusBusy:
			// 'B' is taken as "already measuring" [I]: after a resent
			// start whose 'O' was lost, the module is measuring our
			// determination; otherwise it is measuring this cuff anyway,
			// and its result is the patient's current pressure.
			d.phase = PhaseMeasuring
			d.answered()
		case StatusExecuted, StatusAborted:
			// The tail of an earlier abort ("A" then "K"): not our reply.
		default:
			d.fail(sink, now, CodeRefused, fmt.Sprintf("%s: replied '%c' (%s)",
				ErrorText(CodeRefused), c, StatusText(c)))
		}
	case PhaseMeasuring:
		switch c {
		case StatusExecuted:
			// The determination ended [C: nPM state machine]; the result
			// is fetched at the next tick (Feed cannot write).
			d.phase = PhaseFetching
			d.answered()
		case StatusAborted:
			d.fail(sink, now, CodeModuleAborted, ErrorText(CodeModuleAborted))
		case StatusSleep:
			d.fail(sink, now, CodeRefused, ErrorText(CodeRefused)+": module is in sleep mode")
		default:
			// 'E', 'N', 'D', 'T', 'O', 'B': the answer to a command the
			// module did not take (a poll garbled on the wire) [I]. The
			// determination goes on; MaxMeasurement bounds it.
			if d.await == awaitPressure {
				d.answered()
			}
		}
	case PhaseFetching:
		// A status instead of the result ('B', 'E'): the fetch is resent
		// when ReplyTimeout passes.
	case PhaseAborting:
		if c == StatusAborted || c == StatusExecuted {
			d.phase = PhaseIdle
			d.answered()
		}
	}
}

// onWord handles a LEN=5 reply: the module-status word when that is what
// was asked [I: nPM power-on self-test], otherwise the cuff pressure.
func (d *Decoder) onWord(v uint16, now time.Time, sink drivers.Sink) drivers.FrameResult {
	if d.await == awaitStatus {
		d.moduleStatus, d.moduleStatusOK = v, true
		d.answered()
		return drivers.FrameOK
	}
	if d.await == awaitPressure {
		d.answered()
	}
	d.cuffAt = now
	switch {
	case v == noPressure:
		d.cuffValid = false
		return drivers.FrameOK
	case v > maxCuffPressure:
		d.cuffValid = false
		return drivers.FrameInvalidValue
	}
	d.cuffPressure, d.cuffValid = v, true
	if d.Measuring() {
		// Published while the cuff inflates and deflates, so staff see a
		// measurement is under way (the idle probes' zero is not).
		sink.Reading(drivers.Reading{Metric: drivers.NIBPCuffPressure, Value: float64(v), Valid: true,
			Received: now, Flags: drivers.FlagInflating})
	}
	return drivers.FrameOK
}

func (d *Decoder) onResult(frame []byte, now time.Time, sink drivers.Sink) drivers.FrameResult {
	switch d.phase {
	case PhaseFetching:
		copy(d.lastResult[:], frame)
		d.lastResultAt, d.fetchedOnce = now, true
		d.phase = PhaseIdle
		d.answered()
	case PhaseIdle:
		if d.fetchedOnce && bytes.Equal(frame, d.lastResult[:]) && now.Sub(d.lastResultAt) <= duplicateWindow {
			return drivers.FrameOK
		}
	}
	// Outside a fetch: the module never sends a result unasked, but the
	// simulator's Encoder does, and the packet is self-describing and
	// checksummed, so it is reported [I].
	r := parseResult(frame[2 : 2+resultDataLen])
	if r.ErrorCode != 0 {
		d.setLastError(int(r.ErrorCode), ErrorText(int(r.ErrorCode)))
		d.emitInvalid(sink, now, drivers.FlagCuffError)
		return drivers.FrameOK
	}
	d.setLastError(CodeOK, "")
	ok := emitValue(sink, &sysInfo, float64(r.Systolic), now)
	ok = emitValue(sink, &diaInfo, float64(r.Diastolic), now) && ok
	ok = emitValue(sink, &meanInfo, float64(r.Mean), now) && ok
	ok = emitValue(sink, &pulseInfo, float64(r.HeartRate), now) && ok
	if !ok {
		return drivers.FrameInvalidValue
	}
	return drivers.FrameOK
}

// emitValue reports one value; false when it is outside the metric's range.
func emitValue(sink drivers.Sink, m *drivers.Metric, v float64, now time.Time) bool {
	r := drivers.Reading{Metric: m.ID, Value: v, Received: now}
	if m.InRange(v) {
		r.Valid = true
	} else {
		r.Flags = drivers.FlagOutOfRange
	}
	sink.Reading(r)
	return r.Valid
}

func (d *Decoder) emitInvalid(sink drivers.Sink, now time.Time, flags drivers.Flags) {
	for _, m := range [...]drivers.MetricID{drivers.NIBPSystolic, drivers.NIBPDiastolic, drivers.NIBPMean, drivers.NIBPPulseRate} {
		sink.Reading(drivers.Reading{Metric: m, Received: now, Flags: flags})
	}
}

// fail ends the measurement with the failure code: no values, FlagCuffError.
func (d *Decoder) fail(sink drivers.Sink, now time.Time, code int, text string) {
	d.setLastError(code, text)
	d.phase = PhaseIdle
	d.await, d.retries = awaitNone, 0
	if sink == nil {
		d.queued, d.queueAt = true, now
		return
	}
	d.emitInvalid(sink, now, drivers.FlagCuffError)
}

func (d *Decoder) setLastError(code int, text string) {
	d.lastCode, d.lastText = code, text
}

// answered clears the outstanding command.
func (d *Decoder) answered() {
	d.await, d.retries = awaitNone, 0
}

// Start implements drivers.Conversation: it asks the module for its status
// word (protocols.md 4.1 "module status", `3A 79 10 03 3A`), as nPM does at
// power-on; a non-zero word means the module found a fault [I: nPM], see
// ModuleStatus.
func (d *Decoder) Start(w io.Writer, now time.Time) error {
	d.lastProbe, d.probedOnce = now, true
	return d.send(w, now, awaitStatus, AppendGetModuleStatus(d.out[:0]))
}

// TickEvery implements drivers.Conversation.
func (d *Decoder) TickEvery() time.Duration { return PollEvery }

// Tick implements drivers.Conversation: see Advance. Outcomes go to the
// Sink of the latest Feed call.
func (d *Decoder) Tick(w io.Writer, now time.Time) error {
	return d.Advance(w, now, d.sink)
}

// Advance moves the conversation to now: it polls the cuff pressure while
// the module measures, fetches the result after 'K', resends an unanswered
// command after ReplyTimeout, abandons the measurement after MaxRetries
// resends (CodeNoReply) or after MaxMeasurement (CodeTimedOut), and probes
// an idle module every IdleProbeEvery. A nil sink defers the outcome to the
// next Feed. The error is the writer's.
func (d *Decoder) Advance(w io.Writer, now time.Time, sink drivers.Sink) error {
	switch d.phase {
	case PhaseIdle:
		if d.await != awaitNone && now.Sub(d.sentAt) >= ReplyTimeout {
			// An unanswered probe is not retried: silence is what the
			// agent's SilentAfter watches for.
			d.answered()
		}
		if d.await == awaitNone && (!d.probedOnce || now.Sub(d.lastProbe) >= IdleProbeEvery) {
			d.lastProbe, d.probedOnce = now, true
			return d.send(w, now, awaitPressure, AppendGetCuffPressure(d.out[:0]))
		}
		return nil
	case PhaseAborting:
		if d.await == awaitNone || now.Sub(d.sentAt) < ReplyTimeout {
			return nil
		}
		if d.retries++; d.retries > MaxRetries {
			d.phase = PhaseIdle
			d.answered()
			return nil
		}
		return d.resend(w, now)
	}

	// Starting, measuring or fetching.
	if now.Sub(d.startedAt) >= MaxMeasurement {
		d.fail(sink, now, CodeTimedOut, fmt.Sprintf("%s (%s)", ErrorText(CodeTimedOut), MaxMeasurement))
		return d.sendAbortAfterFailure(w)
	}
	if d.await != awaitNone {
		if now.Sub(d.sentAt) < ReplyTimeout {
			return nil
		}
		if d.retries++; d.retries > MaxRetries {
			d.fail(sink, now, CodeNoReply, fmt.Sprintf("%s (%d sends)", ErrorText(CodeNoReply), MaxRetries+1))
			return d.sendAbortAfterFailure(w)
		}
		return d.resend(w, now)
	}
	switch d.phase {
	case PhaseMeasuring:
		return d.send(w, now, awaitPressure, AppendGetCuffPressure(d.out[:0]))
	case PhaseFetching:
		return d.send(w, now, awaitResult, AppendGetBPData(d.out[:0]))
	}
	return nil
}

// sendAbortAfterFailure deflates the cuff after the host gave up: whatever
// the module is doing, a cuff left inflated is the one thing that must not
// happen. The module's 'A'/'K' arrive while idle and are ignored.
func (d *Decoder) sendAbortAfterFailure(w io.Writer) error {
	_, err := w.Write(AppendAbort(d.out[:0]))
	if err != nil {
		return fmt.Errorf("suntech: abort after failed measurement: %w", err)
	}
	return nil
}

// resend sends the outstanding command again.
func (d *Decoder) resend(w io.Writer, now time.Time) error {
	var cmd []byte
	switch d.await {
	case awaitPressure:
		cmd = AppendGetCuffPressure(d.out[:0])
	case awaitStatus:
		cmd = AppendGetModuleStatus(d.out[:0])
	case awaitStartAck:
		cmd = AppendStart(d.out[:0], d.patient)
	case awaitResult:
		cmd = AppendGetBPData(d.out[:0])
	case awaitAbortAck:
		cmd = AppendAbort(d.out[:0])
	default:
		return nil
	}
	d.sentAt = now
	return d.write(w, cmd)
}

// send writes cmd and waits for its reply. A failed write still counts as
// sent: the reply timeout and resends handle it like a lost byte.
func (d *Decoder) send(w io.Writer, now time.Time, a awaiting, cmd []byte) error {
	d.await, d.sentAt, d.retries = a, now, 0
	return d.write(w, cmd)
}

func (d *Decoder) write(w io.Writer, cmd []byte) error {
	if _, err := w.Write(cmd); err != nil {
		return fmt.Errorf("suntech: write % X: %w", cmd, err)
	}
	return nil
}

// Commands implements drivers.Commander.
func (d *Decoder) Commands() []string { return []string{CommandAbort, CommandStart} }

// Command implements drivers.Commander. "nibp_start" sends the start
// command for the configured patient and returns ErrMeasurementRunning if
// a measurement or an abort is in progress. "nibp_abort" sends the abort
// command at any time (deflating is always safe); an aborted measurement
// gives no readings, and LastError says CodeAborted.
func (d *Decoder) Command(name string, w io.Writer, now time.Time) error {
	switch name {
	case CommandStart:
		if d.phase != PhaseIdle {
			return fmt.Errorf("%w (%s)", ErrMeasurementRunning, d.phase)
		}
		if err := d.write(w, AppendStart(d.out[:0], d.patient)); err != nil {
			// Nothing was started: stay idle so the caller can try again.
			return err
		}
		d.phase, d.startedAt = PhaseStarting, now
		d.await, d.sentAt, d.retries = awaitStartAck, now, 0
		return nil
	case CommandAbort:
		err := d.write(w, AppendAbort(d.out[:0]))
		if d.phase != PhaseIdle && d.phase != PhaseAborting {
			d.setLastError(CodeAborted, ErrorText(CodeAborted))
		}
		if d.phase != PhaseIdle {
			d.phase = PhaseAborting
			d.await, d.sentAt, d.retries = awaitAbortAck, now, 0
		}
		return err
	}
	return fmt.Errorf("suntech: %q: %w", name, drivers.ErrUnknownCommand)
}

// Phase returns where the conversation stands.
func (d *Decoder) Phase() Phase { return d.phase }

// Measuring reports whether a measurement is in progress (started and not
// yet ended, failed or aborted): the cuff may be inflated.
func (d *Decoder) Measuring() bool {
	return d.phase == PhaseStarting || d.phase == PhaseMeasuring || d.phase == PhaseFetching
}

// CuffPressure returns the latest cuff pressure the module reported and
// when it arrived; ok is false before the first one, after the module's
// "no value" (0xFFFF) and after a value above 350 mmHg. There is no
// catalogue metric for it yet (README.md "Cuff pressure").
func (d *Decoder) CuffPressure() (mmHg int, at time.Time, ok bool) {
	return int(d.cuffPressure), d.cuffAt, d.cuffValid
}

// ModuleStatus returns the word the module sent in reply to Start's
// module-status command; ok is false until one arrived. Zero means no
// fault [I: nPM flags "module abnormal" on non-zero].
func (d *Decoder) ModuleStatus() (word uint16, ok bool) {
	return d.moduleStatus, d.moduleStatusOK
}

// LastError returns how the latest measurement ended: CodeOK and "" after
// a good result (and before any), the module's error code or one of the
// driver's negative codes with its text otherwise.
func (d *Decoder) LastError() (code int, text string) {
	return d.lastCode, d.lastText
}
