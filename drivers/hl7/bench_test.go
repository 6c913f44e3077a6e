package hl7

import (
	"testing"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
	"github.com/vigil-monitor/vigil/drivers/drivertest"
)

// Feed allocates nothing per message once its buffers have grown: not for
// readings, not for the repeated unknown temperature, not for the queued
// ACK.
func TestFeedDoesNotAllocate(t *testing.T) {
	input := mllp(comenExample)
	for _, acks := range []bool{false, true} {
		d := NewDecoder(Config{Sender: "KC261551373G", ACKs: acks})
		d.OnUnknown(func(UnknownObservation) {})
		var sink drivers.Sink = drivertest.Discard
		d.Feed(input, testNow, sink)
		n := testing.AllocsPerRun(200, func() {
			d.Feed(input, testNow, sink)
			d.replies = d.replies[:0]
		})
		if n != 0 {
			t.Fatalf("ACKs %v: %v allocations per message", acks, n)
		}
	}
}

func benchmarkFeed(b *testing.B, input []byte, cfg Config, split bool) {
	d := NewDecoder(cfg)
	var sink drivers.Sink = drivertest.Discard
	b.SetBytes(int64(len(input)))
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		if split {
			d.Feed(input[:len(input)/2], testNow, sink)
			d.Feed(input[len(input)/2:], testNow, sink)
		} else {
			d.Feed(input, testNow, sink)
		}
		d.replies = d.replies[:0]
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

// BenchmarkFeed decodes the protocols.md 5.2 Comen message (6 readings, one
// unknown temperature), one message per call.
func BenchmarkFeed(b *testing.B) { benchmarkFeed(b, mllp(comenExample), Config{}, false) }

// BenchmarkFeedWithACK also builds and queues the AA.
func BenchmarkFeedWithACK(b *testing.B) {
	benchmarkFeed(b, mllp(comenExample), Config{Sender: "KC261551373G", ACKs: true}, false)
}

// BenchmarkFeedSplit receives each message in two reads.
func BenchmarkFeedSplit(b *testing.B) { benchmarkFeed(b, mllp(comenExample), Config{}, true) }

// BenchmarkFeedMessages is the agent's path: a Message per message.
func BenchmarkFeedMessages(b *testing.B) {
	input := mllp(comenExample)
	d := NewDecoder(Config{})
	b.SetBytes(int64(len(input)))
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		d.FeedMessages(input, testNow, func(*Message, error) {})
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}

func BenchmarkACK(b *testing.B) {
	res := feedMessages(mllp(comenExample))
	m := res[0].msg
	b.ReportAllocs()
	for b.Loop() {
		ACK(m, AA, "", testNow)
	}
}

func BenchmarkEncode(b *testing.B) {
	e := NewEncoder("BED-7", StyleMindray)
	f := drivers.Frame{Time: testNow, Values: map[drivers.MetricID]float64{
		drivers.SpO2: 97, drivers.PulseRate: 61, drivers.NIBPSystolic: 121, drivers.NIBPDiastolic: 79, drivers.NIBPMean: 93,
	}}
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for b.Loop() {
		buf = e.Encode(buf[:0], f)
	}
}
