package masimo

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/vigil-monitor/vigil/drivers"
	"github.com/vigil-monitor/vigil/drivers/drivertest"
)

// FuzzDecoder checks, for any bytes: no panic; every Valid reading is a
// known metric of this driver and in its catalogue range, and never comes
// with a no-sensor/sensor-off/fault flag; the line buffer stays capped; and
// the same bytes fed in one call, cut at an arbitrary point, or byte by
// byte give the same readings and frame counts. Seeds are in
// testdata/fuzz/FuzzDecoder (the worked examples and some garbage).
func FuzzDecoder(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, split uint) {
		d := NewDecoder()
		whole := &drivertest.Recorder{}
		d.Feed(data, testNow, whole)
		if d.lines.BufferCap() > MaxLineLen {
			t.Fatalf("line buffer grew to %d", d.lines.BufferCap())
		}

		lineEnds := bytes.Count(data, []byte{'\r'}) + bytes.Count(data, []byte{'\n'})
		frames := whole.Frames.OK + whole.Frames.Malformed + whole.Frames.InvalidValue + whole.Frames.Checksum
		if frames > lineEnds {
			t.Fatalf("%d frames from %d line ends", frames, lineEnds)
		}
		if whole.Frames.Checksum != 0 {
			t.Fatalf("checksum errors from a protocol without a checksum")
		}
		if most := 3 * (whole.Frames.OK + whole.Frames.InvalidValue); len(whole.Readings) > most {
			t.Fatalf("%d readings from %d good frames", len(whole.Readings), most/3)
		}
		for _, r := range whole.Readings {
			switch r.Metric {
			case drivers.SpO2, drivers.PulseRate, drivers.PerfusionIndex:
			default:
				t.Fatalf("reading of metric %v", r.Metric)
			}
			if r.Valid && !r.Metric.Info().InRange(r.Value) {
				t.Fatalf("Valid reading out of range: %v", viewOf(r))
			}
			if r.Valid && r.Flags&(sensorAbsentFlags|drivers.FlagOutOfRange) != 0 {
				t.Fatalf("Valid reading with flags %v", r.Flags)
			}
		}

		cut := int(split % uint(len(data)+1))
		parts := drivertest.FeedCut(NewDecoder(), data, cut, testNow)
		if parts.Frames != whole.Frames || !reflect.DeepEqual(views(parts.Readings), views(whole.Readings)) {
			t.Fatalf("cut at %d: frames %+v readings %v; one call: %+v %v",
				cut, parts.Frames, views(parts.Readings), whole.Frames, views(whole.Readings))
		}
		if len(data) <= 4096 {
			bytewise := decodeByteByByte(data)
			if bytewise.Frames != whole.Frames || !reflect.DeepEqual(views(bytewise.Readings), views(whole.Readings)) {
				t.Fatalf("byte by byte: frames %+v readings %v; one call: %+v %v",
					bytewise.Frames, views(bytewise.Readings), whole.Frames, views(whole.Readings))
			}
		}
	})
}
