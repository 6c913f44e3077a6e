package hl7

import (
	"bytes"
	"strconv"
	"time"
	"unicode/utf8"
)

// HL7 v2 text rules used by the parser (HL7 v2 chapter 2, "Message
// construction rules"; the segment layout is protocols.md 5.2): MSH-1 is the
// field separator (the byte after "MSH") and MSH-2 the encoding characters,
// in order component, repetition, escape, subcomponent (and, from v2.7, an
// optional truncation character).

// delimiters are a message's separators, read from MSH-1 and MSH-2.
type delimiters struct {
	field, component, repetition, escape, subcomponent byte
}

// standardDelimiters are what nearly every sender uses (`|^~\&`) and what
// Vigil's own ACKs and the simulator's messages use.
var standardDelimiters = delimiters{field: '|', component: '^', repetition: '~', escape: '\\', subcomponent: '&'}

// parseDelimiters reads MSH-1 and MSH-2 from the MSH segment. Each
// delimiter must be printable ASCII other than a letter, digit or space, and
// all must differ: anything else makes every later field ambiguous.
func parseDelimiters(msh []byte) (delimiters, bool) {
	if len(msh) < 8 { // "MSH" + field sep + 4 encoding characters
		return delimiters{}, false
	}
	d := delimiters{field: msh[3]}
	enc := msh[4:]
	if i := bytes.IndexByte(enc, d.field); i >= 0 {
		enc = enc[:i]
	}
	// v2.7 adds a fifth encoding character (truncation, usually '#').
	if len(enc) != 4 && len(enc) != 5 {
		return delimiters{}, false
	}
	d.component, d.repetition, d.escape, d.subcomponent = enc[0], enc[1], enc[2], enc[3]
	all := [6]byte{d.field, enc[0], enc[1], enc[2], enc[3]}
	n := 5
	if len(enc) == 5 {
		all[5] = enc[4]
		n = 6
	}
	for i := range n {
		if !isDelimiterByte(all[i]) {
			return delimiters{}, false
		}
		for j := range i {
			if all[i] == all[j] {
				return delimiters{}, false
			}
		}
	}
	return d, true
}

func isDelimiterByte(c byte) bool {
	return c > ' ' && c < 0x7F &&
		(c < '0' || c > '9') && (c < 'A' || c > 'Z') && (c < 'a' || c > 'z')
}

// nextSegment returns the next non-empty segment of msg from *pos on.
// Segments end with CR (protocols.md 5.2); LF and CRLF are accepted too
// [I]: neither may appear unescaped inside a field, so splitting on them
// cannot cut a field, and hand-made test senders use them.
func nextSegment(msg []byte, pos *int) []byte {
	for *pos < len(msg) {
		rest := msg[*pos:]
		end := indexSegmentEnd(rest)
		if end < 0 {
			*pos = len(msg)
			return rest
		}
		*pos += end + 1
		if end > 0 {
			return rest[:end]
		}
	}
	return nil
}

func indexSegmentEnd(p []byte) int {
	cr := bytes.IndexByte(p, '\r')
	if cr >= 0 {
		p = p[:cr]
	}
	if lf := bytes.IndexByte(p, '\n'); lf >= 0 {
		return lf
	}
	return cr
}

