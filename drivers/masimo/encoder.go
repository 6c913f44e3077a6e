package masimo

import (
	"math"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
)

// Encoder renders frames as a Rad-8 prints them in "ASCII 1" mode
// (protocols.md 2.2, 2.5), for the simulator and tests:
//
//	02/22/16 22:47:45 SN=---------- SPO2=098% BPM=097 PI=03.60% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM=0000 EXC=000800\r\n
//
// A metric missing from Frame.Values, or one the line cannot hold (negative,
// NaN, too many digits), is printed in its "no value" form. While the flags
// say no sensor, sensor off or sensor fault, every value is printed in the
// no-value form, as the device does. Frame.Time is printed in UTC.
type Encoder struct{}

// Interval is the device's output period: one line per second
// (protocols.md 2.1).
func (Encoder) Interval() time.Duration { return time.Second }

// Encode appends one line, CRLF included, to dst.
func (Encoder) Encode(dst []byte, f drivers.Frame) []byte {
	dst = appendTimestamp(dst, f.Time.UTC())
	dst = append(dst, " SN="...)
	dst = appendSerial(dst, f.DeviceSN)

	measuring := f.Flags&sensorAbsentFlags == 0
	dst = append(dst, " SPO2="...)
	dst = appendFixed(dst, f.Values, drivers.SpO2, measuring, 3, 0)
	dst = append(dst, "% BPM="...)
	dst = appendFixed(dst, f.Values, drivers.PulseRate, measuring, 3, 0)
	dst = append(dst, " PI="...)
	dst = appendFixed(dst, f.Values, drivers.PerfusionIndex, measuring, 2, 2)
	// SpCO and SpMET need a Rainbow sensor; a plain Rad-8 prints them empty.
	dst = append(dst, "% SPCO=--.-% SPMET=--.-% DESAT=-- PIDELTA=+-- ALARM="...)
	dst = appendHex(dst, uint32(alarmBits(f.Flags)), 4)
	dst = append(dst, " EXC="...)
	dst = appendHex(dst, excBits(f.Flags), 6)
	return append(dst, '\r', '\n')
}

// excBits is the inverse of excFlags for the flags EXC can carry.
func excBits(f drivers.Flags) uint32 {
	var exc uint32
	if f&drivers.FlagNoSensor != 0 {
		exc |= excNoSensor
	} else {
		// The SET algorithm runs whenever a sensor is connected, even off
		// the patient (the manual's trend sample "EXC=820:OffPat,SET").
		exc |= excMasimoSET
	}
	if f&drivers.FlagSensorFault != 0 {
		exc |= excDefectiveSensor
	}
	if f&drivers.FlagLowPerfusion != 0 {
		exc |= excLowPerfusion
	}
	if f&drivers.FlagSearching != 0 {
		exc |= excPulseSearch
	}
	if f&drivers.FlagArtifact != 0 {
		exc |= excInterference
	}
	if f&drivers.FlagSensorOff != 0 && f&drivers.FlagNoSensor == 0 {
		exc |= excSensorOff
	}
	if f&drivers.FlagAmbientLight != 0 {
		exc |= excAmbientLight
	}
	if f&drivers.FlagLowSignalQuality != 0 {
		exc |= excLowSignalIQ
	}
	return exc
}

func alarmBits(f drivers.Flags) uint32 {
	var a uint32
	if f&drivers.FlagDeviceAlarm != 0 {
		a |= alarmActive
	}
	if f&drivers.FlagAlarmSilenced != 0 {
		a |= alarmSilenced
	}
	return a
}

// appendFixed prints values[m] with intDigits zero-padded digits and
// fracDigits decimals, or the no-value form of the same width.
func appendFixed(dst []byte, values map[drivers.MetricID]float64, m drivers.MetricID, measuring bool, intDigits, fracDigits int) []byte {
	v, ok := values[m]
	limit := math.Pow10(intDigits + fracDigits) // exclusive, in units of the last digit
	scaled := math.Round(v * pow10[fracDigits])
	if !ok || !measuring || math.IsNaN(scaled) || scaled < 0 || scaled >= limit {
		for range intDigits {
			dst = append(dst, '-')
		}
		if fracDigits > 0 {
			dst = append(dst, '.')
			for range fracDigits {
				dst = append(dst, '-')
			}
		}
		return dst
	}
	n := uint32(scaled)
	var digits [8]byte
	total := intDigits + fracDigits
	for i := total - 1; i >= 0; i-- {
		digits[i] = byte('0' + n%10)
		n /= 10
	}
	dst = append(dst, digits[:intDigits]...)
	if fracDigits > 0 {
		dst = append(dst, '.')
		dst = append(dst, digits[intDigits:total]...)
	}
	return dst
}

// appendSerial prints the device serial as the device does: 10 characters,
// dashes when unknown. A serial the line could not carry is printed unknown.
func appendSerial(dst []byte, sn string) []byte {
	const width = 10
	ok := len(sn) > 0 && len(sn) <= width
	for i := 0; ok && i < len(sn); i++ {
		c := sn[i]
		ok = (c >= '0' && c <= '9') || (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z')
	}
	if !ok {
		return append(dst, "----------"...)
	}
	for range width - len(sn) {
		dst = append(dst, '0')
	}
	return append(dst, sn...)
}

func appendHex(dst []byte, v uint32, width int) []byte {
	const hexDigits = "0123456789ABCDEF"
	for i := width - 1; i >= 0; i-- {
		dst = append(dst, hexDigits[(v>>(4*uint(i)))&0xF])
	}
	return dst
}

// appendTimestamp prints t as MM/dd/yy HH:mm:ss.
func appendTimestamp(dst []byte, t time.Time) []byte {
	year, month, day := t.Date()
	hour, minute, sec := t.Clock()
	dst = appendTwoDigits(dst, int(month))
	dst = append(dst, '/')
	dst = appendTwoDigits(dst, day)
	dst = append(dst, '/')
	dst = appendTwoDigits(dst, year%100)
	dst = append(dst, ' ')
	dst = appendTwoDigits(dst, hour)
	dst = append(dst, ':')
	dst = appendTwoDigits(dst, minute)
	dst = append(dst, ':')
	return appendTwoDigits(dst, sec)
}

func appendTwoDigits(dst []byte, n int) []byte {
	if n < 0 {
		n = -n
	}
	return append(dst, byte('0'+n/10%10), byte('0'+n%10))
}
