package hl7

import (
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
	"github.com/vigil-monitor/vigil/drivers/drivertest"
)

var goodOptions = drivers.Options{"listen": "0.0.0.0:2575", "sender": "KC261551373G"}

func TestRegistered(t *testing.T) {
	d, ok := drivers.Lookup(Name)
	if !ok || Name != "hl7-mllp" {
		t.Fatalf("hl7-mllp not registered; have %v", drivers.Names())
	}
	if d.Link != (drivers.Link{}) {
		t.Errorf("Link = %+v: a TCP device has no serial settings", d.Link)
	}
	want := []drivers.MetricID{drivers.SpO2, drivers.PulseRate, drivers.PerfusionIndex,
		drivers.NIBPSystolic, drivers.NIBPDiastolic, drivers.NIBPMean, drivers.NIBPPulseRate, drivers.RespirationRate}
	if !reflect.DeepEqual(d.Metrics, want) {
		t.Errorf("Metrics = %v, want %v", d.Metrics, want)
	}
	if d.SilentAfter != 30*time.Second || len(d.USBIDs) != 0 || d.Description == "" || d.Validate == nil || d.NewEncoder == nil {
		t.Errorf("incomplete registration: %+v", d)
	}

	dec, err := d.NewDecoder(goodOptions)
	if err != nil {
		t.Fatalf("NewDecoder: %v", err)
	}
	s := &drivertest.Recorder{}
	dec.Feed(mllp(comenExample), testNow, s)
	if s.Frames != (drivertest.FrameCounts{OK: 1}) || len(s.Readings) != 6 {
		t.Fatalf("registered decoder: %+v %v", s.Frames, views(s.Readings))
	}
	// It checks the configured sender and queues ACKs.
	hd, ok := dec.(*Decoder)
	if !ok {
		t.Fatalf("decoder is %T", dec)
	}
	if replies := string(hd.TakeReplies(nil)); !strings.Contains(replies, "MSA|AA|202506100151270003") {
		t.Fatalf("replies %q", replies)
	}
	other, _ := d.NewDecoder(drivers.Options{"listen": ":2575", "sender": "SOMEONE-ELSE"})
	s = &drivertest.Recorder{}
	other.Feed(mllp(comenExample), testNow, s)
	if s.Frames.Malformed != 1 || len(s.Readings) != 0 {
		t.Fatalf("other sender accepted: %+v", s.Frames)
	}

	enc, err := d.NewEncoder(goodOptions)
	if err != nil {
		t.Fatalf("NewEncoder: %v", err)
	}
	if enc.Interval() != time.Second {
		t.Errorf("Interval = %v", enc.Interval())
	}
	out := enc.Encode(nil, drivers.Frame{Time: testNow, Values: map[drivers.MetricID]float64{drivers.SpO2: 96}})
	s = &drivertest.Recorder{}
	dec.Feed(out, testNow, s)
	if len(s.Readings) != 2 || s.Readings[0].Value != 96 {
		t.Fatalf("registry encoder to registry decoder: %v %+v", views(s.Readings), s.Frames)
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name string
		opts drivers.Options
		want []string // one entry per expected problem: the option name and a fragment
	}{
		{"good", goodOptions, nil},
		{"all interfaces, IPv6, host name", drivers.Options{"listen": ":2575", "sender": "x"}, nil},
		{"IPv6", drivers.Options{"listen": "[::1]:5000", "sender": "x"}, nil},
		{"host name", drivers.Options{"listen": "vigil-box.local:5000", "sender": "x"}, nil},
		{"nothing", nil, []string{`"listen": is required`, `"sender": is required`}},
		{"no sender", drivers.Options{"listen": ":2575"}, []string{`"sender": is required`}},
		{"empty sender", drivers.Options{"listen": ":2575", "sender": ""}, []string{`"sender": must not be empty`}},
		{"sender number", drivers.Options{"listen": ":2575", "sender": 1234}, []string{`"sender": must be a string, not int`}},
		{"sender spaces", drivers.Options{"listen": ":2575", "sender": " bed7"}, []string{`"sender": has leading or trailing spaces`}},
		{"sender control", drivers.Options{"listen": ":2575", "sender": "bed\t7"}, []string{`"sender": contains control characters`}},
		{"sender long", drivers.Options{"listen": ":2575", "sender": strings.Repeat("x", 200)}, []string{`"sender": is 200 bytes long`}},
		{"listen port only number", drivers.Options{"listen": 2575, "sender": "x"}, []string{`"listen": must be a host:port string`}},
		{"listen no port", drivers.Options{"listen": "0.0.0.0", "sender": "x"}, []string{`"listen": "0.0.0.0" is not host:port`}},
		{"listen port 0", drivers.Options{"listen": ":0", "sender": "x"}, []string{`"listen": port "0" must be a number from 1 to 65535`}},
		{"listen named port", drivers.Options{"listen": ":hl7", "sender": "x"}, []string{`port "hl7" must be a number`}},
		{"listen port too big", drivers.Options{"listen": ":70000", "sender": "x"}, []string{`port "70000"`}},
		{"listen bad host", drivers.Options{"listen": "a_b:2575", "sender": "x"}, []string{`host "a_b" is neither`}},
		{"unknown keys", drivers.Options{"listen": ":2575", "sender": "x", "port": "/dev/x", "baud": 9600},
			[]string{`"baud": unknown option; hl7-mllp takes listen and sender`, `"port": unknown option`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Validate(tt.opts)
			var problems []error
			if err != nil {
				problems = err.(interface{ Unwrap() []error }).Unwrap()
			}
			if len(problems) != len(tt.want) {
				t.Fatalf("problems %v, want %d", problems, len(tt.want))
			}
			for i, p := range problems {
				var oe *OptionError
				if !errors.As(p, &oe) || !strings.HasPrefix(p.Error(), "hl7-mllp option ") || !strings.Contains(p.Error(), tt.want[i]) {
					t.Errorf("problem %q, want an *OptionError containing %q", p, tt.want[i])
				}
			}
			d, _ := drivers.Lookup(Name)
			_, decErr := d.NewDecoder(tt.opts)
			_, encErr := d.NewEncoder(tt.opts)
			if (decErr == nil) != (err == nil) || (encErr == nil) != (err == nil) {
				t.Errorf("NewDecoder %v / NewEncoder %v disagree with Validate %v", decErr, encErr, err)
			}
		})
	}
}
