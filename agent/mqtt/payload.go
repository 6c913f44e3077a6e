package mqtt

import (
	"math"
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/vigil-monitor/vigil/agent/devstatus"
	"github.com/vigil-monitor/vigil/drivers"
)

// maxFlagNames bounds the stack buffer for flag names: Flags is a uint32, so
// no reading can carry more names than that.
const maxFlagNames = 32

// AppendReadingJSON appends the MQTT payload of r to dst and returns the
// extended slice:
//
//	{"time":"...","received":"...","seq":17,"site":"...","room":"...","device":"...",
//	 "metric":"spo2","value":97,"unit":"%","mdc":"MDC_PULS_OXIM_SAT_O2","mdc_code":150456,
//	 "flags":[],"session":null}
//
// "time" is the device's own timestamp when the protocol has one, otherwise
// the agent's receive time; "received" is always the agent's receive time.
// Both are UTC RFC 3339 with nanoseconds.
//
// "value" is null when the reading is not Valid. Numbers are written in plain
// decimal (never an exponent) so every consumer parses them the same way. A
// non-finite number (NaN, ±Inf) is written as null: JSON has no spelling for
// it, and a NaN that reaches a dashboard or an alert rule compares false to
// every threshold and silences it (ecosystem.md, Prometheus).
//
// A waveform reading (Samples not empty) carries "samples" and "sample_rate"
// and a null "value". "session" is the dosing session's opaque id, null
// outside a session.
//
// It does not allocate when dst has room for the payload, so a caller that
// reuses its buffer encodes without garbage.
func AppendReadingJSON(dst []byte, site, room string, r *drivers.Reading) []byte {
	info := r.Metric.Info()
	t := r.Received
	if !r.DeviceTime.IsZero() {
		t = r.DeviceTime
	}
	waveform := len(r.Samples) > 0

	dst = append(dst, `{"time":`...)
	dst = appendTimeJSON(dst, t)
	dst = append(dst, `,"received":`...)
	dst = appendTimeJSON(dst, r.Received)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendUint(dst, r.Seq, 10)
	dst = append(dst, `,"site":`...)
	dst = appendStringJSON(dst, site)
	dst = append(dst, `,"room":`...)
	dst = appendStringJSON(dst, room)
	dst = append(dst, `,"device":`...)
	dst = appendStringJSON(dst, r.Device)
	dst = append(dst, `,"metric":`...)
	dst = appendStringJSON(dst, r.Metric.String())
	dst = append(dst, `,"value":`...)
	if r.Valid && !waveform {
		dst = appendNumberJSON(dst, r.Value)
	} else {
		dst = append(dst, "null"...)
	}
	dst = append(dst, `,"unit":`...)
	dst = appendStringJSON(dst, info.Unit)
	dst = append(dst, `,"mdc":`...)
	dst = appendStringJSON(dst, info.MDC)
	dst = append(dst, `,"mdc_code":`...)
	dst = strconv.AppendUint(dst, uint64(info.MDCCode), 10)
	dst = append(dst, `,"flags":[`...)
	var names [maxFlagNames]string
	for i, n := range r.Flags.AppendNames(names[:0]) {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendStringJSON(dst, n)
	}
	dst = append(dst, ']')
	if waveform {
		dst = append(dst, `,"samples":[`...)
		for i, s := range r.Samples {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendNumberJSON(dst, s)
		}
		dst = append(dst, `],"sample_rate":`...)
		dst = appendNumberJSON(dst, r.SampleRate)
	}
	if r.Session == "" {
		dst = append(dst, `,"session":null}`...)
	} else {
		dst = append(dst, `,"session":`...)
		dst = appendStringJSON(dst, r.Session)
		dst = append(dst, '}')
	}
	return dst
}

