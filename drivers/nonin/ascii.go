package nonin

import (
	"bytes"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
	"github.com/vigil-monitor/vigil/drivers/lineframe"
)

// MaxASCIILineLen caps one ASCII line in bytes, line end excluded. The
// longest documented line, "HH:MM:SS SPO2=XXX HR=YYY" with markers, is under
// 32 bytes; anything longer is not a Nonin data line and is discarded up to
// the next line end, so a stream without line ends cannot grow the buffer.
const MaxASCIILineLen = 128

// ASCIIDecoder parses the real-time ASCII output of Nonin tabletop and
// handheld oximeters (protocols.md 1.6; 7500, 8500, 8600V, 9847, BT4000,
// Avant 9600): one line a second,
//
//	[HH:MM:SS ]SPO2=XXX HR=YYY[ F][*][B]
//
// ended by CR/LF. XXX and YYY are exactly three digits, or "---" for no
// value. An optional time-of-day prefix (9847, 8600V) is checked but not
// kept: without a date it cannot be a DeviceTime. The markers F (fast
// response values, BT4000/Avant DIP switch), * (event) and B (breath, 9847)
// may follow HR's value directly or after spaces; they change nothing.
//
// A good line gives SpO2 and pulse rate, then Frame(FrameOK) (or
// FrameInvalidValue when a value is out of range). Anything else, including
// the model/date header sent at power-up, is one FrameMalformed whose
// dropped count is the line's length. There is no checksum: the fixed
// three-character fields the manuals print are the only check against a lost
// byte turning "097" into "07" [I]; pinned by TestASCIIMalformedLines.
//
// The line format carries no status: a no-value line has no flag saying why.
//
// The zero value is ready to use. An ASCIIDecoder is not safe for concurrent
// use.
type ASCIIDecoder struct {
	lines lineframe.Splitter
}

// NewASCIIDecoder returns an ASCIIDecoder with its line buffer allocated, so
// that feeding it never allocates.
func NewASCIIDecoder() *ASCIIDecoder {
	return &ASCIIDecoder{lines: lineframe.NewSplitter(MaxASCIILineLen)}
}

// Feed consumes p and reports every complete line to sink.
func (d *ASCIIDecoder) Feed(p []byte, now time.Time, sink drivers.Sink) {
	for len(p) > 0 {
		var line []byte
		var overlong int
		line, overlong, p = d.lines.Next(p, MaxASCIILineLen)
		switch {
		case overlong > 0:
			sink.Frame(drivers.FrameMalformed, overlong)
		case len(line) > 0:
			decodeASCIILine(line, now, sink)
		}
	}
}

func decodeASCIILine(b []byte, now time.Time, sink drivers.Sink) {
	spo2, spo2OK, hr, hrOK, ok := parseASCIILine(b)
	if !ok {
		sink.Frame(drivers.FrameMalformed, len(b))
		return
	}
	result := drivers.FrameOK
	if !emitNumber(sink, &spo2Info, spo2, spo2OK, 0, now) {
		result = drivers.FrameInvalidValue
	}
	if !emitNumber(sink, &pulseInfo, hr, hrOK, 0, now) {
		result = drivers.FrameInvalidValue
	}
	sink.Frame(result, 0)
}

// parseASCIILine reads one line (line end excluded). present is false for
// "---"; ok is false when the line is not a data line.
func parseASCIILine(b []byte) (spo2 int, spo2Present bool, hr int, hrPresent bool, ok bool) {
	b = trimSpaces(b)
	// Optional "HH:MM:SS " prefix.
	if len(b) >= 9 && b[2] == ':' {
		if !validClock(b[:8]) || b[8] != ' ' {
			return 0, false, 0, false, false
		}
		b = trimSpaces(b[8:])
	}
	const spo2Key, hrKey = "SPO2=", "HR="
	if !bytes.HasPrefix(b, []byte(spo2Key)) || len(b) < len(spo2Key)+3 {
		return 0, false, 0, false, false
	}
	spo2, spo2Present, ok = parseThree(b[len(spo2Key) : len(spo2Key)+3])
	if !ok {
		return 0, false, 0, false, false
	}
	b = b[len(spo2Key)+3:]
	if len(b) == 0 || b[0] != ' ' {
		return 0, false, 0, false, false
	}
	b = trimSpaces(b)
	if !bytes.HasPrefix(b, []byte(hrKey)) || len(b) < len(hrKey)+3 {
		return 0, false, 0, false, false
	}
	hr, hrPresent, ok = parseThree(b[len(hrKey) : len(hrKey)+3])
	if !ok {
		return 0, false, 0, false, false
	}
	// The rest may hold only the markers F, * and B, and spaces.
	for _, c := range b[len(hrKey)+3:] {
		switch c {
		case ' ', 'F', '*', 'B':
		default:
			return 0, false, 0, false, false
		}
	}
	return spo2, spo2Present, hr, hrPresent, true
}

// parseThree reads a three-character value: three digits, or "---".
func parseThree(v []byte) (n int, present bool, ok bool) {
	if v[0] == '-' && v[1] == '-' && v[2] == '-' {
		return 0, false, true
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true, true
}

// validClock checks "HH:MM:SS".
func validClock(t []byte) bool {
	if t[2] != ':' || t[5] != ':' {
		return false
	}
	var v [3]int
	for i := range v {
		hi, lo := t[3*i], t[3*i+1]
		if hi < '0' || hi > '9' || lo < '0' || lo > '9' {
			return false
		}
		v[i] = int(hi-'0')*10 + int(lo-'0')
	}
	return v[0] <= 23 && v[1] <= 59 && v[2] <= 59
}

func trimSpaces(b []byte) []byte {
	for len(b) > 0 && b[0] == ' ' {
		b = b[1:]
	}
	return b
}
