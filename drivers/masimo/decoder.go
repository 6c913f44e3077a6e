package masimo

import (
	"time"

	"github.com/vigil-monitor/vigil/drivers"
	"github.com/vigil-monitor/vigil/drivers/lineframe"
)

// MaxLineLen caps one line's length in bytes, line end excluded. The longest
// documented line (Radical-7 with EXC1, protocols.md 2.5) is 175 bytes;
// anything past this is not a Masimo line and is discarded up to the next
// line end, so a stream without line ends cannot grow the buffer.
const MaxLineLen = 512

// Decoder parses the "ASCII 1" text lines of Masimo pulse oximeters
// (protocols.md 2.2): one line per second, KEY=value fields after a
// `MM/dd/yy HH:mm:ss` time stamp, ended by CR, LF or CRLF.
//
// A line is accepted only if it has the time stamp, SPO2, BPM and EXC and
// every field is well formed; anything else is one FrameMalformed and yields
// no reading. The protocol has no checksum, so the fixed field widths the
// device prints (3 digits for SPO2 and BPM, NN.NN for PI: protocols.md 2.2,
// and openice-lite MasimoRecord) are the only defence against bytes lost on
// the wire: "SPO2=98%" would otherwise read a dropped digit as a value.
//
// The zero value is ready to use. A Decoder is not safe for concurrent use.
type Decoder struct {
	lines lineframe.Splitter
}

// NewDecoder returns a Decoder with its line buffer allocated, so that
// feeding it never allocates.
func NewDecoder() *Decoder {
	return &Decoder{lines: lineframe.NewSplitter(MaxLineLen)}
}

// Feed consumes p and reports every complete line to sink: one Reading per
// metric of a good line, then one Frame per non-empty line. Bytes after the
// last line end are kept for the next call.
func (d *Decoder) Feed(p []byte, now time.Time, sink drivers.Sink) {
	for len(p) > 0 {
		var line []byte
		var overlong int
		line, overlong, p = d.lines.Next(p, MaxLineLen)
		switch {
		case overlong > 0:
			sink.Frame(drivers.FrameMalformed, overlong)
		case len(line) > 0:
			decodeLine(line, now, sink)
		}
	}
}

// numberKind says what a numeric field held.
type numberKind uint8

const (
	fieldAbsent  numberKind = iota // the key is not on the line
	fieldNoValue                   // the device's "no value" form: any value with '-'
	fieldNumber                    // a well-formed number
)

type numberField struct {
	kind  numberKind
	value float64
}

// line is what one well-formed line says.
type line struct {
	deviceTime time.Time
	spo2       numberField
	pulse      numberField
	pi         numberField
	exc        uint32
	alarm      uint32
	seen       uint16 // keyBit of every known key on the line
}

// Bits of line.seen, one per known key, so a duplicate key is refused:
// a line naming SPO2 twice cannot be trusted to mean either value.
const (
	seenSN uint16 = 1 << iota
	seenSPO2
	seenBPM
	seenPI
	seenSPCO
	seenSPMET
	seenSPHB
	seenSPOC
	seenDESAT
	seenPIDELTA
	seenPVI
	seenRESVD
	seenALARM
	seenEXC
	seenEXC1
)

// The catalogue entries of the metrics this driver reports, copied once
// rather than for every reading.
var (
	spo2Info  = drivers.SpO2.Info()
	pulseInfo = drivers.PulseRate.Info()
	piInfo    = drivers.PerfusionIndex.Info()
)

// sensorAbsentFlags are the conditions under which the device is not
// measuring a patient: any number printed beside them is not a vital sign,
// so the decoder marks it not Valid [I] (clinical.md 6: a stale value must
// never look live). Pinned by TestSensorConditionsInvalidateValues.
const sensorAbsentFlags = drivers.FlagNoSensor | drivers.FlagSensorOff | drivers.FlagSensorFault

