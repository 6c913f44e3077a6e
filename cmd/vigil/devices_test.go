package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vigil-monitor/vigil/agent/config"
	"github.com/vigil-monitor/vigil/agent/serialport"
)

func TestDeviceTableMarksConfiguredDevices(t *testing.T) {
	dir := t.TempDir()
	byID := filepath.Join(dir, "usb-FTDI_FT232R_USB_UART_A5069RR4-if00-port0")
	os.Symlink("/dev/ttyUSB0", byID)
	cfg := &config.Config{Devices: []config.Device{
		{ID: "oximeter-1", Driver: "masimo-ascii", Port: byID},
		{ID: "ox-2", Driver: "masimo-ascii", USB: &config.USB{VID: "10c4", PID: "ea60"}},
	}}
	ports := []serialport.PortInfo{
		{Name: "/dev/ttyS0"},
		{Name: "/dev/ttyUSB0", IsUSB: true, VID: "0403", PID: "6001", SerialNumber: "A5069RR4",
			Manufacturer: "FTDI", Product: "FT232R USB UART", ByID: byID},
		{Name: "/dev/ttyUSB1", IsUSB: true, VID: "10C4", PID: "EA60", Manufacturer: "Silicon Labs", Product: "CP2102"},
	}
	var out bytes.Buffer
	writeDeviceTable(&out, ports, cfg)
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("got %d lines:\n%s", len(lines), out.String())
	}
	if f := strings.Fields(lines[0]); strings.Join(f, " ") != "PORT VID:PID SERIAL MANUFACTURER PRODUCT BY-ID CONFIGURED DRIVERS" {
		t.Errorf("header = %q", lines[0])
	}
	for _, c := range []struct {
		line int
		want []string
	}{
		{1, []string{"/dev/ttyS0", "-"}},
		{2, []string{"/dev/ttyUSB0", "0403:6001", "A5069RR4", byID, "oximeter-1"}},
		{3, []string{"/dev/ttyUSB1", "10c4:ea60", "ox-2"}},
	} {
		for _, w := range c.want {
			if !strings.Contains(lines[c.line], w) {
				t.Errorf("line %d %q lacks %q", c.line, lines[c.line], w)
			}
		}
	}
	if strings.Contains(lines[1], "oximeter-1") || strings.Contains(lines[1], "ox-2") {
		t.Errorf("ttyS0 marked as a configured device: %q", lines[1])
	}

	out.Reset()
	writeDeviceTable(&out, nil, nil)
	if !strings.Contains(out.String(), "No serial ports found") {
		t.Errorf("empty list: %q", out.String())
	}
}
