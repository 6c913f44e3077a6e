package contec

import (
	"testing"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
	"github.com/vigil-monitor/vigil/drivers/drivertest"
)

// benchmarkDecode feeds one second of stream (60 frames) per iteration,
// in reads of readSize bytes (0: one read per second).
func benchmarkDecode(b *testing.B, p Protocol, second []byte, readSize int) {
	d := NewDecoder(p)
	var sink drivers.Sink = drivertest.Discard
	d.Feed(second, testNow, sink) // decided (auto) and aligned to a batch
	if readSize == 0 {
		readSize = len(second)
	}
	b.SetBytes(int64(len(second)))
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		for in := second; len(in) > 0; {
			n := min(readSize, len(in))
			d.Feed(in[:n], testNow, sink)
			in = in[n:]
		}
	}
	b.ReportMetric(float64(b.N*SampleRate)/time.Since(start).Seconds(), "frames/s")
}

// One second of legacy stream (300 bytes) in one read.
func BenchmarkDecodeLegacy(b *testing.B) {
	benchmarkDecode(b, ProtocolLegacy, legacyFrames(60, 97, 72), 0)
}

// One second of v4.6 stream (540 bytes) in one read.
func BenchmarkDecodeV46(b *testing.B) { benchmarkDecode(b, ProtocolV46, v46Frames(60, 97, 130), 0) }

// The same in 7-byte reads, frames split across reads as a USB-serial
// adapter delivers them.
func BenchmarkDecodeV46SmallReads(b *testing.B) {
	benchmarkDecode(b, ProtocolV46, v46Frames(60, 97, 130), 7)
}

// An auto decoder after it decided: the same path as a fixed one.
func BenchmarkDecodeAutoDecided(b *testing.B) {
	benchmarkDecode(b, ProtocolAuto, v46Frames(60, 97, 130), 0)
}

// A fresh auto decoder per iteration: probing, deciding and replaying.
func BenchmarkDecodeAutoFirstSecond(b *testing.B) {
	second := legacyFrames(60, 97, 72)
	var sink drivers.Sink = drivertest.Discard
	b.SetBytes(int64(len(second)))
	b.ReportAllocs()
	for b.Loop() {
		NewDecoder(ProtocolAuto).Feed(second, testNow, sink)
	}
}

func BenchmarkEncode(b *testing.B) {
	f := drivers.Frame{Time: encodeTime, Values: map[drivers.MetricID]float64{drivers.SpO2: 97, drivers.PulseRate: 72}}
	for _, p := range []Protocol{ProtocolLegacy, ProtocolV46} {
		b.Run(p.String(), func(b *testing.B) {
			enc := NewEncoder(p)
			buf := make([]byte, 0, 1024)
			b.ReportAllocs()
			for b.Loop() {
				buf = enc.Encode(buf[:0], f)
			}
		})
	}
}
