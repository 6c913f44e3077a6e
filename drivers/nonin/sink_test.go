package nonin

import (
	"fmt"
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
	s := fmt.Sprintf("%s=%v valid=%v flags=%v", v.Metric, v.Value, v.Valid, v.Flags)
	if len(v.Samples) > 0 {
		s += fmt.Sprintf(" samples=%v@%vHz", v.Samples, v.SampleRate)
	}
	return s
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

func (c frameCounts) total() int { return c.OK + c.Checksum + c.Malformed + c.InvalidValue }

// recordingSink keeps everything a decoder reports, in order.
type recordingSink struct {
	readings []drivers.Reading
	frames   frameCounts
	// events interleaves readings ("r") and frames ("f:<result>/<dropped>")
	// so tests can check order and what each Frame call said.
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
	s.events = append(s.events, fmt.Sprintf("f:%s/%d", result, dropped))
}

func (s *recordingSink) views() []readingView {
	out := make([]readingView, 0, len(s.readings))
	for _, r := range s.readings {
		out = append(out, viewOf(r))
	}
	return out
}

// discardSink is the benchmarks' and allocation tests' no-op sink.
type discardSink struct{}

func (discardSink) Reading(drivers.Reading)        {}
func (discardSink) Frame(drivers.FrameResult, int) {}

// decodeAll feeds input in one call to the decoder newDec makes.
func decodeAll(newDec func() drivers.Decoder, input []byte) *recordingSink {
	s := &recordingSink{}
	newDec().Feed(input, testNow, s)
	return s
}

// decodeByteByByte feeds input one byte per call.
func decodeByteByByte(newDec func() drivers.Decoder, input []byte) *recordingSink {
	s := &recordingSink{}
	d := newDec()
	for i := range input {
		d.Feed(input[i:i+1], testNow, s)
	}
	return s
}

// The four decoders, as the tests make them.
var (
	df2     = func() drivers.Decoder { return NewDF2Decoder() }
	df7     = func() drivers.Decoder { return NewDF7Decoder() }
	df8     = func() drivers.Decoder { return NewDF8Decoder() }
	asciiDc = func() drivers.Decoder { return NewASCIIDecoder() }
)

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
