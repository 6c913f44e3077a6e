package serialport

import (
	"fmt"
	"path/filepath"
	"sort"

	"go.bug.st/serial"
)

// PortInfo describes one serial port for `vigil devices`.
type PortInfo struct {
	Name         string // device path, e.g. /dev/ttyUSB0
	IsUSB        bool
	VID          string // lower-case hex as in sysfs and drivers.Driver.USBIDs, e.g. "0403"; "" when not USB
	PID          string // lower-case hex, e.g. "6001"
	SerialNumber string // USB serial number; "" when the device has none
	Manufacturer string
	Product      string
	ByID         string // the /dev/serial/by-id link to this port, "" if none
}

// List returns the serial ports present now, sorted by name. It calls
// go.bug.st/serial's GetPortsList, which opens every ttyS port to see
// whether a UART is behind it and so can disturb a serial console
// (go.bug.st/serial issue #210): call it on demand only, never in a loop.
// USB details come from sysfs and the stable names from /dev/serial/by-id.
// pty ports (/dev/pts/*) are never listed.
func List() ([]PortInfo, error) {
	names, err := serial.GetPortsList()
	if err != nil {
		return nil, fmt.Errorf("serialport: listing serial ports: %w", err)
	}
	return hostLayout.describe(names), nil
}

// describe builds the PortInfo of each device path.
func (l sysLayout) describe(names []string) []PortInfo {
	links := l.byID()
	infos := make([]PortInfo, 0, len(names))
	for _, name := range names {
		info := PortInfo{Name: name}
		if attrs, ok, err := l.usbOf(filepath.Base(name)); err == nil && ok {
			info.IsUSB = true
			info.VID, info.PID = attrs.vid, attrs.pid
			info.SerialNumber = attrs.serial
			info.Manufacturer, info.Product = attrs.manufacturer, attrs.product
		}
		if real, err := filepath.EvalSymlinks(name); err == nil {
			info.ByID = links[real]
		}
		infos = append(infos, info)
	}
	sort.Slice(infos, func(i, j int) bool { return infos[i].Name < infos[j].Name })
	return infos
}
