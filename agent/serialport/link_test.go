package serialport

import (
	"errors"
	"runtime"
	"testing"

	"go.bug.st/serial"

	"github.com/vigil-monitor/vigil/drivers"
)

func TestModeMapsLinkSettings(t *testing.T) {
	cases := []struct {
		link drivers.Link
		want serial.Mode
	}{
		{drivers.Link{Baud: 9600, DataBits: 8, Parity: "none", StopBits: "1"},
			serial.Mode{BaudRate: 9600, DataBits: 8, Parity: serial.NoParity, StopBits: serial.OneStopBit}},
		{drivers.Link{Baud: 19200, DataBits: 8, Parity: "odd", StopBits: "1"},
			serial.Mode{BaudRate: 19200, DataBits: 8, Parity: serial.OddParity, StopBits: serial.OneStopBit}},
		{drivers.Link{Baud: 115200, DataBits: 7, Parity: "EVEN", StopBits: "2"},
			serial.Mode{BaudRate: 115200, DataBits: 7, Parity: serial.EvenParity, StopBits: serial.TwoStopBits}},
		{drivers.Link{Baud: 4800, DataBits: 5, Parity: "Mark", StopBits: " 2 "},
			serial.Mode{BaudRate: 4800, DataBits: 5, Parity: serial.MarkParity, StopBits: serial.TwoStopBits}},
		{drivers.Link{Baud: 2400, DataBits: 6, Parity: "space", StopBits: "1"},
			serial.Mode{BaudRate: 2400, DataBits: 6, Parity: serial.SpaceParity, StopBits: serial.OneStopBit}},
	}
	for _, c := range cases {
		got, err := Mode(c.link)
		if err != nil {
			t.Errorf("Mode(%+v): %v", c.link, err)
			continue
		}
		if *got != c.want {
			t.Errorf("Mode(%+v) = %+v, want %+v", c.link, *got, c.want)
		}
	}
}

func TestModeRejectsInvalidSettings(t *testing.T) {
	good := drivers.Link{Baud: 9600, DataBits: 8, Parity: "none", StopBits: "1"}
	cases := []struct {
		name  string
		edit  func(*drivers.Link)
		field string
	}{
		{"zero baud", func(l *drivers.Link) { l.Baud = 0 }, "baud"},
		{"negative baud", func(l *drivers.Link) { l.Baud = -9600 }, "baud"},
		{"huge baud", func(l *drivers.Link) { l.Baud = 10_000_000 }, "baud"},
		{"zero data bits", func(l *drivers.Link) { l.DataBits = 0 }, "data bits"},
		{"9 data bits", func(l *drivers.Link) { l.DataBits = 9 }, "data bits"},
		{"4 data bits", func(l *drivers.Link) { l.DataBits = 4 }, "data bits"},
		{"empty parity", func(l *drivers.Link) { l.Parity = "" }, "parity"},
		{"parity letter", func(l *drivers.Link) { l.Parity = "N" }, "parity"},
		{"empty stop bits", func(l *drivers.Link) { l.StopBits = "" }, "stop bits"},
		{"3 stop bits", func(l *drivers.Link) { l.StopBits = "3" }, "stop bits"},
		{"stop bits as 1.0", func(l *drivers.Link) { l.StopBits = "1.0" }, "stop bits"},
	}
	if runtime.GOOS != "windows" {
		cases = append(cases, struct {
			name  string
			edit  func(*drivers.Link)
			field string
		}{"1.5 stop bits", func(l *drivers.Link) { l.StopBits = "1.5" }, "stop bits"})
	}
	for _, c := range cases {
		l := good
		c.edit(&l)
		m, err := Mode(l)
		var le *LinkError
		if !errors.As(err, &le) {
			t.Errorf("%s: Mode = %+v, %v; want a *LinkError", c.name, m, err)
			continue
		}
		if le.Field != c.field {
			t.Errorf("%s: LinkError.Field = %q, want %q (%v)", c.name, le.Field, c.field, err)
		}
		t.Logf("%s: %v", c.name, err)
	}
}

func TestTargetValidate(t *testing.T) {
	link := drivers.Link{Baud: 9600, DataBits: 8, Parity: "none", StopBits: "1"}
	ok := []Target{
		{Path: "/dev/ttyUSB0", Link: link},
		{USB: &USB{VID: "0403", PID: "6001"}, Link: link},
		{USB: &USB{VID: "10C4", PID: "ea60", Serial: "0001"}, Link: link},
	}
	for _, tg := range ok {
		if err := tg.Validate(); err != nil {
			t.Errorf("Validate(%s): %v", tg, err)
		}
	}
	bad := []Target{
		{Link: link},
		{Path: "/dev/ttyUSB0", USB: &USB{VID: "0403", PID: "6001"}, Link: link},
		{USB: &USB{VID: "403", PID: "6001"}, Link: link},
		{USB: &USB{VID: "0403", PID: ""}, Link: link},
		{USB: &USB{VID: "0x04", PID: "6001"}, Link: link},
		{USB: &USB{VID: "04g3", PID: "6001"}, Link: link},
	}
	for _, tg := range bad {
		err := tg.Validate()
		var te *TargetError
		if !errors.As(err, &te) {
			t.Errorf("Validate(%+v) = %v, want a *TargetError", tg, err)
		}
	}
	var le *LinkError
	if err := (Target{Path: "/dev/ttyUSB0"}).Validate(); !errors.As(err, &le) {
		t.Errorf("Validate with an empty link = %v, want a *LinkError", err)
	}
}
