package nonin

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
	"github.com/vigil-monitor/vigil/drivers/drivertest"
)

func TestRegistered(t *testing.T) {
	link := drivers.Link{Baud: 9600, DataBits: 8, Parity: "none", StopBits: "1"}
	withPleth := []drivers.MetricID{drivers.SpO2, drivers.PulseRate, drivers.Pleth}
	numerics := []drivers.MetricID{drivers.SpO2, drivers.PulseRate}
	tests := []struct {
		name     string
		metrics  []drivers.MetricID
		silent   time.Duration
		interval time.Duration
		sample   []byte // one unit of the device's output
		readings int
	}{
		{NameDF2, withPleth, 3 * time.Second, time.Second / 3, pufferfishPacket, 3},
		{NameDF7, withPleth, 3 * time.Second, time.Second / 3, newTestPacket(97, 72).bytes(true), 3},
		{NameDF8, numerics, 5 * time.Second, time.Second, df8Normal, 2},
		{NameASCII, numerics, 5 * time.Second, time.Second, []byte(asciiWorked + "\r\n"), 2},
	}
	for _, tt := range tests {
		d, ok := drivers.Lookup(tt.name)
		if !ok {
			t.Fatalf("%s not registered; have %v", tt.name, drivers.Names())
		}
		if d.Link != link {
			t.Errorf("%s: Link = %+v, want %+v (protocols.md 1.1, 1.6)", tt.name, d.Link, link)
		}
		if !reflect.DeepEqual(d.Metrics, tt.metrics) {
			t.Errorf("%s: Metrics = %v", tt.name, d.Metrics)
		}
		if d.SilentAfter != tt.silent {
			t.Errorf("%s: SilentAfter = %v", tt.name, d.SilentAfter)
		}
		if len(d.USBIDs) != 0 {
			t.Errorf("%s: USBIDs = %v: protocols.md 1.1 confirms no VID:PID", tt.name, d.USBIDs)
		}
		if d.Description == "" || d.Validate == nil || d.NewEncoder == nil {
			t.Errorf("%s: incomplete registration", tt.name)
		}
		dec, err := d.NewDecoder(nil)
		if err != nil {
			t.Fatalf("%s: NewDecoder(nil): %v", tt.name, err)
		}
		if _, talks := dec.(drivers.Conversation); talks {
			t.Errorf("%s: a decoder without set_format must not talk to the device", tt.name)
		}
		s := &drivertest.Recorder{}
		dec.Feed(tt.sample, testNow, s)
		if s.Frames != (drivertest.FrameCounts{OK: 1}) || len(s.Readings) != tt.readings {
			t.Errorf("%s: frames %+v readings %v", tt.name, s.Frames, views(s.Readings))
		}
		enc, err := d.NewEncoder(drivers.Options{})
		if err != nil {
			t.Fatalf("%s: NewEncoder: %v", tt.name, err)
		}
		if enc.Interval() != tt.interval {
			t.Errorf("%s: Interval = %v, want %v", tt.name, enc.Interval(), tt.interval)
		}
		// The registered encoder's output decodes with the registered decoder.
		s = &drivertest.Recorder{}
		dec, _ = d.NewDecoder(nil)
		dec.Feed(enc.Encode(nil, drivers.Frame{Values: map[drivers.MetricID]float64{drivers.SpO2: 95, drivers.PulseRate: 61}}), testNow, s)
		if s.Frames != (drivertest.FrameCounts{OK: 1}) || s.Readings[0].Value != 95 || s.Readings[1].Value != 61 {
			t.Errorf("%s: encoder to decoder: %+v %v", tt.name, s.Frames, views(s.Readings))
		}
	}
}

// The set-format command, against the worked examples of protocols.md 1.5.
func TestAppendSetFormat(t *testing.T) {
	tests := []struct {
		name string
		df   DataFormat
		form SetFormatForm
		want []byte
	}{
		{"mdpnp WristOx2 DF7, Bluetooth on at power-on", DF7, SetFormatLong, []byte{0x02, 0x70, 0x04, 0x02, 0x07, 0x21, 0x9E, 0x03}},
		{"mattjlewis Onyx 9560 DF8", DF8, SetFormatShort, []byte{0x02, 0x70, 0x02, 0x02, 0x08, 0x03}},
		// Computed the same way: 0x70+0x04+0x02+DF+0x21.
		{"long DF2", DF2, SetFormatLong, []byte{0x02, 0x70, 0x04, 0x02, 0x02, 0x21, 0x99, 0x03}},
		{"long DF8", DF8, SetFormatLong, []byte{0x02, 0x70, 0x04, 0x02, 0x08, 0x21, 0x9F, 0x03}},
		{"short DF7", DF7, SetFormatShort, []byte{0x02, 0x70, 0x02, 0x02, 0x07, 0x03}},
	}
	for _, tt := range tests {
		if got := AppendSetFormat([]byte{0xAA}, tt.df, tt.form); !bytes.Equal(got, append([]byte{0xAA}, tt.want...)) {
			t.Errorf("%s: % X, want % X", tt.name, got[1:], tt.want)
		}
	}
}

