package contec

import (
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
	"github.com/vigil-monitor/vigil/drivers/drivertest"
)

// readingView is the part of a Reading a decoder fills, in a comparable,
// printable form that is also the golden files' JSON shape.
type readingView struct {
	Metric     string    `json:"metric"`
	Value      float64   `json:"value"`
	Valid      bool      `json:"valid"`
	Flags      []string  `json:"flags"`
	Samples    []float64 `json:"samples,omitempty"`
	SampleRate float64   `json:"sample_rate,omitempty"`
}

func (v readingView) String() string {
	if len(v.Samples) > 0 {
		return fmt.Sprintf("%s[%d samples @%v] flags=%v", v.Metric, len(v.Samples), v.SampleRate, v.Flags)
	}
	return fmt.Sprintf("%s=%v valid=%v flags=%v", v.Metric, v.Value, v.Valid, v.Flags)
}

func viewOf(r drivers.Reading) readingView {
	v := readingView{
		Metric:     r.Metric.String(),
		Value:      r.Value,
		Valid:      r.Valid,
		Flags:      r.Flags.Names(),
		Samples:    r.Samples,
		SampleRate: r.SampleRate,
	}
	if v.Flags == nil {
		v.Flags = []string{}
	}
	return v
}

func views(rs []drivers.Reading) []readingView { return drivertest.Views(rs, viewOf) }

// numerics are the SpO2 and pulse-rate readings only.
func numerics(rs []drivers.Reading) []readingView {
	out := []readingView{}
	for _, r := range rs {
		if r.Metric != drivers.Pleth {
			out = append(out, viewOf(r))
		}
	}
	return out
}

// pleths are the Pleth readings only.
func pleths(rs []drivers.Reading) []drivers.Reading {
	var out []drivers.Reading
	for _, r := range rs {
		if r.Metric == drivers.Pleth {
			out = append(out, r)
		}
	}
	return out
}

// decodeAll feeds input in one call to a fresh decoder.
func decodeAll(p Protocol, input []byte) *drivertest.Recorder {
	return drivertest.FeedAll(NewDecoder(p), input, testNow)
}

// decodeByteByByte feeds input one byte per call.
func decodeByteByByte(p Protocol, input []byte) *drivertest.Recorder {
	return drivertest.FeedByteByByte(NewDecoder(p), input, testNow)
}

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// hexBytes parses "85 3C 03 48 61" (spaces, newlines and #-comments
// allowed); it panics on bad input, which is a bug in the test.
func hexBytes(s string) []byte {
	var b strings.Builder
	for _, line := range strings.Split(s, "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		b.WriteString(strings.Join(strings.Fields(line), ""))
	}
	out, err := hex.DecodeString(b.String())
	if err != nil {
		panic(err)
	}
	return out
}

// repeat concatenates n copies of frame.
func repeat(frame []byte, n int) []byte {
	out := make([]byte, 0, len(frame)*n)
	for range n {
		out = append(out, frame...)
	}
	return out
}

func rv(m drivers.MetricID, value float64, valid bool, flags ...string) readingView {
	if flags == nil {
		flags = []string{}
	}
	return readingView{Metric: m.String(), Value: value, Valid: valid, Flags: flags}
}