// validSegmentID reports whether seg starts with a segment id: three
// upper-case letters or digits, then the field separator or the end.
func validSegmentID(seg []byte, fieldSep byte) bool {
	if len(seg) < 3 || (len(seg) > 3 && seg[3] != fieldSep) {
		return false
	}
	for _, c := range seg[:3] {
		if (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
}

// maxFields is one more than the highest field number the decoder reads
// (OBX-18).
const maxFields = 19

// splitFields cuts seg at the field separator into out: out[0] is the
// segment id, out[n] field n. Fields past the array are ignored; missing
// ones are nil.
func splitFields(seg []byte, sep byte, out *[maxFields][]byte) {
	*out = [maxFields][]byte{}
	for i := range out {
		j := bytes.IndexByte(seg, sep)
		if j < 0 {
			out[i] = seg
			return
		}
		out[i] = seg[:j]
		seg = seg[j+1:]
	}
}

// component returns component n (1-based) of the first repetition of field.
func (d *delimiters) comp(field []byte, n int) []byte {
	if i := bytes.IndexByte(field, d.repetition); i >= 0 {
		field = field[:i]
	}
	for ; n > 1; n-- {
		i := bytes.IndexByte(field, d.component)
		if i < 0 {
			return nil
		}
		field = field[i+1:]
	}
	if i := bytes.IndexByte(field, d.component); i >= 0 {
		field = field[:i]
	}
	return field
}

// unescape resolves HL7 escape sequences in v, appending to *scratch when
// there are any (v itself is returned when there are none):
//
//	\F\ \S\ \T\ \R\ \E\  the field, component, subcomponent, repetition and
//	                      escape characters
//	\Xhh...\             the bytes given in hex
//	\H\ \N\ \.br\ \Zxx\ \Cxxyy\ \Mxxyyzz\  highlighting, formatting, locally
//	                      defined and character-set escapes: removed, as no
//	                      field Vigil reads can use them
//
// An escape character without a closing one, or a \X\ with an odd or
// non-hex digit string, is kept as text [I]: the value then fails whatever
// check comes next (a number, a code) rather than being silently altered.
func (d *delimiters) unescape(v []byte, scratch *[]byte) []byte {
	first := bytes.IndexByte(v, d.escape)
	if first < 0 {
		return v
	}
	start := len(*scratch)
	out := append(*scratch, v[:first]...)
	for i := first; i < len(v); {
		c := v[i]
		if c != d.escape {
			out = append(out, c)
			i++
			continue
		}
		closing := bytes.IndexByte(v[i+1:], d.escape)
		if closing < 0 {
			out = append(out, v[i:]...)
			break
		}
		seq := v[i+1 : i+1+closing]
		i += closing + 2
		switch {
		case len(seq) == 1 && seq[0] == 'F':
			out = append(out, d.field)
		case len(seq) == 1 && seq[0] == 'S':
			out = append(out, d.component)
		case len(seq) == 1 && seq[0] == 'T':
			out = append(out, d.subcomponent)
		case len(seq) == 1 && seq[0] == 'R':
			out = append(out, d.repetition)
		case len(seq) == 1 && seq[0] == 'E':
			out = append(out, d.escape)
		case len(seq) > 1 && seq[0] == 'X':
			if decoded, ok := appendHex(out, seq[1:]); ok {
				out = decoded
			} else {
				out = append(out, d.escape)
				out = append(out, seq...)
				out = append(out, d.escape)
			}
		case len(seq) == 0:
			// "\\" is not a valid sequence: keep it as text.
			out = append(out, d.escape, d.escape)
		default:
			// Formatting and character-set sequences carry no text.
		}
	}
	*scratch = out
	return out[start:len(out):len(out)]
}

func appendHex(dst, hex []byte) ([]byte, bool) {
	if len(hex)%2 != 0 {
		return dst, false
	}
	for i := 0; i < len(hex); i += 2 {
		hi, ok1 := hexDigit(hex[i])
		lo, ok2 := hexDigit(hex[i+1])
		if !ok1 || !ok2 {
			return dst, false
		}
		dst = append(dst, hi<<4|lo)
	}
	return dst, true
}

func hexDigit(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// isCleanText reports whether s is valid UTF-8 without control characters:
// the condition for an identifier (sender, control id) that ends up in
// config comparisons, logs and ACKs.
func isCleanText(s []byte) bool {
	for _, c := range s {
		if c < ' ' || c == 0x7F {
			return false
		}
	}
	return utf8.Valid(s)
}

// parseTime reads an HL7 DTM/TS value (protocols.md 5.2 shows
// yyyyMMddHHmmss[+zzzz]):
//
//	YYYYMMDD[HH[MM[SS[.S[S[S[S]]]]]]][+/-ZZZZ]
//
// A date alone is accepted; a year alone or year and month are not, as they
// cannot date a vital sign. Without an offset the wall time is recorded as
// UTC [I]: monitor clocks are set by hand and carry no zone, and
// DeviceTime is recorded, never trusted (drivers.Reading). The component
// after a '^' (TS degree of precision, pre-2.6) is ignored.
func parseTime(v []byte, compSep byte) (time.Time, bool) {
	if i := bytes.IndexByte(v, compSep); i >= 0 {
		v = v[:i]
	}
	zone := -1
	for i, c := range v {
		if c == '+' || c == '-' {
			zone = i
			break
		}
	}
	digits := v
	if zone >= 0 {
		digits = v[:zone]
	}
	var frac []byte
	if i := bytes.IndexByte(digits, '.'); i >= 0 {
		digits, frac = digits[:i], digits[i+1:]
		if len(digits) != 14 || len(frac) < 1 || len(frac) > 4 {
			return time.Time{}, false
		}
	}
	switch len(digits) {
	case 8, 10, 12, 14:
	default:
		return time.Time{}, false
	}
	var parts [6]int // year, month, day, hour, minute, second
	year, ok := decimal(digits[:4])
	if !ok {
		return time.Time{}, false
	}
	parts[0] = year
	for k := 1; 4+2*k <= len(digits); k++ {
		n, ok := decimal(digits[2+2*k : 4+2*k])
		if !ok {
			return time.Time{}, false
		}
		parts[k] = n
	}
	month, day, hour, minute, sec := parts[1], parts[2], parts[3], parts[4], parts[5]
	if year < 1900 || month < 1 || month > 12 || day < 1 || day > daysIn(month, year) ||
		hour > 23 || minute > 59 || sec > 59 {
		return time.Time{}, false
	}
	nsec := 0
	if len(frac) > 0 {
		f, ok := decimal(frac)
		if !ok {
			return time.Time{}, false
		}
		for range 9 - len(frac) {
			f *= 10
		}
		nsec = f
	}
	loc := time.UTC
	if zone >= 0 {
		z := v[zone+1:]
		if len(z) != 4 {
			return time.Time{}, false
		}
		zh, ok1 := decimal(z[:2])
		zm, ok2 := decimal(z[2:])
		if !ok1 || !ok2 || zh > 14 || zm > 59 {
			return time.Time{}, false
		}
		offset := zh*3600 + zm*60
		if v[zone] == '-' {
			offset = -offset
		}
		if offset != 0 {
			loc = time.FixedZone("", offset)
		}
	}
	return time.Date(year, time.Month(month), day, hour, minute, sec, nsec, loc), true
}

func decimal(b []byte) (int, bool) {
	if len(b) == 0 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
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

// numberKind says what an OBX-5 value held.
type numberKind uint8

const (
	numberEmpty    numberKind = iota // no value
	numberNegative                   // a sign: the "no value" form of some monitors
	numberValue                      // a usable number
	numberBad                        // not an HL7 NM value
)

// pow10 divides a decimal mantissa: float64(mantissa)/pow10[n] of two exact
// integers is the float64 nearest the decimal text, as strconv.ParseFloat
// would give.
var pow10 = [...]float64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9}

// maxNumberLen bounds an OBX-5 number's text.
const maxNumberLen = 32

// parseNumber reads an HL7 NM value: an optional sign, digits, an optional
// decimal point (HL7 v2 2.A "NM"). No exponent, no thousands separator, no
// spaces, at most maxNumberLen bytes. Up to 15 digits (9 after the point)
// are converted exactly from the mantissa; longer ones, as a gateway
// printing a float64 may send, by strconv.ParseFloat. A negative value is
// the "no value" form (protocols.md 5.2 [C, observed]: "-100"); so is "-0".
func parseNumber(v []byte) (float64, numberKind) {
	if len(v) == 0 {
		return 0, numberEmpty
	}
	if len(v) > maxNumberLen {
		return 0, numberBad
	}
	text := v
	negative := false
	switch v[0] {
	case '-':
		negative = true
		v = v[1:]
	case '+':
		v = v[1:]
	}
	var mantissa uint64
	digits, fracDigits := 0, 0
	point := false
	for _, c := range v {
		switch {
		case c >= '0' && c <= '9':
			mantissa = mantissa*10 + uint64(c-'0')
			digits++
			if point {
				fracDigits++
			}
		case c == '.' && !point:
			point = true
		default:
			return 0, numberBad
		}
	}
	switch {
	case digits == 0:
		return 0, numberBad
	case negative:
		return 0, numberNegative
	case digits > 15 || fracDigits >= len(pow10):
		f, err := strconv.ParseFloat(string(text), 64)
		if err != nil { // only overflow is left; text is a valid decimal
			return 0, numberBad
		}
		return f, numberValue
	}
	return float64(mantissa) / pow10[fracDigits], numberValue
}
