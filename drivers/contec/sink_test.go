package contec

import (
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
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

// frameCounts counts Frame calls per result, and the dropped bytes.
type frameCounts struct {
	OK           int `json:"ok"`
	Checksum     int `json:"checksum"`
	Malformed    int `json:"malformed"`
	InvalidValue int `json:"invalid_value"`
	Dropped      int `json:"dropped"`
}

// recordingSink keeps everything a decoder reports, in order.
type recordingSink struct {
	readings []drivers.Reading
	frames   frameCounts
	// events interleaves readings ("r:<metric>") and frames ("f:<result>").
	events []string
}

func (s *recordingSink) Reading(r drivers.Reading) {
	s.readings = append(s.readings, r)
	s.events = append(s.events, "r:"+r.Metric.String())
}

func (s *recordingSink) Frame(result drivers.FrameResult, dropped int) {
	switch result {
	case drivers.FrameOK:
		s.frames.OK++
	case drivers.FrameChecksum:
		s.frames.Checksum++
	case drivers.FrameMalformed:
		s.frames.Malformed++
	case drivers.FrameInvalidValue:
		s.frames.InvalidValue++
	}
	s.frames.Dropped += dropped
	s.events = append(s.events, "f:"+result.String())
}

func (s *recordingSink) views() []readingView {
	out := make([]readingView, 0, len(s.readings))
	for _, r := range s.readings {
		out = append(out, viewOf(r))
	}
	return out
}

// numerics are the SpO2 and pulse-rate readings only.
func (s *recordingSink) numerics() []readingView {
	out := []readingView{}
	for _, r := range s.readings {
		if r.Metric != drivers.Pleth {
			out = append(out, viewOf(r))
		}
	}
	return out
}

// pleths are the Pleth readings only.
func (s *recordingSink) pleths() []drivers.Reading {
	var out []drivers.Reading
	for _, r := range s.readings {
		if r.Metric == drivers.Pleth {
			out = append(out, r)
		}
	}
	return out
}

// discardSink is the benchmarks' and allocation tests' no-op sink.
type discardSink struct{}

func (discardSink) Reading(drivers.Reading)        {}
func (discardSink) Frame(drivers.FrameResult, int) {}

// decodeAll feeds input in one call to a fresh decoder.
func decodeAll(p Protocol, input []byte) *recordingSink {
	s := &recordingSink{}
	NewDecoder(p).Feed(input, testNow, s)
	return s
}

// decodeByteByByte feeds input one byte per call.
func decodeByteByByte(p Protocol, input []byte) *recordingSink {
	s := &recordingSink{}
	d := NewDecoder(p)
	for i := range input {
		d.Feed(input[i:i+1], testNow, s)
	}
	return s
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