// decodeLine parses one line (line end excluded) and reports it to sink.
func decodeLine(b []byte, now time.Time, sink drivers.Sink) {
	var l line
	if !parseLine(b, &l) {
		sink.Frame(drivers.FrameMalformed, len(b))
		return
	}
	flags := excFlags(l.exc) | alarmFlags(l.alarm)
	result := drivers.FrameOK
	if !emit(sink, &spo2Info, l.spo2, flags, &l, now) {
		result = drivers.FrameInvalidValue
	}
	if !emit(sink, &pulseInfo, l.pulse, flags, &l, now) {
		result = drivers.FrameInvalidValue
	}
	if l.pi.kind != fieldAbsent {
		if !emit(sink, &piInfo, l.pi, flags, &l, now) {
			result = drivers.FrameInvalidValue
		}
	}
	sink.Frame(result, 0)
}

// emit reports one metric's reading; it returns false when the value was a
// number outside the metric's possible range.
func emit(sink drivers.Sink, m *drivers.Metric, f numberField, flags drivers.Flags, l *line, now time.Time) bool {
	r := drivers.Reading{
		Metric:     m.ID,
		DeviceTime: l.deviceTime,
		Received:   now,
		Flags:      flags,
	}
	inRange := true
	if f.kind == fieldNumber {
		// Value keeps what the device printed even when it is not Valid,
		// for logs; consumers read it only when Valid (drivers.Reading).
		r.Value = f.value
		inRange = m.InRange(f.value)
		if !inRange {
			r.Flags |= drivers.FlagOutOfRange
		}
		r.Valid = inRange && flags&sensorAbsentFlags == 0
	}
	sink.Reading(r)
	return inRange
}

// parseLine fills l from b and reports whether b is a well-formed line.
// It works on b in place and never allocates.
func parseLine(b []byte, l *line) bool {
	t, ok := parseTimestamp(b)
	if !ok {
		return false
	}
	l.deviceTime = t
	i := timestampLen
	if i < len(b) && b[i] != ' ' {
		return false
	}
	for i < len(b) {
		if b[i] == ' ' {
			i++
			continue
		}
		start := i
		eq := -1
	token:
		for ; i < len(b); i++ {
			switch byteClasses[b[i]] {
			case classSpace:
				break token
			case classEquals:
				if eq >= 0 {
					return false // a second '='
				}
				eq = i
			case classInvalid:
				// Control bytes, NUL and bytes with the high bit set never
				// appear in a Masimo line.
				return false
			}
		}
		if eq <= start || eq == i-1 {
			return false // no '=', an empty key or an empty value
		}
		if !parseField(b[start:eq], b[eq+1:i], l) {
			return false
		}
	}
	const required = seenSPO2 | seenBPM | seenEXC
	return l.seen&required == required
}

// Byte classes of a line after the time stamp, looked up in one step.
const (
	classInvalid = iota
	classField   // printable ASCII other than space and '='
	classSpace
	classEquals
)

var byteClasses = func() (t [256]uint8) {
	for c := '!'; c <= '~'; c++ {
		t[c] = classField
	}
	t[' '] = classSpace
	t['='] = classEquals
	return t
}()

// parseField checks one KEY=value pair and stores the ones Vigil uses.
// Fields with no catalogue metric are checked only for shape (printable,
// non-empty: done by the caller) and otherwise ignored. SN, the device's
// serial number, is never kept.
func parseField(key, val []byte, l *line) bool {
	var bit uint16
	switch string(key) { // no allocation: the compiler compares in place
	case "SN":
		bit = seenSN
	case "SPO2":
		bit = seenSPO2
		if l.spo2 = parseFixed(val, 3, 0); l.spo2.kind == fieldAbsent {
			return false
		}
	case "BPM":
		bit = seenBPM
		if l.pulse = parseFixed(val, 3, 0); l.pulse.kind == fieldAbsent {
			return false
		}
	case "PI":
		bit = seenPI
		if l.pi = parseFixed(val, 2, 2); l.pi.kind == fieldAbsent {
			return false
		}
	case "SPCO":
		bit = seenSPCO
	case "SPMET":
		bit = seenSPMET
	case "SPHB":
		bit = seenSPHB
	case "SPOC":
		bit = seenSPOC
	case "DESAT":
		bit = seenDESAT
	case "PIDELTA":
		bit = seenPIDELTA
	case "PVI":
		bit = seenPVI
	case "RESVD":
		bit = seenRESVD
	case "ALARM":
		bit = seenALARM
		v, ok := parseHex(val)
		if !ok {
			return false
		}
		l.alarm = v
	case "EXC":
		bit = seenEXC
		v, ok := parseHex(val)
		if !ok {
			return false
		}
		l.exc = v
	case "EXC1":
		// Radical-7's second exception word; its bits are undocumented
		// (protocols.md 2.3 [U]), so only its shape is checked.
		bit = seenEXC1
		if _, ok := parseHex(val); !ok {
			return false
		}
	default:
		// Another firmware's extra field [I]: tolerated when its key looks
		// like the others (upper-case letters and digits), so that one new
		// field does not silence a whole device.
		return isKey(key)
	}
	if l.seen&bit != 0 {
		return false
	}
	l.seen |= bit
	return true
}

