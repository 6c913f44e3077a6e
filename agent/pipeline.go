package agent

import (
	"github.com/vigil-monitor/vigil/agent/devstatus"
	"github.com/vigil-monitor/vigil/drivers"
)

// ReadingConsumer is an output of the pipeline: metrics, MQTT, later alarms
// and the store. Consume is called for every reading of a device in order,
// from that device's goroutine; different devices call concurrently. It must
// not block for long: a slow consumer delays that device's readings.
type ReadingConsumer interface {
	Consume(r *drivers.Reading)
}

// FrameCounter is told the outcome of every frame a decoder sees.
type FrameCounter interface {
	Frame(device string, result drivers.FrameResult, dropped int)
}

// pipeline is the per-device path from a decoder to the outputs. It stamps
// each reading with the device id and the next sequence number, enforces the
// catalogue's physiological range, and hands the reading to every consumer in
// turn. It is the drivers.Sink of that device's decoder and is only used from
// the goroutine that feeds the decoder.
type pipeline struct {
	device string
	// seq is the last sequence number given; the agent starts it at the
	// store's last one for the device, so a restart continues the sequence
	// and (device, seq) stays unique for consumers that deduplicate.
	seq uint64
	// session, when set, gives the active dosing session's id.
	session   func() string
	consumers []ReadingConsumer
	frames    FrameCounter
	// onFrame is told of every frame, for silence detection.
	onFrame func(result drivers.FrameResult)
	// onConditions is told when the technical conditions implied by the
	// latest reading of each metric change.
	onConditions func([]devstatus.Condition)
	// flags holds the latest reading's flags per metric: a device's
	// conditions are those of its latest reading of every metric (an NIBP
	// reading says nothing about the SpO2 sensor).
	flags      [maxMetrics]drivers.Flags
	conditions conditionSet

	// cur holds the reading being delivered: consumers get a pointer to it,
	// which would otherwise make every reading escape to the heap. They must
	// not keep the pointer past Consume.
	cur drivers.Reading
}

func (p *pipeline) Reading(in drivers.Reading) {
	p.cur = in
	r := &p.cur
	r.Device = p.device
	p.seq++
	r.Seq = p.seq
	if p.session != nil {
		r.Session = p.session()
	}
	// The decoder checks ranges too; checking here as well means no driver
	// bug can put an impossible value on MQTT or a dashboard.
	if r.Valid && !r.Metric.Info().InRange(r.Value) {
		r.Valid = false
		r.Flags |= drivers.FlagOutOfRange
	}
	if !r.Valid {
		r.Value = 0
	}
	for _, c := range p.consumers {
		c.Consume(r)
	}
	if int(r.Metric) < maxMetrics && p.flags[r.Metric] != r.Flags {
		p.flags[r.Metric] = r.Flags
		var all drivers.Flags
		for _, f := range p.flags {
			all |= f
		}
		if c := conditionsOf(all); c != p.conditions {
			p.conditions = c
			if p.onConditions != nil {
				p.onConditions(c.list())
			}
		}
	}
}

// maxMetrics bounds the catalogue's metric ids for per-metric arrays.
const maxMetrics = 32

// conditionSet is a bit set over devstatus.Conditions() order.
type conditionSet uint8

// conditionFlags maps each condition, in devstatus.Conditions() order, to
// the reading flags that raise it.
var conditionFlags = [...]drivers.Flags{
	drivers.FlagSensorOff | drivers.FlagNoSensor, // sensor-off
	drivers.FlagSearching,                        // searching
	drivers.FlagLowPerfusion | drivers.FlagLowSignalQuality | drivers.FlagArtifact, // low-signal-quality
	drivers.FlagCuffError,   // cuff-error
	drivers.FlagSensorFault, // sensor-fault
}

func conditionsOf(f drivers.Flags) conditionSet {
	var c conditionSet
	for i, mask := range conditionFlags {
		if f&mask != 0 {
			c |= 1 << i
		}
	}
	return c
}

func (c conditionSet) list() []devstatus.Condition {
	all := devstatus.Conditions()
	out := make([]devstatus.Condition, 0, len(all))
	for i, cond := range all {
		if c&(1<<i) != 0 {
			out = append(out, cond)
		}
	}
	return out
}

func (p *pipeline) Frame(result drivers.FrameResult, dropped int) {
	if p.frames != nil {
		p.frames.Frame(p.device, result, dropped)
	}
	if p.onFrame != nil {
		p.onFrame(result)
	}
}
