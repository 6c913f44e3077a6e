package nonin

import (
	"reflect"
	"testing"

	"github.com/vigil-monitor/vigil/drivers"
	"github.com/vigil-monitor/vigil/drivers/drivertest"
)

// fuzzDecoder checks, for any bytes: no panic; every reading is a metric of
// the driver; a Valid reading is in range and never carries a
// sensor-absent or out-of-range flag; a Pleth reading has 25 samples within
// the format's range at 75 Hz; the same bytes fed in one call, cut at an
// arbitrary point, or byte by byte give the same readings and frames.
// extra runs format-specific checks on the one-call decoder.
func fuzzDecoder(f *testing.F, newDec func() drivers.Decoder, metrics []drivers.MetricID, plethMax float64,
	extra func(t *testing.T, d drivers.Decoder, s *drivertest.Recorder, data []byte)) {
	f.Fuzz(func(t *testing.T, data []byte, split uint) {
		d := newDec()
		whole := &drivertest.Recorder{}
		d.Feed(data, testNow, whole)
		for _, r := range whole.Readings {
			known := false
			for _, m := range metrics {
				known = known || r.Metric == m
			}
			if !known {
				t.Fatalf("reading of metric %v", r.Metric)
			}
			if r.Valid && !r.Metric.Info().InRange(r.Value) {
				t.Fatalf("Valid reading out of range: %v", viewOf(r))
			}
			if r.Valid && r.Flags&(sensorAbsentFlags|drivers.FlagOutOfRange) != 0 {
				t.Fatalf("Valid reading with flags %v", r.Flags)
			}
			if r.Metric == drivers.Pleth {
				if len(r.Samples) != packetFrames || r.SampleRate != PlethRate {
					t.Fatalf("pleth with %d samples at %v Hz", len(r.Samples), r.SampleRate)
				}
				for _, v := range r.Samples {
					if v < 0 || v > plethMax {
						t.Fatalf("pleth sample %v", v)
					}
				}
			} else if len(r.Samples) > 0 {
				t.Fatalf("samples on %v", r.Metric)
			}
		}
		if most := len(metrics) * (whole.Frames.OK + whole.Frames.InvalidValue); len(whole.Readings) != most {
			t.Fatalf("%d readings from %d good frames", len(whole.Readings), whole.Frames.OK+whole.Frames.InvalidValue)
		}
		if whole.Frames.Dropped > len(data) {
			t.Fatalf("%d bytes dropped of %d", whole.Frames.Dropped, len(data))
		}
		extra(t, d, whole, data)

		cut := int(split % uint(len(data)+1))
		parts := drivertest.FeedCut(newDec(), data, cut, testNow)
		if !reflect.DeepEqual(parts.Events, whole.Events) || !reflect.DeepEqual(views(parts.Readings), views(whole.Readings)) {
			t.Fatalf("cut at %d: %v; one call: %v", cut, parts.Events, whole.Events)
		}
		if len(data) <= 4096 {
			bytewise := decodeByteByByte(newDec, data)
			if !reflect.DeepEqual(bytewise.Events, whole.Events) || !reflect.DeepEqual(views(bytewise.Readings), views(whole.Readings)) {
				t.Fatalf("byte by byte: %v; one call: %v", bytewise.Events, whole.Events)
			}
		}
	})
}

var (
	packetMetrics  = []drivers.MetricID{drivers.SpO2, drivers.PulseRate, drivers.Pleth}
	numericMetrics = []drivers.MetricID{drivers.SpO2, drivers.PulseRate}
)

// packetExtra: no checksum result without a good packet before it, and
// every byte accounted for.
func packetExtra(t *testing.T, d drivers.Decoder, s *drivertest.Recorder, data []byte) {
	checkPacketAccounting(t, d.(*PacketDecoder), s, len(data))
	good := false
	for _, e := range s.Events {
		switch {
		case e == "f:ok/0" || e == "f:invalid_value/0":
			good = true
		case len(e) > 11 && e[:11] == "f:checksum/" && !good:
			t.Fatalf("checksum error before any good packet: %v", s.Events)
		}
	}
}

// FuzzDF2 (seeds in testdata/fuzz/FuzzDF2: the worked packet, damaged
// packets, garbage).
func FuzzDF2(f *testing.F) { fuzzDecoder(f, df2, packetMetrics, 255, packetExtra) }

// FuzzDF7 (seeds in testdata/fuzz/FuzzDF7).
func FuzzDF7(f *testing.F) { fuzzDecoder(f, df7, packetMetrics, 65535, packetExtra) }

// FuzzDF8 (seeds in testdata/fuzz/FuzzDF8): also every byte accounted for.
func FuzzDF8(f *testing.F) {
	fuzzDecoder(f, df8, numericMetrics, 0, func(t *testing.T, dec drivers.Decoder, s *drivertest.Recorder, data []byte) {
		d := dec.(*DF8Decoder)
		if s.Frames.Checksum != 0 {
			t.Fatal("checksum errors from a format without a checksum")
		}
		good := s.Frames.OK + s.Frames.InvalidValue
		if got := good*df8Len + s.Frames.Dropped + d.n + d.run.n; got != len(data) {
			t.Fatalf("%d bytes accounted for of %d", got, len(data))
		}
	})
}

// FuzzASCII (seeds in testdata/fuzz/FuzzASCII): the line buffer stays
// capped, and no more frames than line ends.
func FuzzASCII(f *testing.F) {
	fuzzDecoder(f, asciiDc, numericMetrics, 0, func(t *testing.T, dec drivers.Decoder, s *drivertest.Recorder, data []byte) {
		d := dec.(*ASCIIDecoder)
		if d.lines.BufferCap() > MaxASCIILineLen {
			t.Fatalf("line buffer grew to %d", d.lines.BufferCap())
		}
		ends := 0
		for _, c := range data {
			if c == '\r' || c == '\n' {
				ends++
			}
		}
		if s.Frames.Total() > ends || s.Frames.Checksum != 0 {
			t.Fatalf("frames %+v from %d line ends", s.Frames, ends)
		}
	})
}
