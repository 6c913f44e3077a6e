package contec

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
	d, ok := drivers.Lookup("contec-cms50")
	if !ok {
		t.Fatalf("contec-cms50 not registered; have %v", drivers.Names())
	}
	if want := (drivers.Link{Baud: 115200, DataBits: 8, Parity: "none", StopBits: "1"}); d.Link != want {
		t.Errorf("Link = %+v, want %+v (protocols.md 3.3)", d.Link, want)
	}
	if want := []drivers.MetricID{drivers.SpO2, drivers.PulseRate, drivers.Pleth}; !reflect.DeepEqual(d.Metrics, want) {
		t.Errorf("Metrics = %v, want %v", d.Metrics, want)
	}
	if want := []string{"10c4:ea60"}; !reflect.DeepEqual(d.USBIDs, want) {
		t.Errorf("USBIDs = %v, want %v (protocols.md 3.1)", d.USBIDs, want)
	}
	if d.SilentAfter != 3*time.Second {
		t.Errorf("SilentAfter = %v, want 3s", d.SilentAfter)
	}
	if d.Description == "" || d.Validate == nil || d.NewEncoder == nil {
		t.Errorf("incomplete registration: %+v", d)
	}
	for _, opts := range []drivers.Options{nil, {"protocol": "auto"}, {"protocol": "v46"}} {
		dec, err := d.NewDecoder(opts)
		if err != nil {
			t.Fatalf("NewDecoder(%v): %v", opts, err)
		}
		s := &drivertest.Recorder{}
		dec.Feed(v46Frames(10, 97, 72), testNow, s)
		if s.Frames != (drivertest.FrameCounts{OK: 10}) || len(s.Readings) != 2 {
			t.Fatalf("NewDecoder(%v): frames %+v readings %v", opts, s.Frames, views(s.Readings))
		}
		if _, ok := dec.(drivers.Conversation); !ok {
			t.Fatalf("NewDecoder(%v) is no Conversation", opts)
		}
	}
	dec, err := d.NewDecoder(drivers.Options{"protocol": "legacy"})
	if err != nil {
		t.Fatal(err)
	}
	s := &drivertest.Recorder{}
	dec.Feed(hexBytes(legacyExample), testNow, s)
	if len(s.Readings) != 2 {
		t.Fatalf("legacy decoder: %v", views(s.Readings))
	}
	enc, err := d.NewEncoder(drivers.Options{"protocol": "legacy"})
	if err != nil || enc.Interval() != time.Second || enc.(Encoder).Protocol() != ProtocolLegacy {
		t.Fatalf("NewEncoder(legacy) = %v, %v", enc, err)
	}
	enc, err = d.NewEncoder(nil)
	if err != nil || enc.(Encoder).Protocol() != ProtocolV46 {
		t.Fatalf("NewEncoder(nil) = %v, %v; want the v4.6 encoder", enc, err)
	}
}

func TestOptions(t *testing.T) {
	d, _ := drivers.Lookup(Name)
	for opts, want := range map[string]Protocol{"": ProtocolAuto, "auto": ProtocolAuto, "legacy": ProtocolLegacy, "v46": ProtocolV46} {
		o := drivers.Options{}
		if opts != "" {
			o[OptionProtocol] = opts
		}
		if err := d.Validate(o); err != nil {
			t.Errorf("Validate(%v) = %v", o, err)
		}
		if p, err := ParseOptions(o); p != want || err != nil {
			t.Errorf("ParseOptions(%v) = %v, %v; want %v", o, p, err, want)
		}
	}
	if err := d.Validate(nil); err != nil {
		t.Errorf("Validate(nil) = %v", err)
	}
	tests := []struct {
		opts    drivers.Options
		unknown bool
		parts   []string
	}{
		{drivers.Options{"protocol": "v4.6"}, false, []string{"contec-cms50", `"protocol"`, `"v4.6"`, "auto, legacy, v46"}},
		{drivers.Options{"protocol": "V46"}, false, []string{`"V46"`, "auto, legacy, v46"}},
		{drivers.Options{"protocol": ""}, false, []string{`""`, "auto, legacy, v46"}},
		{drivers.Options{"protocol": 46}, false, []string{"46 (int, not a string)", "auto, legacy, v46"}},
		{drivers.Options{"protocol": nil}, false, []string{"<nil>", "auto, legacy, v46"}},
		{drivers.Options{"baudrate": 4800}, true, []string{"contec-cms50", `unknown driver option "baudrate"`, `"protocol"`, "auto, legacy, v46"}},
		{drivers.Options{"protocol": "legacy", "nibp": true}, true, []string{`"nibp"`}},
	}
	for _, tt := range tests {
		for name, err := range map[string]error{
			"Validate":   d.Validate(tt.opts),
			"NewDecoder": func() error { _, err := d.NewDecoder(tt.opts); return err }(),
			"NewEncoder": func() error { _, err := d.NewEncoder(tt.opts); return err }(),
			"Variants":   func() error { _, err := Variants(tt.opts); return err }(),
		} {
			var oe *OptionError
			if !errors.As(err, &oe) {
				t.Fatalf("%s(%v): error %v (%T), want *OptionError", name, tt.opts, err, err)
			}
			if oe.Unknown != tt.unknown {
				t.Errorf("%s(%v): Unknown = %v", name, tt.opts, oe.Unknown)
			}
			for _, part := range tt.parts {
				if !strings.Contains(err.Error(), part) {
					t.Errorf("%s(%v): message %q lacks %q", name, tt.opts, err, part)
				}
			}
		}
	}
}

