package masimo

import (
	"fmt"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
	"github.com/vigil-monitor/vigil/drivers/drivertest"
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

func views(rs []drivers.Reading) []readingView { return drivertest.Views(rs, viewOf) }

// decodeAll feeds input in one call to a fresh decoder.
func decodeAll(input []byte) *drivertest.Recorder {
	return drivertest.FeedAll(NewDecoder(), input, testNow)
}

// decodeByteByByte feeds input one byte per call.
func decodeByteByByte(input []byte) *drivertest.Recorder {
	return drivertest.FeedByteByByte(NewDecoder(), input, testNow)
}

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
