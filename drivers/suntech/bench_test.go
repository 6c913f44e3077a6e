package suntech

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
	"github.com/vigil-monitor/vigil/drivers/drivertest"
)

func benchmarkFeed(b *testing.B, input []byte, unit string) {
	d := NewDecoder(PatientAdult)
	var sink drivers.Sink = drivertest.Discard
	b.SetBytes(int64(len(input)))
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		d.Feed(input, testNow, sink)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), unit)
}

// BenchmarkDecodeResult is the worked result packet, one per Feed.
func BenchmarkDecodeResult(b *testing.B) {
	benchmarkFeed(b, hexBytes(b, workedResult), "results/s")
}

// BenchmarkDecodePressure is one cuff-pressure reply per Feed: the
// measurement-time traffic.
func BenchmarkDecodePressure(b *testing.B) {
	benchmarkFeed(b, hexBytes(b, workedPressure), "frames/s")
}

// BenchmarkDecodeGarbage is 256 bytes without a frame, resynchronising.
func BenchmarkDecodeGarbage(b *testing.B) {
	benchmarkFeed(b, bytes.Repeat([]byte{0x3E, 0x00, 0x11, 0x3A}, 64), "runs/s")
}

// BenchmarkTickMeasuring is one poll tick while measuring: the command
// written and the reply decoded.
func BenchmarkTickMeasuring(b *testing.B) {
	d := NewDecoder(PatientAdult)
	var sink drivers.Sink = drivertest.Discard
	now := testNow
	if err := d.Command(CommandStart, io.Discard, now); err != nil {
		b.Fatal(err)
	}
	d.Feed(AppendStatusReply(nil, 'O'), now, sink)
	reply := AppendPressureReply(nil, 120)
	b.ReportAllocs()
	for b.Loop() {
		now = now.Add(time.Millisecond) // stays within MaxMeasurement for 180k iterations
		if err := d.Advance(io.Discard, now, sink); err != nil {
			b.Fatal(err)
		}
		d.Feed(reply, now, sink)
		if !d.Measuring() {
			now = testNow
			d = NewDecoder(PatientAdult)
			_ = d.Command(CommandStart, io.Discard, now)
			d.Feed(AppendStatusReply(nil, 'O'), now, sink)
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	f := drivers.Frame{Values: nibpValues(120, 80, 93, 70)}
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	for b.Loop() {
		buf = Encoder{}.Encode(buf[:0], f)
	}
}
