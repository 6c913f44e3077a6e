package drivertest

import (
	"reflect"
	"testing"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
)

// digitLines is a decoder small enough to check the helpers against: each
// line of one digit is an SpO2 reading of that value; any other line is
// malformed and its bytes dropped. It remembers every Feed's time.
type digitLines struct {
	line  []byte
	times []time.Time
}

func (d *digitLines) Feed(p []byte, now time.Time, sink drivers.Sink) {
	d.times = append(d.times, now)
	for _, b := range p {
		if b != '\n' {
			d.line = append(d.line, b)
			continue
		}
		if len(d.line) == 1 && d.line[0] >= '0' && d.line[0] <= '9' {
			sink.Reading(drivers.Reading{Metric: drivers.SpO2, Value: float64(d.line[0] - '0'), Valid: true, Received: now})
			sink.Frame(drivers.FrameOK, 0)
		} else {
			sink.Frame(drivers.FrameMalformed, len(d.line))
		}
		d.line = d.line[:0]
	}
}

var now = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestFeedWaysAgree(t *testing.T) {
	input := []byte("7\nxyz\n9\n")
	wantEvents := []string{"r:spo2", "f:ok/0", "f:malformed/3", "r:spo2", "f:ok/0"}
	wantFrames := FrameCounts{OK: 2, Malformed: 1, Dropped: 3}
	value := func(r drivers.Reading) float64 { return r.Value }

	whole := &digitLines{}
	bytewise := &digitLines{}
	cut := &digitLines{}
	for name, s := range map[string]*Recorder{
		"all":          FeedAll(whole, input, now),
		"byte by byte": FeedByteByByte(bytewise, input, now),
		"cut":          FeedCut(cut, input, 3, now),
	} {
		if !reflect.DeepEqual(s.Events, wantEvents) {
			t.Errorf("%s: events %v, want %v", name, s.Events, wantEvents)
		}
		if s.Frames != wantFrames || s.Frames.Total() != 3 {
			t.Errorf("%s: frames %+v (total %d), want %+v", name, s.Frames, s.Frames.Total(), wantFrames)
		}
		if got := Views(s.Readings, value); !reflect.DeepEqual(got, []float64{7, 9}) {
			t.Errorf("%s: values %v", name, got)
		}
	}
	// Every call gets the same time, and the calls are as many as promised.
	for name, tt := range map[string]struct {
		d     *digitLines
		calls int
	}{"all": {whole, 1}, "byte by byte": {bytewise, len(input)}, "cut": {cut, 2}} {
		if len(tt.d.times) != tt.calls {
			t.Errorf("%s: %d Feed calls, want %d", name, len(tt.d.times), tt.calls)
		}
		for _, at := range tt.d.times {
			if !at.Equal(now) {
				t.Errorf("%s: fed at %v, want %v", name, at, now)
			}
		}
	}
}

func TestFrameCountsEveryResult(t *testing.T) {
	s := &Recorder{}
	for i, r := range drivers.FrameResults() {
		s.Frame(r, i)
	}
	want := FrameCounts{OK: 1, Checksum: 1, Malformed: 1, InvalidValue: 1, Dropped: 0 + 1 + 2 + 3}
	if s.Frames != want || s.Frames.Total() != 4 {
		t.Fatalf("frames %+v, want %+v", s.Frames, want)
	}
	wantEvents := []string{"f:ok/0", "f:checksum/1", "f:malformed/2", "f:invalid_value/3"}
	if !reflect.DeepEqual(s.Events, wantEvents) {
		t.Fatalf("events %v, want %v", s.Events, wantEvents)
	}
}

func TestViewsNeverNil(t *testing.T) {
	if got := Views(nil, func(drivers.Reading) int { return 0 }); got == nil || len(got) != 0 {
		t.Fatalf("Views(nil) = %#v, want an empty non-nil slice", got)
	}
}

func TestDiscardAllocatesNothing(t *testing.T) {
	r := drivers.Reading{Metric: drivers.SpO2, Value: 97, Valid: true}
	if n := testing.AllocsPerRun(100, func() {
		Discard.Reading(r)
		Discard.Frame(drivers.FrameOK, 0)
	}); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}
