package hl7

import (
	"math"
	"strconv"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
)

// Style is which monitor's way of writing observations the Encoder copies.
type Style uint8

const (
	// StyleMindray: NIBP as the cuff codes 150301-150303, respiration as
	// 151578 MDC_TTHOR_RESP_RATE, pulse 149530, NIBP pulse 149546, sub-ids
	// 1.<module>.<channel>.<code>, units as 11073 codes (protocols.md 5.2).
	StyleMindray Style = iota
	// StyleComen: the protocols.md 5.2 worked example: NIBP as
	// 150021-150023, pulse as 149522^MDC_PULS_RATE, respiration 151562,
	// sender in MSH-4 with MSH-3 "NC_Monitor".
	StyleComen
)

// No Edan style: protocols.md 5.2 lists EHC codes for SpO2, NIBP
// systolic, diastolic and pulse only; an Edan simulation would need codes
// for the rest that no source gives.

// Encoder renders frames as ORU^R01 messages in MLLP framing, as a monitor
// pushes them (protocols.md 5.2), for the simulator and tests:
//
//	MSH|^~\&|<app>|<sender>|||<time>||ORU^R01^ORU_R01|<time><seq>|P|2.6||||||UNICODE UTF-8
//	PID|||
//	PV1||I
//	OBR|1|||182777000^monitoring of patient^SCT|||<time>
//	OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.3.1.150456|97|262688^MDC_DIM_PERCENT^MDC|||||F|||<time>
//	...
//
// One OBX per catalogue metric in Frame.Values, in catalogue order. SpO2 and
// pulse rate are always sent, with an empty value when missing from Values
// or while the flags say no sensor, sensor off or sensor fault (PI then too):
// an oximeter channel reports "no value" rather than falling silent [I]. NaN
// and infinities are sent empty; other numbers as given, so a Frame can
// carry a monitor's "-100". PID carries nothing. Frame.DeviceSN is not
// used: the sender is the configured one. Frame.Time is written in its own
// zone. Encode is not safe for concurrent use (the control id counter).
type Encoder struct {
	Sender      string // MSH-4
	Application string // MSH-3
	Style       Style
	seq         uint32
}

// NewEncoder returns an Encoder sending as sender in the given style.
func NewEncoder(sender string, style Style) *Encoder {
	app := "Vigil-Sim"
	if style == StyleComen {
		app = "NC_Monitor"
	}
	return &Encoder{Sender: sender, Application: app, Style: style}
}

// Interval is how often the simulated monitor pushes: once a second [I]
// (the real interval is a monitor setting, protocols.md 5.2).
func (*Encoder) Interval() time.Duration { return time.Second }

// observationStyle is how one metric is written.
type observationStyle struct {
	metric drivers.MetricID
	id     string // OBX-3
	subID  string // OBX-4
	unit   string // OBX-6
}

const (
	unitPercentMDC = "262688^MDC_DIM_PERCENT^MDC"
	unitBeatMDC    = "264864^MDC_DIM_BEAT_PER_MIN^MDC"
	unitRespMDC    = "264928^MDC_DIM_RESP_PER_MIN^MDC"
	unitMMHgMDC    = "266016^MDC_DIM_MMHG^MDC"
)

var mindrayObservations = [...]observationStyle{
	{drivers.SpO2, "150456^MDC_PULS_OXIM_SAT_O2^MDC", "1.3.1.150456", unitPercentMDC},
	{drivers.PulseRate, "149530^MDC_PULS_OXIM_PULS_RATE^MDC", "1.3.1.149530", unitBeatMDC},
	{drivers.PerfusionIndex, "150448^MDC_PULS_OXIM_PERF_REL^MDC", "1.3.1.150448", unitPercentMDC},
	{drivers.NIBPSystolic, "150301^MDC_PRESS_CUFF_SYS^MDC", "1.1.9.150301", unitMMHgMDC},
	{drivers.NIBPDiastolic, "150302^MDC_PRESS_CUFF_DIA^MDC", "1.1.9.150302", unitMMHgMDC},
	{drivers.NIBPMean, "150303^MDC_PRESS_CUFF_MEAN^MDC", "1.1.9.150303", unitMMHgMDC},
	{drivers.NIBPPulseRate, "149546^MDC_PULS_RATE_NON_INV^MDC", "1.1.9.149546", unitBeatMDC},
	{drivers.RespirationRate, "151578^MDC_TTHOR_RESP_RATE^MDC", "1.14.1.151578", unitRespMDC},
}

