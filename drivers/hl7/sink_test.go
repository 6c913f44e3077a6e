package hl7

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/vigil-monitor/vigil/drivers"
	"github.com/vigil-monitor/vigil/drivers/drivertest"
)

func TestMain(m *testing.M) {
	// The package starts no goroutine; goleak keeps it that way.
	goleak.VerifyTestMain(m)
}

// readingView is the part of a Reading a decoder fills, comparable and
// printable; also the golden files' JSON shape.
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
		DeviceTime: r.DeviceTime.Format(time.RFC3339Nano),
	}
	if r.DeviceTime.IsZero() {
		v.DeviceTime = ""
	}
	if v.Flags == nil {
		v.Flags = []string{}
	}
	return v
}

func views(rs []drivers.Reading) []readingView { return drivertest.Views(rs, viewOf) }

func rv(m drivers.MetricID, value float64, valid bool, when string, flags ...string) readingView {
	if flags == nil {
		flags = []string{}
	}
	return readingView{Metric: m.String(), Value: value, Valid: valid, Flags: flags, DeviceTime: when}
}

// decodeAll feeds input in one call to a fresh decoder accepting any sender.
func decodeAll(input []byte) *drivertest.Recorder {
	return drivertest.FeedAll(NewDecoder(Config{}), input, testNow)
}

// decodeByteByByte feeds input one byte per call.
func decodeByteByByte(input []byte) *drivertest.Recorder {
	return drivertest.FeedByteByByte(NewDecoder(Config{}), input, testNow)
}

// result is one FeedMessages callback.
type result struct {
	msg *Message
	err error
}

func feedMessages(input []byte) []result {
	var out []result
	NewDecoder(Config{}).FeedMessages(input, testNow, func(m *Message, err error) {
		out = append(out, result{m, err})
	})
	return out
}

// mllp frames an HL7 message given with "\n" or "\r" between segments.
func mllp(msg string) []byte {
	msg = strings.ReplaceAll(msg, "\n", "\r")
	if !strings.HasSuffix(msg, "\r") {
		msg += "\r"
	}
	return append(append([]byte{startBlock}, msg...), endBlock, carriageRet)
}

var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
