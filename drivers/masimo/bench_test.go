package masimo

import (
	"testing"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
	"github.com/vigil-monitor/vigil/drivers/drivertest"
)

// benchmarkDecode feeds one line per iteration, as the agent does when the
// device's one line per second arrives in one read.
func benchmarkDecode(b *testing.B, line string) {
	input := []byte(line + "\r\n")
	d := NewDecoder()
	var sink drivers.Sink = drivertest.Discard
	b.SetBytes(int64(len(input)))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		d.Feed(input, testNow, sink)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "lines/s")
}

// BenchmarkDecodeLine is the Rad-8 worked example (protocols.md 2.5).
func BenchmarkDecodeLine(b *testing.B) { benchmarkDecode(b, rad8Line) }

// BenchmarkDecodeLineRadical7 is the longest documented line.
func BenchmarkDecodeLineRadical7(b *testing.B) { benchmarkDecode(b, radical7Line) }

// BenchmarkDecodeLineSplit receives each line in two reads, so the decoder
// copies it into its own buffer.
func BenchmarkDecodeLineSplit(b *testing.B) {
	input := []byte(rad8Line + "\r\n")
	d := NewDecoder()
	var sink drivers.Sink = drivertest.Discard
	b.SetBytes(int64(len(input)))
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		d.Feed(input[:64], testNow, sink)
		d.Feed(input[64:], testNow, sink)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "lines/s")
}

func BenchmarkEncode(b *testing.B) {
	f := drivers.Frame{
		Time:   time.Date(2016, 2, 22, 22, 47, 45, 0, time.UTC),
		Values: map[drivers.MetricID]float64{drivers.SpO2: 98, drivers.PulseRate: 97, drivers.PerfusionIndex: 3.6},
	}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for b.Loop() {
		buf = Encoder{}.Encode(buf[:0], f)
	}
}
