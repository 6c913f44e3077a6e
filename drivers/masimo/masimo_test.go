package masimo

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
	"github.com/vigil-monitor/vigil/drivers/drivertest"
)

func TestRegistered(t *testing.T) {
	d, ok := drivers.Lookup("masimo-ascii")
	if !ok {
		t.Fatalf("masimo-ascii not registered; have %v", drivers.Names())
	}
	if want := (drivers.Link{Baud: 9600, DataBits: 8, Parity: "none", StopBits: "1"}); d.Link != want {
		t.Errorf("Link = %+v, want %+v (protocols.md 2.1)", d.Link, want)
	}
	if want := []drivers.MetricID{drivers.SpO2, drivers.PulseRate, drivers.PerfusionIndex}; !reflect.DeepEqual(d.Metrics, want) {
		t.Errorf("Metrics = %v, want %v", d.Metrics, want)
	}
	if d.SilentAfter != 5*time.Second {
		t.Errorf("SilentAfter = %v, want 5s", d.SilentAfter)
	}
	if len(d.USBIDs) != 0 {
		t.Errorf("USBIDs = %v: the device has no USB function (protocols.md 7.4)", d.USBIDs)
	}
	if d.Description == "" || d.Validate == nil || d.NewEncoder == nil {
		t.Errorf("incomplete registration: %+v", d)
	}

	dec, err := d.NewDecoder(nil)
	if err != nil {
		t.Fatalf("NewDecoder(nil): %v", err)
	}
	s := &drivertest.Recorder{}
	dec.Feed([]byte(rad8Line+"\r\n"), testNow, s)
	if s.Frames != (drivertest.FrameCounts{OK: 1}) || len(s.Readings) != 3 {
		t.Fatalf("registered decoder: frames %+v readings %v", s.Frames, views(s.Readings))
	}

	enc, err := d.NewEncoder(drivers.Options{})
	if err != nil {
		t.Fatalf("NewEncoder: %v", err)
	}
	if enc.Interval() != time.Second {
		t.Errorf("encoder Interval = %v", enc.Interval())
	}
}

func TestOptionsRejected(t *testing.T) {
	d, _ := drivers.Lookup(Name)
	if err := d.Validate(nil); err != nil {
		t.Fatalf("Validate(nil) = %v", err)
	}
	if err := d.Validate(drivers.Options{}); err != nil {
		t.Fatalf("Validate(empty) = %v", err)
	}
	opts := drivers.Options{"protocol": "ascii2", "nibp": true}
	for name, err := range map[string]error{
		"Validate":   d.Validate(opts),
		"NewDecoder": func() error { _, err := d.NewDecoder(opts); return err }(),
		"NewEncoder": func() error { _, err := d.NewEncoder(opts); return err }(),
	} {
		var oe *OptionError
		if !errors.As(err, &oe) {
			t.Fatalf("%s: error %v (%T), want *OptionError", name, err, err)
		}
		if !reflect.DeepEqual(oe.Keys, []string{"nibp", "protocol"}) {
			t.Errorf("%s: Keys = %v", name, oe.Keys)
		}
		msg := err.Error()
		for _, want := range []string{"masimo-ascii", `"nibp"`, `"protocol"`, "no driver options"} {
			if !strings.Contains(msg, want) {
				t.Errorf("%s: message %q lacks %q", name, msg, want)
			}
		}
	}
}