// appendRoomStatusJSON encodes the retained room status:
// {"state":"online","version":"...","since":"..."}.
func appendRoomStatusJSON(dst []byte, state, version string, since time.Time) []byte {
	dst = append(dst, `{"state":`...)
	dst = appendStringJSON(dst, state)
	dst = append(dst, `,"version":`...)
	dst = appendStringJSON(dst, version)
	dst = append(dst, `,"since":`...)
	dst = appendTimeJSON(dst, since)
	return append(dst, '}')
}

// appendDeviceStatusJSON encodes the retained device status:
//
//	{"state":"connected","since":"...","last_error":null,"conditions":["sensor-off"]}
//
// An empty LastError is null so consumers need not tell "" from "no error".
// "conditions" is always present ([] when none) and lists each condition
// once, in devstatus.Conditions() order whatever the order of s.Conditions,
// so the same set always gives the same payload; a value that is not a
// known condition is left out (only a caller's bug produces one).
func appendDeviceStatusJSON(dst []byte, s devstatus.Status) []byte {
	dst = append(dst, `{"state":`...)
	dst = appendStringJSON(dst, string(s.State))
	dst = append(dst, `,"since":`...)
	dst = appendTimeJSON(dst, s.Since)
	dst = append(dst, `,"last_error":`...)
	if s.LastError == "" {
		dst = append(dst, "null"...)
	} else {
		dst = appendStringJSON(dst, s.LastError)
	}
	dst = append(dst, `,"conditions":[`...)
	n := 0
	for _, c := range conditionOrder {
		if !slices.Contains(s.Conditions, c) {
			continue
		}
		if n > 0 {
			dst = append(dst, ',')
		}
		dst = appendStringJSON(dst, string(c))
		n++
	}
	return append(dst, ']', '}')
}

// conditionOrder is devstatus.Conditions(), taken once: that function
// builds a new slice on every call.
var conditionOrder = devstatus.Conditions()

// appendCommandResultJSON encodes the outcome of a command:
//
//	{"command":"nibp_start","id":"42","ok":true,"error":null,"time":"..."}
//
// "command" is null when the payload had no valid command name, "id" when
// it had no valid id; "error" is null exactly when ok is true. "time" is
// when the outcome was known, UTC.
func appendCommandResultJSON(dst []byte, c parsedCommand, ok bool, errText string, at time.Time) []byte {
	dst = append(dst, `{"command":`...)
	if c.name == "" {
		dst = append(dst, "null"...)
	} else {
		dst = appendStringJSON(dst, c.name)
	}
	dst = append(dst, `,"id":`...)
	if c.hasID {
		dst = appendStringJSON(dst, c.id)
	} else {
		dst = append(dst, "null"...)
	}
	if ok {
		dst = append(dst, `,"ok":true,"error":null`...)
	} else {
		dst = append(dst, `,"ok":false,"error":`...)
		dst = appendStringJSON(dst, errText)
	}
	dst = append(dst, `,"time":`...)
	dst = appendTimeJSON(dst, at)
	return append(dst, '}')
}

// appendTimeJSON writes t in UTC as a quoted RFC 3339 timestamp with the
// nanoseconds the clock gave (trailing zeros trimmed).
func appendTimeJSON(dst []byte, t time.Time) []byte {
	dst = append(dst, '"')
	dst = t.UTC().AppendFormat(dst, time.RFC3339Nano)
	return append(dst, '"')
}

// appendNumberJSON writes v in plain decimal, or null when v is not finite.
// 'f' with precision -1 is the shortest decimal that parses back to exactly
// v, without an exponent.
func appendNumberJSON(dst []byte, v float64) []byte {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return append(dst, "null"...)
	}
	return strconv.AppendFloat(dst, v, 'f', -1, 64)
}

const hexDigits = "0123456789abcdef"

// appendStringJSON writes s as a JSON string (RFC 8259 section 7): quotes,
// backslashes and control characters are escaped, invalid UTF-8 becomes
// U+FFFD, and U+2028/U+2029 are escaped because some JavaScript consumers
// (dashboards) treat them as line ends.
func appendStringJSON(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, "\ufffd"...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
