package masimo

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/vigil-monitor/vigil/drivers"
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
		whole := &recordingSink{}
		d.Feed(data, testNow, whole)
		if cap(d.pending) > MaxLineLen {
			t.Fatalf("line buffer grew to %d", cap(d.pending))
		}

		lineEnds := bytes.Count(data, []byte{'\r'}) + bytes.Count(data, []byte{'\n'})
		frames := whole.frames.OK + whole.frames.Malformed + whole.frames.InvalidValue + whole.frames.Checksum
		if frames > lineEnds {
			t.Fatalf("%d frames from %d line ends", frames, lineEnds)
		}
		if whole.frames.Checksum != 0 {
			t.Fatalf("checksum errors from a protocol without a checksum")
		}
		if most := 3 * (whole.frames.OK + whole.frames.InvalidValue); len(whole.readings) > most {
			t.Fatalf("%d readings from %d good frames", len(whole.readings), most/3)
		}
		for _, r := range whole.readings {
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
		parts := &recordingSink{}
		d = NewDecoder()
		d.Feed(data[:cut], testNow, parts)
		d.Feed(data[cut:], testNow, parts)
		if parts.frames != whole.frames || !reflect.DeepEqual(parts.views(), whole.views()) {
			t.Fatalf("cut at %d: frames %+v readings %v; one call: %+v %v",
				cut, parts.frames, parts.views(), whole.frames, whole.views())
		}
		if len(data) <= 4096 {
			bytewise := decodeByteByByte(data)
			if bytewise.frames != whole.frames || !reflect.DeepEqual(bytewise.views(), whole.views()) {
				t.Fatalf("byte by byte: frames %+v readings %v; one call: %+v %v",
					bytewise.frames, bytewise.views(), whole.frames, whole.views())
			}
		}
	})
}