func isKey(key []byte) bool {
	if len(key) > 16 {
		return false
	}
	for _, c := range key {
		if (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// pow10 divides a fixed-point mantissa; division of two exact integers is
// correctly rounded, so "03.60" gives exactly the float64 nearest 3.6.
var pow10 = [...]float64{1, 10, 100}

// parseFixed reads a value the device prints with intDigits digits, then
// '.' and fracDigits digits when fracDigits > 0, and an optional '%'. Any
// value containing '-' is the "no value" form (protocols.md 2.2). It returns
// kind fieldAbsent when the value is malformed.
func parseFixed(val []byte, intDigits, fracDigits int) numberField {
	for _, c := range val {
		if c == '-' {
			return numberField{kind: fieldNoValue}
		}
	}
	if n := len(val); n > 0 && val[n-1] == '%' {
		val = val[:n-1]
	}
	want := intDigits
	if fracDigits > 0 {
		want += 1 + fracDigits
	}
	if len(val) != want {
		return numberField{}
	}
	var mantissa uint32
	for i, c := range val {
		if fracDigits > 0 && i == intDigits {
			if c != '.' {
				return numberField{}
			}
			continue
		}
		if c < '0' || c > '9' {
			return numberField{}
		}
		mantissa = mantissa*10 + uint32(c-'0')
	}
	return numberField{kind: fieldNumber, value: float64(mantissa) / pow10[fracDigits]}
}

// parseHex reads ALARM, EXC and EXC1: 1 to 8 hex digits. Widths differ by
// model (Radical-5 prints EXC=800, Radical-7 EXC=0000C00, EXC1 has 8).
func parseHex(val []byte) (uint32, bool) {
	if len(val) == 0 || len(val) > 8 {
		return 0, false
	}
	var v uint32
	for _, c := range val {
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | uint32(c-'0')
		case c >= 'A' && c <= 'F':
			v = v<<4 | uint32(c-'A'+10)
		case c >= 'a' && c <= 'f':
			v = v<<4 | uint32(c-'a'+10)
		default:
			return 0, false
		}
	}
	return v, true
}

// timestampLen is len("MM/dd/yy HH:mm:ss").
const timestampLen = 17

// parseTimestamp reads the device clock at the start of b. The device clock
// has no time zone and is set by hand (protocols.md 2.2), so the wall time is
// recorded as if it were UTC: DeviceTime is for the record, never for
// ordering (drivers.Reading). Two-digit years are 2000-2099.
func parseTimestamp(b []byte) (time.Time, bool) {
	if len(b) < timestampLen ||
		b[2] != '/' || b[5] != '/' || b[8] != ' ' || b[11] != ':' || b[14] != ':' {
		return time.Time{}, false
	}
	month, ok1 := twoDigits(b[0], b[1])
	day, ok2 := twoDigits(b[3], b[4])
	year, ok3 := twoDigits(b[6], b[7])
	hour, ok4 := twoDigits(b[9], b[10])
	minute, ok5 := twoDigits(b[12], b[13])
	sec, ok6 := twoDigits(b[15], b[16])
	if !(ok1 && ok2 && ok3 && ok4 && ok5 && ok6) ||
		month < 1 || month > 12 || day < 1 || day > daysIn(month, 2000+year) ||
		hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	return time.Date(2000+year, time.Month(month), day, hour, minute, sec, 0, time.UTC), true
}

func twoDigits(a, b byte) (int, bool) {
	if a < '0' || a > '9' || b < '0' || b > '9' {
		return 0, false
	}
	return int(a-'0')*10 + int(b-'0'), true
}

func daysIn(month, year int) int {
	switch month {
	case 2:
		if year%4 == 0 && (year%100 != 0 || year%400 == 0) {
			return 29
		}
		return 28
	case 4, 6, 9, 11:
		return 30
	}
	return 31
}

// excFlags maps the EXC exception bits (protocols.md 2.3, Rad-8 Operator's
// Manual "Trend data format") to reading flags. README.md "EXC and ALARM"
// gives the reasoning for each; TestExcFlags pins every bit.
func excFlags(exc uint32) drivers.Flags {
	var f drivers.Flags
	if exc&excNoSensor != 0 {
		// With no sensor nothing can be measured; FlagSensorOff too, so a
		// consumer that only knows "sensor off" still sees it.
		f |= drivers.FlagNoSensor | drivers.FlagSensorOff
	}
	if exc&(excDefectiveSensor|excUnrecognizedSensor) != 0 {
		f |= drivers.FlagSensorFault
	}
	if exc&excLowPerfusion != 0 {
		f |= drivers.FlagLowPerfusion
	}
	if exc&excPulseSearch != 0 {
		f |= drivers.FlagSearching
	}
	if exc&excInterference != 0 {
		f |= drivers.FlagArtifact
	}
	if exc&excSensorOff != 0 {
		f |= drivers.FlagSensorOff
	}
	if exc&excAmbientLight != 0 {
		f |= drivers.FlagAmbientLight
	}
	if exc&excLowSignalIQ != 0 {
		f |= drivers.FlagLowSignalQuality
	}
	// Higher bits are not in the Rad-8 manual (protocols.md 2.3 [U]). The
	// MD PnP Radical-5/7 driver (poxrad_discrete.h) names them; the ones
	// meaning no measurement is possible are mapped [U], failing loud: if
	// one meant something else, values would show as "no sensor" rather
	// than a wrong condition passing silently. The rest (cable or sensor
	// life expired, calibrating, SpCO/SpMET confidence, ...) and 0x200 are
	// ignored, and 0x800 (SET) is normal operation.
	if exc&excNoCable != 0 {
		f |= drivers.FlagNoSensor | drivers.FlagSensorOff
	}
	if exc&(excIncompatibleSensor|excIncompatibleCable|excUnrecognizedCable|excDefectiveCable) != 0 {
		f |= drivers.FlagSensorFault
	}
	return f
}

// EXC bits, protocols.md 2.3 [C].
const (
	excNoSensor           = 0x001
	excDefectiveSensor    = 0x002
	excLowPerfusion       = 0x004
	excPulseSearch        = 0x008
	excInterference       = 0x010
	excSensorOff          = 0x020
	excAmbientLight       = 0x040
	excUnrecognizedSensor = 0x080
	excLowSignalIQ        = 0x400
	excMasimoSET          = 0x800 // normal operation

	// Beyond the manual [U]: MD PnP poxrad_discrete.h, Radical-5/7.
	excIncompatibleSensor = 0x00100 // "reserved" in the Rad-8 manual
	excNoCable            = 0x01000
	excIncompatibleCable  = 0x04000
	excUnrecognizedCable  = 0x08000
	excDefectiveCable     = 0x10000
)

// ALARM bits, protocols.md 2.4: observed by one user on one Rad-8, not a
// specification [U]. Only shown as information; Vigil alarms on its own
// thresholds.
const (
	alarmActive   = 0x10
	alarmSilenced = 0x20
)

func alarmFlags(alarm uint32) drivers.Flags {
	var f drivers.Flags
	if alarm&alarmActive != 0 {
		f |= drivers.FlagDeviceAlarm
	}
	if alarm&alarmSilenced != 0 {
		f |= drivers.FlagAlarmSilenced
	}
	return f
}
