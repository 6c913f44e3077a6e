package suntech

import (
	"bytes"
	"reflect"
	"testing"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
	"github.com/vigil-monitor/vigil/drivers/drivertest"
)

// checkReadings asserts what any reading of this driver must be: one of the
// four NIBP metrics, in groups of four in catalogue order; a Valid one in
// range with no flags; an invalid one flagged (out of range or cuff error).
func checkReadings(t *testing.T, rs []drivers.Reading) {
	t.Helper()
	order := [...]drivers.MetricID{drivers.NIBPSystolic, drivers.NIBPDiastolic, drivers.NIBPMean, drivers.NIBPPulseRate}
	if len(rs)%4 != 0 {
		t.Fatalf("%d readings: not whole results", len(rs))
	}
	for i, r := range rs {
		if r.Metric != order[i%4] {
			t.Fatalf("reading %d is %v, want %v", i, r.Metric, order[i%4])
		}
		if r.Valid && (!r.Metric.Info().InRange(r.Value) || r.Flags != 0) {
			t.Fatalf("Valid reading %v", viewOf(r))
		}
		if !r.Valid && r.Flags&(drivers.FlagOutOfRange|drivers.FlagCuffError) == 0 {
			t.Fatalf("invalid reading without a reason: %v", viewOf(r))
		}
		if len(r.Samples) != 0 {
			t.Fatalf("samples from an NIBP driver")
		}
	}
}

// FuzzDecoder checks, for any module bytes: no panic; readings as
// checkReadings says; the buffer keeps less than one frame; the dropped
// bytes never exceed the input; and the same bytes fed in one call, cut at
// an arbitrary point, or byte by byte give the same frames and readings.
// Seeds are in testdata/fuzz/FuzzDecoder.
func FuzzDecoder(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte, split uint) {
		d := NewDecoder(PatientAdult)
		whole := &drivertest.Recorder{}
		d.Feed(data, testNow, whole)
		if d.n >= maxFrameLen {
			t.Fatalf("%d bytes kept", d.n)
		}
		checkReadings(t, whole.Readings)
		fr := whole.Frames
		if fr.Dropped > len(data) {
			t.Fatalf("dropped %d of %d bytes", fr.Dropped, len(data))
		}
		if good := fr.OK + fr.InvalidValue; len(whole.Readings) > 4*good {
			t.Fatalf("%d readings from %d frames", len(whole.Readings), good)
		}

		cut := int(split % uint(len(data)+1))
		parts := drivertest.FeedCut(NewDecoder(PatientAdult), data, cut, testNow)
		if parts.Frames != whole.Frames || !reflect.DeepEqual(parts.Events, whole.Events) || !reflect.DeepEqual(views(parts.Readings), views(whole.Readings)) {
			t.Fatalf("cut at %d: %+v %v; one call: %+v %v", cut, parts.Frames, views(parts.Readings), whole.Frames, views(whole.Readings))
		}
		if len(data) <= 4096 {
			b := decodeByteByByte(data)
			if b.Frames != whole.Frames || !reflect.DeepEqual(views(b.Readings), views(whole.Readings)) {
				t.Fatalf("byte by byte: %+v %v; one call: %+v %v", b.Frames, views(b.Readings), whole.Frames, views(whole.Readings))
			}
		}
	})
}

// FuzzConversation drives a decoder with an arbitrary script of ticks,
// commands and module bytes. Whatever happens: no panic; readings as
// checkReadings says; a start is written only while idle; and once
// commands stop, ticking brings the decoder back to idle within
// MaxMeasurement. Seeds are in testdata/fuzz/FuzzConversation.
func FuzzConversation(f *testing.F) {
	f.Fuzz(func(t *testing.T, script []byte, replies []byte) {
		d := NewDecoder(PatientAdult)
		s := &drivertest.Recorder{}
		now := testNow
		var w bytes.Buffer
		startCmd := AppendStart(nil, PatientAdult)
		for i, op := range script {
			w.Reset()
			switch op % 8 {
			case 0, 1, 2:
				now = now.Add(time.Duration(op>>3) * 100 * time.Millisecond)
				if err := d.Tick(&w, now); err != nil {
					t.Fatal(err)
				}
				if bytes.Contains(w.Bytes(), startCmd) && d.Phase() != PhaseStarting {
					t.Fatalf("start resent in phase %v", d.Phase())
				}
			case 3:
				was := d.Phase()
				err := d.Command(CommandStart, &w, now)
				if (was == PhaseIdle) != (err == nil) {
					t.Fatalf("start in phase %v: %v", was, err)
				}
				if err != nil && w.Len() != 0 {
					t.Fatalf("refused start wrote % X", w.Bytes())
				}
			case 4:
				if err := d.Command(CommandAbort, &w, now); err != nil {
					t.Fatal(err)
				}
			default:
				// Feed the next few reply bytes, or a well-formed reply.
				n := int(op>>3) % 8
				if n > len(replies) {
					n = len(replies)
				}
				chunk := replies[:n]
				replies = replies[n:]
				switch op >> 6 {
				case 1:
					chunk = AppendStatusReply(chunk[:n:n], "OKABESDT"[i%8])
				case 2:
					chunk = AppendResultReply(chunk[:n:n], Result{Systolic: 120, Diastolic: 80, Mean: 93, HeartRate: 70, ErrorCode: uint8(i % 3)})
				}
				d.Feed(chunk, now, s)
			}
		}
		for end := now.Add(MaxMeasurement + time.Minute); d.Phase() != PhaseIdle; {
			if now.After(end) {
				t.Fatalf("still %v long after commands stopped", d.Phase())
			}
			now = now.Add(PollEvery)
			w.Reset()
			if err := d.Advance(&w, now, s); err != nil {
				t.Fatal(err)
			}
		}
		checkReadings(t, s.Readings)
	})
}
