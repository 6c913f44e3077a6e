package simulator

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// BenchmarkRenderFrame is the per-frame cost of the player without I/O: the
// scenario lookup with ramp and noise, then the encoder.
func BenchmarkRenderFrame(b *testing.B) {
	s, _ := BuiltinScenario("demo")
	tl := newTimeline(s)
	pcg := rand.NewPCG(1, 0)
	rng := rand.New(pcg)
	enc := lineEncoder{interval: time.Second}
	buf := make([]byte, 0, 256)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		pcg.Seed(1, uint64(i))
		f, _ := tl.frame(time.Duration(i)*time.Millisecond, rng)
		buf = enc.Encode(buf[:0], f)
	}
}

// BenchmarkPtyThroughput plays at a high rate into a host reading through
// go.bug.st/serial and reports the frames per second that arrived.
func BenchmarkPtyThroughput(b *testing.B) {
	for _, rate := range []float64{500, 5000} {
		b.Run(fmt.Sprintf("rate=%g", rate), func(b *testing.B) {
			for b.Loop() {
				d, err := NewDevice(Options{Driver: lineDriver(time.Second), Scenario: steady(true, time.Hour), Rate: rate})
				if err != nil {
					b.Fatal(err)
				}
				h := openHost(b, d.Path())
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				done := make(chan struct{})
				go func() { _ = d.Run(ctx); close(done) }()
				frames := 0
				start := time.Now()
				for time.Since(start) < time.Second {
					// A timeout (a starved host) only ends this read.
					if _, err := h.line(time.Second - time.Since(start)); err == nil {
						frames++
					}
				}
				cancel()
				<-done
				_ = h.port.Close()
				_ = d.Close()
				st := d.Stats()
				b.ReportMetric(float64(frames), "frames/s")
				b.ReportMetric(float64(st.Skipped+st.Discarded), "lost/s")
			}
		})
	}
}
