package contec

import (
	"bytes"
	"reflect"
	"testing"

	"github.com/vigil-monitor/vigil/drivers"
	"github.com/vigil-monitor/vigil/drivers/drivertest"
)

// FuzzDecoder checks, for any bytes and any protocol (protocol%3: auto,
// legacy, v46): no panic; only this driver's metrics; every Valid reading
// in range and without an invalidating or out-of-range flag; pleth batches
// of 1-60 samples of 0-127 at 60 Hz; no more frames than the bytes allow
// and no more bytes dropped than fed; the probe buffer capped; Start and
// Tick write only the documented commands; and the same readings and
// frame counts whether fed at once, cut at one point, or byte by byte.
// Seeds are in testdata/fuzz/FuzzDecoder.
func FuzzDecoder(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, split uint, protocol uint8) {
		p := Protocol(protocol % 3)
		d := NewDecoder(p)
		whole := &drivertest.Recorder{}
		d.Feed(data, testNow, whole)
		if cap(d.probe.buf) > probeCap {
			t.Fatalf("probe buffer grew to %d", cap(d.probe.buf))
		}

		fr := whole.Frames
		if fr.Checksum != 0 {
			t.Fatalf("checksum errors from a protocol without a checksum")
		}
		if fr.Dropped > len(data) {
			t.Fatalf("%d bytes dropped of %d", fr.Dropped, len(data))
		}
		if good := fr.OK + fr.InvalidValue; good > len(data)/2 {
			t.Fatalf("%d good frames from %d bytes", good, len(data))
		}
		numerics := 0
		for _, r := range whole.Readings {
			switch r.Metric {
			case drivers.SpO2, drivers.PulseRate:
				numerics++
				if len(r.Samples) != 0 {
					t.Fatalf("numeric reading with samples: %v", viewOf(r))
				}
				if r.Valid && (!r.Metric.Info().InRange(r.Value) || r.Flags&(invalidatingFlags|drivers.FlagOutOfRange) != 0) {
					t.Fatalf("bad Valid reading: %v", viewOf(r))
				}
				if !r.Valid && r.Value != 0 && r.Flags&(invalidatingFlags|drivers.FlagOutOfRange) == 0 {
					t.Fatalf("number %v not Valid without a reason: %v", r.Value, viewOf(r))
				}
			case drivers.Pleth:
				if r.Valid || r.SampleRate != SampleRate || len(r.Samples) == 0 || len(r.Samples) > PlethBatch {
					t.Fatalf("bad pleth batch: %v", viewOf(r))
				}
				for _, v := range r.Samples {
					if v < 0 || v > 127 || v != float64(int(v)) {
						t.Fatalf("pleth sample %v", v)
					}
				}
			default:
				t.Fatalf("reading of metric %v", r.Metric)
			}
		}
		if numerics%2 != 0 || numerics > 2*(fr.OK+fr.InvalidValue) {
			t.Fatalf("%d numeric readings from %d good frames", numerics, fr.OK+fr.InvalidValue)
		}

		var w bytes.Buffer
		if err := d.Tick(&w, testNow); err != nil {
			t.Fatal(err)
		}
		if w.Len() != 0 && !bytes.Equal(w.Bytes(), wantTick) {
			t.Fatalf("Tick wrote % X", w.Bytes())
		}
		if w.Len() == 0 && d.Protocol() != ProtocolLegacy {
			t.Fatalf("no keep-alive for %v", d.Protocol())
		}

		cut := int(split % uint(len(data)+1))
		parts := drivertest.FeedCut(NewDecoder(p), data, cut, testNow)
		if parts.Frames != whole.Frames || !reflect.DeepEqual(views(parts.Readings), views(whole.Readings)) {
			t.Fatalf("cut at %d: frames %+v; one call: %+v", cut, parts.Frames, whole.Frames)
		}
		if len(data) <= 4096 {
			bytewise := decodeByteByByte(p, data)
			if bytewise.Frames != whole.Frames || !reflect.DeepEqual(views(bytewise.Readings), views(whole.Readings)) {
				t.Fatalf("byte by byte: frames %+v; one call: %+v", bytewise.Frames, whole.Frames)
			}
		}
	})
}
