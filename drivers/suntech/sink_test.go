package suntech

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
	"github.com/vigil-monitor/vigil/drivers/drivertest"
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

func views(rs []drivers.Reading) []readingView { return drivertest.Views(rs, viewOf) }

func decodeAll(input []byte) *drivertest.Recorder {
	return drivertest.FeedAll(NewDecoder(PatientAdult), input, testNow)
}

func decodeByteByByte(input []byte) *drivertest.Recorder {
	return drivertest.FeedByteByByte(NewDecoder(PatientAdult), input, testNow)
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
