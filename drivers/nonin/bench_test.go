package nonin

import (
	"testing"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
	"github.com/vigil-monitor/vigil/drivers/drivertest"
)

// benchmarkFeed feeds input in reads of chunk bytes per iteration and
// reports the rate in units (packets, frames or lines) per second.
func benchmarkFeed(b *testing.B, d drivers.Decoder, input []byte, chunk int, units float64, unit string) {
	var sink drivers.Sink = drivertest.Discard
	b.SetBytes(int64(len(input)))
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		for in := input; len(in) > 0; {
			n := min(chunk, len(in))
			d.Feed(in[:n], testNow, sink)
			in = in[n:]
		}
	}
	b.ReportMetric(units*float64(b.N)/time.Since(start).Seconds(), unit+"/s")
}

// One packet per read: the allocation is the Pleth reading's samples.
func BenchmarkDF2Packet(b *testing.B) {
	benchmarkFeed(b, NewDF2Decoder(), pufferfishPacket, packetLen, 1, "packets")
}

func BenchmarkDF7Packet(b *testing.B) {
	benchmarkFeed(b, NewDF7Decoder(), newTestPacket(97, 72).bytes(true), packetLen, 1, "packets")
}

// A USB-serial adapter often delivers a few bytes per read: one frame here.
func BenchmarkDF2PacketInFrames(b *testing.B) {
	benchmarkFeed(b, NewDF2Decoder(), pufferfishPacket, frameLen, 1, "packets")
}

// Resynchronising through a packet's worth of bytes with no frame in them.
func BenchmarkDF2Garbage(b *testing.B) {
	garbage := make([]byte, packetLen)
	for i := range garbage {
		garbage[i] = byte(i*37) | 0x01
	}
	benchmarkFeed(b, NewDF2Decoder(), garbage, packetLen, 1, "packets")
}

func BenchmarkDF8Frame(b *testing.B) {
	benchmarkFeed(b, NewDF8Decoder(), df8Normal, df8Len, 1, "frames")
}

func BenchmarkASCIILine(b *testing.B) {
	benchmarkFeed(b, NewASCIIDecoder(), []byte(asciiWorked+"\r\n"), 64, 1, "lines")
}

func BenchmarkEncode(b *testing.B) {
	f := drivers.Frame{Values: map[drivers.MetricID]float64{drivers.SpO2: 97, drivers.PulseRate: 72}, Samples: ramp(100)}
	for name, enc := range map[string]drivers.Encoder{"DF2": NewDF2Encoder(), "DF7": NewDF7Encoder(), "DF8": DF8Encoder{}, "ASCII": ASCIIEncoder{}} {
		b.Run(name, func(b *testing.B) {
			buf := make([]byte, 0, 256)
			b.ReportAllocs()
			for b.Loop() {
				buf = enc.Encode(buf[:0], f)
			}
		})
	}
}
