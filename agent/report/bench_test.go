package report

import (
	"io"
	"testing"
	"time"
)

// countingWriter counts what a writer produced, for bytes per report.
type countingWriter struct{ n int64 }

func (w *countingWriter) Write(p []byte) (int, error) { w.n += int64(len(p)); return len(p), nil }

var _ io.Writer = (*countingWriter)(nil)

// benchmarkWriter times one writer over a 2-hour session at 1 Hz numerics
// (SpO2, pulse, perfusion index: 21,600 readings) plus an NIBP measurement
// every 15 minutes, the size of a real ketamine session (clinical.md 3).
func benchmarkWriter(b *testing.B, write func(io.Writer, Session) error) {
	s := longSession(2 * time.Hour)
	var w countingWriter
	if err := write(&w, s); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(w.n)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if err := write(io.Discard, s); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(len(s.Readings)), "readings")
}

func BenchmarkWriteHTML(b *testing.B) { benchmarkWriter(b, WriteHTML) }
func BenchmarkWriteFHIR(b *testing.B) { benchmarkWriter(b, WriteFHIR) }
func BenchmarkWriteCSV(b *testing.B)  { benchmarkWriter(b, WriteCSV) }
func BenchmarkWriteJSON(b *testing.B) { benchmarkWriter(b, WriteJSON) }
