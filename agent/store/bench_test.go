package store

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
)

// numericPayload is about the size of the MQTT payload of one reading.
func numericPayload(r *drivers.Reading) []byte {
	return fmt.Appendf(nil, `{"device":%q,"metric":%q,"seq":%d,"value":%g,"unit":%q,"valid":true,"received":%q,"session":"01JQ6Z8W3K5T7V9X1B3D5F7H9K"}`,
		r.Device, r.Metric.String(), r.Seq, r.Value, r.Metric.Info().Unit, r.Received.Format(time.RFC3339Nano))
}

func waveformPayload(r *drivers.Reading) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `{"device":%q,"metric":"pleth","seq":%d,"rate":75,"received":%q,"samples":[`, r.Device, r.Seq,
		r.Received.Format(time.RFC3339Nano))
	for i, v := range r.Samples {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%g", v)
	}
	b.WriteString("]}")
	return []byte(b.String())
}

// addRetrying adds like an agent that waits when the queue is full.
func addRetrying(b *testing.B, w *Writer, it Item) {
	for {
		err := w.Add(it)
		if err == nil {
			return
		}
		if !errors.Is(err, ErrQueueFull) {
			b.Fatal(err)
		}
		time.Sleep(100 * time.Microsecond)
	}
}

// BenchmarkCommitReadings: numeric readings with their outbox messages,
// added one at a time as the agent's pipeline does, through the Writer's
// group commit (synchronous=NORMAL). Reports readings/s.
func BenchmarkCommitReadings(b *testing.B) {
	for _, full := range []bool{false, true} {
		name := "sync=normal"
		if full {
			name = "sync=full"
		}
		b.Run(name, func(b *testing.B) {
			s := openTest(b, Options{SyncFull: full})
			w := startWriter(b, s, WriterOptions{})
			metrics := []drivers.MetricID{drivers.SpO2, drivers.PulseRate, drivers.PerfusionIndex}
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			for i := 0; i < b.N; i++ {
				r := numeric("oximeter-1", uint64(i+1), metrics[i%3], 97, t0.Add(time.Duration(i)*100*time.Millisecond))
				addRetrying(b, w.Writer, Item{Reading: r, Session: "01JQ6Z8W3K5T7V9X1B3D5F7H9K",
					Outbox: &Message{Topic: "vigil/clinic/room-1/oximeter-1/" + r.Metric.String(), Payload: numericPayload(r), QoS: 1}})
			}
			flush(b, w.Writer)
			elapsed := time.Since(start)
			b.StopTimer()
			st := w.Stats()
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "readings/s")
			b.ReportMetric(float64(st.Items)/float64(max(st.Commits, 1)), "items/commit")
		})
	}
}

// BenchmarkOutboxDrain reads and deletes a 10-minute outage backlog of one
// oximeter: 10 Hz numerics x 3 metrics and a 75 Hz pleth in 1-s chunks
// (18,600 entries), as the publisher does: pages of DefaultOutboxPage in id
// order, each page's ids deleted through the Writer.
func BenchmarkOutboxDrain(b *testing.B) {
	const seconds = 600
	s := openTest(b, Options{})
	w := startWriter(b, s, WriterOptions{})
	metrics := []drivers.MetricID{drivers.SpO2, drivers.PulseRate, drivers.PerfusionIndex}
	samples := make([]float64, 75)
	for i := range samples {
		samples[i] = float64(2000 + i*13%700)
	}
	var seq uint64
	fill := func() int {
		n := 0
		for sec := 0; sec < seconds; sec++ {
			base := t0.Add(time.Duration(sec) * time.Second)
			for tick := 0; tick < 10; tick++ {
				for _, m := range metrics {
					seq++
					r := numeric("oximeter-1", seq, m, 97, base.Add(time.Duration(tick)*100*time.Millisecond))
					addRetrying(b, w.Writer, Item{Reading: r, Outbox: &Message{Topic: "vigil/c/r/oximeter-1/" + m.String(),
						Payload: numericPayload(r), QoS: 1}})
					n++
				}
			}
			seq++
			r := pleth("oximeter-1", seq, base, samples...)
			addRetrying(b, w.Writer, Item{Reading: r, Outbox: &Message{Topic: "vigil/c/r/oximeter-1/pleth",
				Payload: waveformPayload(r), QoS: 1}})
			n++
		}
		flush(b, w.Writer)
		return n
	}
	b.ResetTimer()
	var drained int
	var total time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		n := fill()
		b.StartTimer()
		start := time.Now()
		after := int64(0)
		got := 0
		for {
			page, err := s.Outbox(after, DefaultOutboxPage)
			if err != nil {
				b.Fatal(err)
			}
			if len(page) == 0 {
				break
			}
			ids := make([]int64, len(page))
			for k, e := range page {
				ids[k] = e.ID
			}
			w.DeleteOutbox(ids...)
			got += len(page)
			after = page[len(page)-1].ID
		}
		flush(b, w.Writer)
		total += time.Since(start)
		if got != n {
			b.Fatalf("drained %d of %d", got, n)
		}
		drained += got
		b.StopTimer()
		if depth, _, err := s.OutboxStats(); err != nil || depth != 0 {
			b.Fatalf("outbox depth %d after the drain (%v)", depth, err)
		}
		b.StartTimer()
	}
	b.StopTimer()
	b.ReportMetric(float64(drained)/total.Seconds(), "entries/s")
	b.ReportMetric(total.Seconds()/float64(b.N)*1000, "ms/backlog")
}
