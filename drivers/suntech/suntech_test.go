package suntech

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
)

func TestRegistered(t *testing.T) {
	d, ok := drivers.Lookup("suntech-advantage")
	if !ok {
		t.Fatalf("suntech-advantage not registered; have %v", drivers.Names())
	}
	if want := (drivers.Link{Baud: 9600, DataBits: 8, Parity: "none", StopBits: "1"}); d.Link != want {
		t.Errorf("Link = %+v, want %+v (protocols.md 4.1)", d.Link, want)
	}
	want := []drivers.MetricID{drivers.NIBPSystolic, drivers.NIBPDiastolic, drivers.NIBPMean, drivers.NIBPPulseRate, drivers.NIBPCuffPressure}
	if !reflect.DeepEqual(d.Metrics, want) {
		t.Errorf("Metrics = %v", d.Metrics)
	}
	if d.SilentAfter != 15*time.Second {
		t.Errorf("SilentAfter = %v", d.SilentAfter)
	}
	if len(d.USBIDs) != 0 || d.Description == "" || d.Validate == nil || d.NewEncoder == nil {
		t.Errorf("incomplete registration: %+v", d)
	}
	dec, err := d.NewDecoder(nil)
	if err != nil {
		t.Fatal(err)
	}
	cmd, ok := dec.(drivers.Commander)
	if !ok {
		t.Fatal("decoder is not a Commander")
	}
	var w bytes.Buffer
	if err := cmd.Command("nibp_start", &w, testNow); err != nil || hexOf(w.Bytes()) != "3A20A6" {
		t.Fatalf("default start: %v % X", err, w.Bytes())
	}
	enc, err := d.NewEncoder(drivers.Options{"patient": "adult"})
	if err != nil || enc.Interval() != 10*time.Second {
		t.Fatalf("NewEncoder: %v", err)
	}
}

func TestPatientOption(t *testing.T) {
	d, _ := drivers.Lookup(Name)
	for value, want := range map[string]string{"adult": "3A20A6", "pediatric": "3A873F", " Neonatal ": "3A289E"} {
		dec, err := d.NewDecoder(drivers.Options{"patient": value})
		if err != nil {
			t.Fatalf("%q: %v", value, err)
		}
		var w bytes.Buffer
		if err := dec.(drivers.Commander).Command(CommandStart, &w, testNow); err != nil || hexOf(w.Bytes()) != want {
			t.Errorf("%q: start % X, %v", value, w.Bytes(), err)
		}
	}
}

func TestOptionsRejected(t *testing.T) {
	d, _ := drivers.Lookup(Name)
	for _, tt := range []struct {
		opts drivers.Options
		key  string
		text string
	}{
		{drivers.Options{"protocol": "x"}, "protocol", "unknown option"},
		{drivers.Options{"patient": "child"}, "patient", "adult, pediatric, neonatal"},
		{drivers.Options{"patient": 3}, "patient", "is 3"},
		{drivers.Options{"patient": "adult", "baud": 9600}, "baud", "serial settings"},
	} {
		for name, err := range map[string]error{
			"Validate":   d.Validate(tt.opts),
			"NewDecoder": func() error { _, err := d.NewDecoder(tt.opts); return err }(),
			"NewEncoder": func() error { _, err := d.NewEncoder(tt.opts); return err }(),
		} {
			var oe *OptionError
			if !errors.As(err, &oe) || oe.Key != tt.key {
				t.Fatalf("%s(%v): %v, want *OptionError for %q", name, tt.opts, err, tt.key)
			}
			if msg := err.Error(); !strings.Contains(msg, tt.text) || !strings.Contains(msg, Name) || !strings.Contains(msg, `"`+tt.key+`"`) {
				t.Errorf("%s(%v): message %q", name, tt.opts, msg)
			}
		}
	}
	if err := d.Validate(nil); err != nil {
		t.Fatalf("Validate(nil) = %v", err)
	}
}