var comenObservations = [...]observationStyle{
	{drivers.SpO2, "150456^MDC_PULS_OXIM_SAT_O2^MDC", "1.3.1.150456", unitPercentMDC},
	{drivers.PulseRate, "149522^MDC_PULS_RATE^MDC", "1.0.0.149522", unitBeatMDC},
	{drivers.PerfusionIndex, "150448^MDC_PULS_OXIM_PERF_REL^MDC", "1.3.1.150448", unitPercentMDC},
	{drivers.NIBPSystolic, "150021^MDC_PRESS_BLD_NONINV_SYS^MDC", "1.1.9.150021", unitMMHgMDC},
	{drivers.NIBPDiastolic, "150022^MDC_PRESS_BLD_NONINV_DIA^MDC", "1.1.9.150022", unitMMHgMDC},
	{drivers.NIBPMean, "150023^MDC_PRESS_BLD_NONINV_MEAN^MDC", "1.1.9.150023", unitMMHgMDC},
	{drivers.NIBPPulseRate, "149546^MDC_PULS_RATE_NON_INV^MDC", "1.1.9.149546", unitBeatMDC},
	{drivers.RespirationRate, "151562^MDC_RESP_RATE^MDC", "1.14.1.151562", unitRespMDC},
}

// sensorAbsent are the flags under which the oximeter values are sent
// empty, as the monitor has nothing to measure.
const sensorAbsent = drivers.FlagNoSensor | drivers.FlagSensorOff | drivers.FlagSensorFault

// Encode appends one MLLP-framed message to dst.
func (e *Encoder) Encode(dst []byte, f drivers.Frame) []byte {
	e.seq++
	dst = append(dst, startBlock)
	dst = append(dst, "MSH|^~\\&|"...)
	dst = appendEscaped(dst, e.Application, maxControlID)
	dst = append(dst, '|')
	dst = appendEscaped(dst, e.Sender, maxControlID)
	dst = append(dst, "|||"...)
	dst = appendTime(dst, f.Time)
	dst = append(dst, "||ORU^R01^ORU_R01|"...)
	// Control id as Comen writes it: the time and a 4-digit counter.
	dst = f.Time.AppendFormat(dst, "20060102150405")
	dst = appendPadded(dst, e.seq%10000, 4)
	dst = append(dst, "|P|2.6||||||UNICODE UTF-8\r"...)
	dst = append(dst, "PID|||\rPV1||I\r"...)
	dst = append(dst, "OBR|1|||182777000^monitoring of patient^SCT|||"...)
	dst = appendTime(dst, f.Time)
	dst = append(dst, '\r')

	table := mindrayObservations[:]
	if e.Style == StyleComen {
		table = comenObservations[:]
	}
	measuring := f.Flags&sensorAbsent == 0
	n := 0
	for _, o := range table {
		v, ok := f.Values[o.metric]
		oximeter := o.metric == drivers.SpO2 || o.metric == drivers.PulseRate || o.metric == drivers.PerfusionIndex
		always := o.metric == drivers.SpO2 || o.metric == drivers.PulseRate
		if !ok && !always {
			continue
		}
		n++
		dst = append(dst, "OBX|"...)
		dst = strconv.AppendInt(dst, int64(n), 10)
		dst = append(dst, "|NM|"...)
		dst = append(dst, o.id...)
		dst = append(dst, '|')
		dst = append(dst, o.subID...)
		dst = append(dst, '|')
		if ok && (measuring || !oximeter) && !math.IsNaN(v) && !math.IsInf(v, 0) {
			dst = strconv.AppendFloat(dst, v, 'f', -1, 64)
		}
		dst = append(dst, '|')
		dst = append(dst, o.unit...)
		dst = append(dst, "|||||F|||"...)
		dst = appendTime(dst, f.Time)
		dst = append(dst, '\r')
	}
	return append(dst, endBlock, carriageRet)
}

// appendTime writes t as yyyyMMddHHmmss+zzzz (protocols.md 5.2).
func appendTime(dst []byte, t time.Time) []byte {
	return t.AppendFormat(dst, "20060102150405-0700")
}

func appendPadded(dst []byte, n uint32, width int) []byte {
	var digits [10]byte
	for i := width - 1; i >= 0; i-- {
		digits[i] = byte('0' + n%10)
		n /= 10
	}
	return append(dst, digits[:width]...)
}
