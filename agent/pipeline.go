package agent

import (
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
	device    string
	seq       uint64
	consumers []ReadingConsumer
	frames    FrameCounter
	// onFrame is told of every frame, for silence detection.
	onFrame func(result drivers.FrameResult)
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
}

func (p *pipeline) Frame(result drivers.FrameResult, dropped int) {
	if p.frames != nil {
		p.frames.Frame(p.device, result, dropped)
	}
	if p.onFrame != nil {
		p.onFrame(result)
	}
}
