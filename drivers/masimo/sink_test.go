package masimo

import (
	"fmt"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
)

// readingView is the part of a Reading a decoder fills, in a comparable,
// printable form that is also the golden files' JSON shape.
type readingView struct {
	Metric     string   `json:"metric"`
	Value      float64  `json:"value"`
	Valid      bool     `json:"valid"`
	Flags      []string `json:"flags"`
	DeviceTime string   `json:"device_time"`
}

func (v readingView) String() string {
	return fmt.Sprintf("%s=%v valid=%v flags=%v at %s", v.Metric, v.Value, v.Valid, v.Flags, v.DeviceTime)
}

func viewOf(r drivers.Reading) readingView {
	v := readingView{
		Metric:     r.Metric.String(),
		Value:      r.Value,
		Valid:      r.Valid,
		Flags:      r.Flags.Names(),
		DeviceTime: r.DeviceTime.Format(time.RFC3339),
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
	// events interleaves readings ("r") and frames ("f:<result>") so tests
	// can check that a frame's readings come before its Frame call.
	events []string
}

func (s *recordingSink) Reading(r drivers.Reading) {
	s.readings = append(s.readings, r)
	s.events = append(s.events, "r")
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

// discardSink is the benchmarks' and allocation tests' no-op sink.
type discardSink struct{}

func (discardSink) Reading(drivers.Reading)        {}
func (discardSink) Frame(drivers.FrameResult, int) {}

// decodeAll feeds input in one call to a fresh decoder.
func decodeAll(input []byte) *recordingSink {
	s := &recordingSink{}
	NewDecoder().Feed(input, testNow, s)
	return s
}

// decodeByteByByte feeds input one byte per call.
func decodeByteByByte(input []byte) *recordingSink {
	s := &recordingSink{}
	d := NewDecoder()
	for i := range input {
		d.Feed(input[i:i+1], testNow, s)
	}
	return s
}

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
