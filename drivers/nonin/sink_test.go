package nonin

import (
	"fmt"
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

func views(rs []drivers.Reading) []readingView { return drivertest.Views(rs, viewOf) }

// decodeAll feeds input in one call to the decoder newDec makes.
func decodeAll(newDec func() drivers.Decoder, input []byte) *drivertest.Recorder {
	return drivertest.FeedAll(newDec(), input, testNow)
}

// decodeByteByByte feeds input one byte per call.
func decodeByteByByte(newDec func() drivers.Decoder, input []byte) *drivertest.Recorder {
	return drivertest.FeedByteByByte(newDec(), input, testNow)
}

// The four decoders, as the tests make them.
var (
	df2     = func() drivers.Decoder { return NewDF2Decoder() }
	df7     = func() drivers.Decoder { return NewDF7Decoder() }
	df8     = func() drivers.Decoder { return NewDF8Decoder() }
	asciiDc = func() drivers.Decoder { return NewASCIIDecoder() }
)

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
