// Package drivertest is what the drivers' tests share: a Sink that records
// everything a decoder reports, a Sink that discards it, and the two ways
// every driver test feeds a decoder (one call, and one byte per call, which
// must give the same result because a serial read can end anywhere).
package drivertest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
)

// FrameCounts counts Frame calls per result, and the dropped bytes. The JSON
// names are the golden files' "frames" object.
type FrameCounts struct {
	OK           int `json:"ok"`
	Checksum     int `json:"checksum"`
	Malformed    int `json:"malformed"`
	InvalidValue int `json:"invalid_value"`
	Dropped      int `json:"dropped"`
}

// Total is the number of Frame calls, whatever their result.
func (c FrameCounts) Total() int { return c.OK + c.Checksum + c.Malformed + c.InvalidValue }

// Recorder is a drivers.Sink that keeps everything a decoder reports, in
// order. The zero value is ready to use.
type Recorder struct {
	Readings []drivers.Reading
	Frames   FrameCounts
	// Events interleaves readings ("r:<metric>") and frames
	// ("f:<result>/<dropped>") in call order, so tests can check that a
	// frame's readings come before its Frame call and what each call said.
	Events []string
}

// Reading records r.
func (s *Recorder) Reading(r drivers.Reading) {
	s.Readings = append(s.Readings, r)
	s.Events = append(s.Events, "r:"+r.Metric.String())
}

// Frame counts one frame and its dropped bytes.
func (s *Recorder) Frame(result drivers.FrameResult, dropped int) {
	switch result {
	case drivers.FrameOK:
		s.Frames.OK++
	case drivers.FrameChecksum:
		s.Frames.Checksum++
	case drivers.FrameMalformed:
		s.Frames.Malformed++
	case drivers.FrameInvalidValue:
		s.Frames.InvalidValue++
	}
	s.Frames.Dropped += dropped
	s.Events = append(s.Events, fmt.Sprintf("f:%s/%d", result, dropped))
}

// Discard is a Sink that keeps nothing, for benchmarks and allocation tests:
// it allocates nothing itself, so whatever they count is the decoder's.
var Discard drivers.Sink = discard{}

type discard struct{}

func (discard) Reading(drivers.Reading)        {}
func (discard) Frame(drivers.FrameResult, int) {}

// FeedAll feeds input to dec in one call read at now, and returns what it
// reported.
func FeedAll(dec drivers.Decoder, input []byte, now time.Time) *Recorder {
	s := &Recorder{}
	dec.Feed(input, now, s)
	return s
}

// FeedByteByByte feeds input to dec one byte per call, every call read at
// now, and returns what it reported.
func FeedByteByByte(dec drivers.Decoder, input []byte, now time.Time) *Recorder {
	s := &Recorder{}
	for i := range input {
		dec.Feed(input[i:i+1], now, s)
	}
	return s
}

// FeedCut feeds input to dec in two calls, cut before input[cut], both read
// at now, and returns what it reported.
func FeedCut(dec drivers.Decoder, input []byte, cut int, now time.Time) *Recorder {
	s := &Recorder{}
	dec.Feed(input[:cut], now, s)
	dec.Feed(input[cut:], now, s)
	return s
}

// Views maps readings to a test's comparable view of them; never nil, so an
// empty result equals a golden file's empty list.
func Views[V any](readings []drivers.Reading, view func(drivers.Reading) V) []V {
	out := make([]V, 0, len(readings))
	for _, r := range readings {
		out = append(out, view(r))
	}
	return out
}

// ReadGolden decodes the golden file at path into into, failing the test
// when the file is missing or has a field into does not (a typo in a golden
// file must not pass as an absent value).
func ReadGolden(t testing.TB, path string, into any) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("every capture needs a golden file: %v", err)
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		t.Fatalf("golden file %s: %v", path, err)
	}
}