// With set_format the registered decoder is a drivers.Conversation whose
// Start writes the exact command once, with no keep-alive.
func TestSetFormatOption(t *testing.T) {
	tests := []struct {
		driver string
		value  any
		want   []byte
	}{
		{NameDF7, true, []byte{0x02, 0x70, 0x04, 0x02, 0x07, 0x21, 0x9E, 0x03}},
		{NameDF7, "long", []byte{0x02, 0x70, 0x04, 0x02, 0x07, 0x21, 0x9E, 0x03}},
		{NameDF8, "short", []byte{0x02, 0x70, 0x02, 0x02, 0x08, 0x03}},
		{NameDF2, true, []byte{0x02, 0x70, 0x04, 0x02, 0x02, 0x21, 0x99, 0x03}},
	}
	for _, tt := range tests {
		d, _ := drivers.Lookup(tt.driver)
		opts := drivers.Options{OptionSetFormat: tt.value}
		if err := d.Validate(opts); err != nil {
			t.Fatalf("%s %v: Validate: %v", tt.driver, tt.value, err)
		}
		dec, err := d.NewDecoder(opts)
		if err != nil {
			t.Fatalf("%s %v: NewDecoder: %v", tt.driver, tt.value, err)
		}
		conv, ok := dec.(drivers.Conversation)
		if !ok {
			t.Fatalf("%s %v: decoder is not a drivers.Conversation", tt.driver, tt.value)
		}
		var w bytes.Buffer
		if err := conv.Start(&w, testNow); err != nil {
			t.Fatalf("Start: %v", err)
		}
		if !bytes.Equal(w.Bytes(), tt.want) {
			t.Errorf("%s %v: Start wrote % X, want % X", tt.driver, tt.value, w.Bytes(), tt.want)
		}
		if conv.TickEvery() != 0 {
			t.Errorf("TickEvery = %v, want 0", conv.TickEvery())
		}
		w.Reset()
		if err := conv.Tick(&w, testNow); err != nil || w.Len() != 0 {
			t.Errorf("Tick wrote % X, err %v", w.Bytes(), err)
		}
		// The wrapped decoder still decodes; the device's ACK is a dropped byte.
		s := &drivertest.Recorder{}
		enc, _ := d.NewEncoder(opts)
		dec.Feed(append([]byte{0x06}, enc.Encode(nil, drivers.Frame{Values: map[drivers.MetricID]float64{drivers.SpO2: 96}})...), testNow, s)
		if s.Frames.OK != 1 || s.Frames.Dropped != 1 {
			t.Errorf("%s: after ACK: frames %+v", tt.driver, s.Frames)
		}
	}
	// set_format: false sends nothing.
	d, _ := drivers.Lookup(NameDF7)
	dec, err := d.NewDecoder(drivers.Options{OptionSetFormat: false})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := dec.(drivers.Conversation); ok {
		t.Fatal("set_format: false must not make a Conversation")
	}
}

type failingWriter struct{}

var errUnplugged = errors.New("unplugged")

func (failingWriter) Write([]byte) (int, error) { return 0, errUnplugged }

func TestSetFormatWriteError(t *testing.T) {
	d, _ := drivers.Lookup(NameDF7)
	dec, _ := d.NewDecoder(drivers.Options{OptionSetFormat: true})
	err := dec.(drivers.Conversation).Start(failingWriter{}, testNow)
	if !errors.Is(err, errUnplugged) || !strings.Contains(err.Error(), "02 70 04 02 07 21 9E 03") {
		t.Fatalf("Start error = %v", err)
	}
}

func TestOptionsRejected(t *testing.T) {
	tests := []struct {
		driver string
		opts   drivers.Options
		keys   []string
		text   []string
	}{
		{NameDF7, drivers.Options{"protocol": "x", "baud_rate": 1}, []string{"baud_rate", "protocol"}, []string{"nonin-df7", `"protocol"`, "set_format"}},
		{NameDF2, drivers.Options{OptionSetFormat: "medium"}, []string{"set_format"}, []string{"nonin-df2", `"medium"`, `"short"`}},
		{NameDF8, drivers.Options{OptionSetFormat: 1}, []string{"set_format"}, []string{"nonin-df8", "1 (int)"}},
		{NameDF8, drivers.Options{OptionSetFormat: []any{true}}, []string{"set_format"}, []string{"nonin-df8", "[]interface"}},
		{NameDF8, drivers.Options{OptionSetFormat: map[string]any{"a": 1}}, []string{"set_format"}, []string{"nonin-df8"}},
		{NameASCII, drivers.Options{OptionSetFormat: true}, []string{"set_format"}, []string{"nonin-ascii", "takes no commands"}},
		{NameASCII, drivers.Options{"x": 1}, []string{"x"}, []string{"nonin-ascii", "no options"}},
	}
	for _, tt := range tests {
		d, _ := drivers.Lookup(tt.driver)
		for how, err := range map[string]error{
			"Validate":   d.Validate(tt.opts),
			"NewDecoder": func() error { _, err := d.NewDecoder(tt.opts); return err }(),
			"NewEncoder": func() error { _, err := d.NewEncoder(tt.opts); return err }(),
		} {
			var oe *OptionError
			if !errors.As(err, &oe) {
				t.Fatalf("%s %v %s: error %v (%T), want *OptionError", tt.driver, tt.opts, how, err, err)
			}
			if oe.Driver != tt.driver || !reflect.DeepEqual(oe.Keys, tt.keys) {
				t.Errorf("%s %s: %+v", tt.driver, how, oe)
			}
			for _, want := range tt.text {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("%s %s: %q lacks %q", tt.driver, how, err, want)
				}
			}
		}
	}
	for _, name := range []string{NameDF2, NameDF7, NameDF8, NameASCII} {
		d, _ := drivers.Lookup(name)
		if err := d.Validate(nil); err != nil {
			t.Errorf("%s: Validate(nil) = %v", name, err)
		}
	}
}