func TestVariants(t *testing.T) {
	v46 := Variant{Link: drivers.Link{Baud: 115200, DataBits: 8, Parity: "none", StopBits: "1"}, Options: drivers.Options{"protocol": "v46"}}
	legacy := Variant{Link: drivers.Link{Baud: 19200, DataBits: 8, Parity: "odd", StopBits: "1"}, Options: drivers.Options{"protocol": "legacy"}}
	tests := []struct {
		opts drivers.Options
		want []Variant
	}{
		{nil, []Variant{v46, legacy}},
		{drivers.Options{"protocol": "auto"}, []Variant{v46, legacy}},
		{drivers.Options{"protocol": "v46"}, []Variant{v46}},
		{drivers.Options{"protocol": "legacy"}, []Variant{legacy}},
	}
	d, _ := drivers.Lookup(Name)
	for _, tt := range tests {
		got, err := Variants(tt.opts)
		if err != nil || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Variants(%v) = %+v, %v; want %+v", tt.opts, got, err, tt.want)
		}
		// Each variant's options are valid and build a fixed decoder.
		for _, v := range got {
			dec, err := d.NewDecoder(v.Options)
			if err != nil || dec.(*Decoder).Protocol() == ProtocolAuto {
				t.Errorf("variant %+v: decoder %v, %v", v, dec, err)
			}
		}
	}
	if got, _ := Variants(nil); got[0].Link != d.Link {
		t.Errorf("the first variant %+v is not the registered default link %+v", got[0].Link, d.Link)
	}
}

// The exact bytes of protocols.md 3.3.
var (
	wantStart = []byte{0x7D, 0x81, 0xA1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80}
	wantTick  = []byte{
		0x7D, 0x81, 0xAF, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, // keep-alive (headrotor)
		0x7D, 0x81, 0xA1, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, // start again
	}
)

func TestConversation(t *testing.T) {
	var _ drivers.Conversation = (*Decoder)(nil)
	tests := []struct {
		protocol  Protocol
		feed      []byte // fed between Start and Tick
		start     []byte
		tick      []byte
		tickEvery time.Duration
	}{
		{ProtocolV46, nil, wantStart, wantTick, 5 * time.Second},
		{ProtocolV46, v46Frames(10, 97, 72), wantStart, wantTick, 5 * time.Second},
		{ProtocolLegacy, legacyFrames(10, 97, 72), nil, nil, 0},
		// Auto starts a possible v4.6 device and keeps it alive...
		{ProtocolAuto, nil, wantStart, wantTick, 5 * time.Second},
		{ProtocolAuto, v46Frames(10, 97, 72), wantStart, wantTick, 5 * time.Second},
		// ...and stops talking once it sees a legacy device.
		{ProtocolAuto, legacyFrames(10, 97, 72), wantStart, nil, 5 * time.Second},
	}
	for _, tt := range tests {
		d := NewDecoder(tt.protocol)
		var w bytes.Buffer
		if err := d.Start(&w, testNow); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(w.Bytes(), tt.start) {
			t.Errorf("%v: Start wrote % X, want % X", tt.protocol, w.Bytes(), tt.start)
		}
		d.Feed(tt.feed, testNow, drivertest.Discard)
		w.Reset()
		if err := d.Tick(&w, testNow); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(w.Bytes(), tt.tick) {
			t.Errorf("%v after %d bytes: Tick wrote % X, want % X", tt.protocol, len(tt.feed), w.Bytes(), tt.tick)
		}
		if got := d.TickEvery(); got != tt.tickEvery {
			t.Errorf("%v: TickEvery = %v, want %v", tt.protocol, got, tt.tickEvery)
		}
	}
}

type failingWriter struct{ err error }

func (f failingWriter) Write([]byte) (int, error) { return 0, f.err }

func TestConversationWriteErrors(t *testing.T) {
	boom := errors.New("unplugged")
	d := NewDecoder(ProtocolV46)
	if err := d.Start(failingWriter{boom}, testNow); !errors.Is(err, boom) {
		t.Errorf("Start: %v", err)
	}
	if err := d.Tick(failingWriter{boom}, testNow); !errors.Is(err, boom) {
		t.Errorf("Tick: %v", err)
	}
}
