package agent

import (
	"testing"
	"time"

	"github.com/vigil-monitor/vigil/agent/metrics"
	"github.com/vigil-monitor/vigil/agent/mqtt"
	"github.com/vigil-monitor/vigil/drivers"
)

type recorder struct{ got []drivers.Reading }

func (r *recorder) Consume(x *drivers.Reading) { r.got = append(r.got, *x) }

type frameRecorder struct{ results []drivers.FrameResult }

func (f *frameRecorder) Frame(_ string, r drivers.FrameResult, _ int) {
	f.results = append(f.results, r)
}

// The pipeline numbers every reading of a device, whatever its metric, and
// no value outside the catalogue's range leaves it as valid, even when a
// driver forgot to check.
func TestPipelineSequenceAndRange(t *testing.T) {
	rec, frames := &recorder{}, &frameRecorder{}
	var seen []drivers.FrameResult
	p := &pipeline{device: "ox", consumers: []ReadingConsumer{rec}, frames: frames,
		onFrame: func(r drivers.FrameResult) { seen = append(seen, r) }}
	now := time.Unix(1_800_000_000, 0)
	in := []drivers.Reading{
		{Metric: drivers.SpO2, Value: 97, Valid: true, Received: now},
		{Metric: drivers.PulseRate, Value: 72, Valid: true, Received: now},
		{Metric: drivers.SpO2, Value: 127, Valid: true, Received: now}, // a sentinel that slipped through
		{Metric: drivers.PulseRate, Value: -1, Valid: true, Received: now},
		{Metric: drivers.SpO2, Value: 55, Valid: false, Flags: drivers.FlagSensorOff, Received: now},
	}
	for _, r := range in {
		p.Reading(r)
	}
	p.Frame(drivers.FrameOK, 0)
	p.Frame(drivers.FrameMalformed, 12)

	want := []struct {
		seq   uint64
		valid bool
		value float64
		flags drivers.Flags
	}{
		{1, true, 97, 0},
		{2, true, 72, 0},
		{3, false, 0, drivers.FlagOutOfRange},
		{4, false, 0, drivers.FlagOutOfRange},
		{5, false, 0, drivers.FlagSensorOff},
	}
	if len(rec.got) != len(want) {
		t.Fatalf("got %d readings, want %d", len(rec.got), len(want))
	}
	for i, w := range want {
		g := rec.got[i]
		if g.Device != "ox" || g.Seq != w.seq || g.Valid != w.valid || g.Value != w.value || g.Flags != w.flags {
			t.Errorf("reading %d = {device %s seq %d valid %v value %v flags %v}, want {ox %d %v %v %v}",
				i, g.Device, g.Seq, g.Valid, g.Value, g.Flags, w.seq, w.valid, w.value, w.flags)
		}
	}
	if len(frames.results) != 2 || frames.results[1] != drivers.FrameMalformed || len(seen) != 2 {
		t.Errorf("frames = %v, onFrame saw %v", frames.results, seen)
	}
}

// BenchmarkPipeline is the agent's per-reading work without the network:
// sequence and range check, the Prometheus update, and the MQTT payload.
func BenchmarkPipeline(b *testing.B) {
	m := metrics.New(metrics.Options{Site: "clinic-a", Room: "room-1",
		Devices: []metrics.Device{{ID: "ox", Metrics: []drivers.MetricID{drivers.SpO2, drivers.PulseRate}}}})
	enc := &payloadEncoder{site: "clinic-a", room: "room-1"}
	p := &pipeline{device: "ox", consumers: []ReadingConsumer{m, enc}}
	r := drivers.Reading{Metric: drivers.SpO2, Value: 97, Valid: true, Received: time.Now(),
		DeviceTime: time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)}
	b.ReportAllocs()
	for b.Loop() {
		p.Reading(r)
	}
}

type payloadEncoder struct {
	site, room string
	buf        []byte
}

func (e *payloadEncoder) Consume(r *drivers.Reading) {
	e.buf = mqtt.AppendReadingJSON(e.buf[:0], e.site, e.room, r)
}
