package suntech

import (
	"bytes"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
)

// Module defaults.
const (
	// DefaultDuration is a determination's length when Module.Duration is
	// zero: about what an adult oscillometric determination takes [I].
	DefaultDuration = 30 * time.Second
	// DefaultPeakPressure is the cuff pressure a determination inflates to
	// when Module.PeakPressure is zero, in mmHg.
	DefaultPeakPressure = 160
)

// Module emulates an Advantage module's side of the serial line, for tests
// and for a simulator that answers the host: give it the host's bytes and
// the (simulated) time, and it returns the bytes the module would send.
//
// Behaviour (protocols.md 4.1 where it says, [I]/[U] where it does not):
//   - start (0x20, 0x87, 0x28): 'O', and the determination runs for
//     Duration; a start while one runs gets 'B'. When Duration has passed,
//     the next Exchange first sends 'K' unasked [C: nPM state machine].
//   - get cuff pressure: the pressure rises linearly to PeakPressure over
//     the first fifth of Duration and falls back to 0 over the rest; 0 while
//     idle.
//   - get BP data: the Result of the last finished determination (all
//     zero before the first); 'B' while measuring [I].
//   - abort: ends a determination; 'A' then 'K' [I: nPM "AK"].
//   - module status: a LEN=5 packet with StatusWord [I: nPM self-test].
//   - reset: ends a determination; 'K' [U]. Other documented commands
//     (inflation pressure, pneumatics, calibrate, sleep, venous stasis,
//     return code): 'K' [U: their replies are not documented].
//   - an unknown command byte gets 'D' (unrecognizable), a known one with a
//     bad checksum 'E' (error) [U].
//
// Fault injection: Mute answers nothing (a dead module or cable), Noise is
// sent before every reply, the next DropReplies replies are lost and the
// next CorruptReplies replies have a wrong checksum. The Result's
// ErrorCode gives a failed determination, a Duration above MaxMeasurement
// one that never ends in time.
//
// The zero value is a working module with the defaults. Not safe for
// concurrent use.
type Module struct {
	Result       Result        // what every determination ends with
	Duration     time.Duration // 0 means DefaultDuration
	PeakPressure uint16        // 0 means DefaultPeakPressure
	StatusWord   uint16        // reply to "module status"

	Mute           bool
	Noise          []byte
	DropReplies    int
	CorruptReplies int

	// Commands taken (well-formed), for tests.
	Starts, Polls, Fetches, Aborts, StatusQueries int

	host      []byte
	measuring bool
	startedAt time.Time
	last      Result
}

// Measuring reports whether a determination is running at the time of the
// latest Exchange.
func (m *Module) Measuring() bool { return m.measuring }

// Exchange takes the bytes the host wrote (nil for none) at time now and
// returns what the module sends: first a 'K' if a determination ended by
// now, then one reply per complete command, in order. Partial commands are
// kept for the next call.
func (m *Module) Exchange(host []byte, now time.Time) []byte {
	var out []byte
	if m.measuring && now.Sub(m.startedAt) >= m.duration() {
		m.measuring = false
		m.last = m.Result
		out = m.reply(out, AppendStatusReply(nil, StatusExecuted))
	}
	m.host = append(m.host, host...)
	for {
		i := bytes.IndexByte(m.host, HostStart)
		if i < 0 {
			m.host = m.host[:0]
			break
		}
		m.host = m.host[i:]
		if len(m.host) < 2 {
			break
		}
		n := hostBodyLen(m.host[1])
		if n == 0 {
			out = m.reply(out, AppendStatusReply(nil, StatusUnrecognizable))
			m.host = m.host[2:]
			continue
		}
		if len(m.host) < n+2 {
			break
		}
		pkt := m.host[:n+2]
		if !sumIsZero(pkt) {
			out = m.reply(out, AppendStatusReply(nil, StatusError))
		} else {
			out = m.execute(out, pkt[1:n+1], now)
		}
		m.host = m.host[n+2:]
	}
	if len(m.host) == 0 {
		m.host = nil // do not keep a grown array for an idle line
	}
	return out
}

func (m *Module) execute(out, body []byte, now time.Time) []byte {
	switch body[0] {
	case cmdStartAdult, cmdStartPediatric, cmdStartNeonatal:
		m.Starts++
		if m.measuring {
			return m.reply(out, AppendStatusReply(nil, StatusBusy))
		}
		m.measuring, m.startedAt = true, now
		return m.reply(out, AppendStatusReply(nil, StatusReceived))
	case cmdReset:
		m.measuring = false
		return m.reply(out, AppendStatusReply(nil, StatusExecuted))
	case cmdExtended:
	default:
		return m.reply(out, AppendStatusReply(nil, StatusExecuted))
	}
	switch body[1] {
	case extAbort:
		m.Aborts++
		m.measuring = false
		out = m.reply(out, AppendStatusReply(nil, StatusAborted))
		return m.reply(out, AppendStatusReply(nil, StatusExecuted))
	case extGetBPData:
		m.Fetches++
		if m.measuring {
			return m.reply(out, AppendStatusReply(nil, StatusBusy))
		}
		return m.reply(out, AppendResultReply(nil, m.last))
	case extGetPressure:
		m.Polls++
		return m.reply(out, AppendPressureReply(nil, m.pressure(now)))
	case extModuleStatus:
		m.StatusQueries++
		return m.reply(out, AppendPressureReply(nil, m.StatusWord))
	case extReturnCode:
		return m.reply(out, AppendStatusReply(nil, StatusExecuted))
	}
	return m.reply(out, AppendStatusReply(nil, StatusUndefined))
}

func (m *Module) duration() time.Duration {
	if m.Duration <= 0 {
		return DefaultDuration
	}
	return m.Duration
}

// pressure is the emulated cuff pressure at now.
func (m *Module) pressure(now time.Time) uint16 {
	if !m.measuring {
		return 0
	}
	peak := float64(m.PeakPressure)
	if peak == 0 {
		peak = DefaultPeakPressure
	}
	total := m.duration()
	inflate := total / 5
	t := now.Sub(m.startedAt)
	switch {
	case t < 0:
		return 0
	case t < inflate:
		return uint16(peak * float64(t) / float64(inflate))
	case t < total:
		return uint16(peak * float64(total-t) / float64(total-inflate))
	}
	return 0
}

// reply appends one packet to out, after the injected faults.
func (m *Module) reply(out, pkt []byte) []byte {
	if m.Mute {
		return out
	}
	if m.DropReplies > 0 {
		m.DropReplies--
		return out
	}
	out = append(out, m.Noise...)
	out = append(out, pkt...)
	if m.CorruptReplies > 0 {
		m.CorruptReplies--
		out[len(out)-1]++
	}
	return out
}

// SetFrame implements drivers.Responder for the simulator: the next
// determination to end reports f's blood pressure (or its cuff error).
func (m *Module) SetFrame(f drivers.Frame) { m.Result = ResultFor(f) }
