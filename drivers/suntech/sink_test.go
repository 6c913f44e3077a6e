package suntech

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
)

// readingView is the part of a Reading this decoder fills, comparable and
// printable; also the golden files' JSON shape. The module has no clock, so
// there is no device time.
type readingView struct {
	Metric string   `json:"metric"`
	Value  float64  `json:"value"`
	Valid  bool     `json:"valid"`
	Flags  []string `json:"flags"`
}

func (v readingView) String() string {
	return fmt.Sprintf("%s=%v valid=%v flags=%v", v.Metric, v.Value, v.Valid, v.Flags)
}

func viewOf(r drivers.Reading) readingView {
	v := readingView{Metric: r.Metric.String(), Value: r.Value, Valid: r.Valid, Flags: r.Flags.Names()}
	if v.Flags == nil {
		v.Flags = []string{}
	}
	return v
}

func rv(m drivers.MetricID, value float64, valid bool, flags ...string) readingView {
	if flags == nil {
		flags = []string{}
	}
	return readingView{Metric: m.String(), Value: value, Valid: valid, Flags: flags}
}

// goodResult is the ak-git worked example's readings.
var goodResult = []readingView{
	rv(drivers.NIBPSystolic, 115, true),
	rv(drivers.NIBPDiastolic, 74, true),
	rv(drivers.NIBPMean, 88, true),
	rv(drivers.NIBPPulseRate, 85, true),
}

// failedResult is what every failed measurement gives.
var failedResult = []readingView{
	rv(drivers.NIBPSystolic, 0, false, "cuff-error"),
	rv(drivers.NIBPDiastolic, 0, false, "cuff-error"),
	rv(drivers.NIBPMean, 0, false, "cuff-error"),
	rv(drivers.NIBPPulseRate, 0, false, "cuff-error"),
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
	events   []string // "r" per reading, "f:<result>" per frame
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

func decodeAll(input []byte) *recordingSink {
	s := &recordingSink{}
	NewDecoder(PatientAdult).Feed(input, testNow, s)
	return s
}

func decodeByteByByte(input []byte) *recordingSink {
	s := &recordingSink{}
	d := NewDecoder(PatientAdult)
	for i := range input {
		d.Feed(input[i:i+1], testNow, s)
	}
	return s
}

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// hexBytes parses "3E 05 02 01 BA" style text: hex byte pairs separated by
// white space, '#' starting a comment to the end of the line.
func hexBytes(t testing.TB, text string) []byte {
	t.Helper()
	var b strings.Builder
	for _, line := range strings.Split(text, "\n") {
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		b.WriteString(strings.Join(strings.Fields(line), ""))
	}
	out, err := hex.DecodeString(b.String())
	if err != nil {
		t.Fatalf("bad hex %q: %v", text, err)
	}
	return out
}

func hexOf(p []byte) string { return strings.ToUpper(hex.EncodeToString(p)) }

// cat joins byte slices.
func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
