package serialport

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// USB identifies a USB-serial device independently of its /dev name. VID and
// PID are hex strings as sysfs writes them ("0403", "6001"); all three fields
// are compared case-insensitively. Serial may be empty when only one such
// device is ever plugged in.
type USB struct {
	VID    string
	PID    string
	Serial string
}

func (u USB) String() string {
	s := "usb " + strings.ToLower(u.VID) + ":" + strings.ToLower(u.PID)
	if u.Serial != "" {
		s += " serial " + u.Serial
	}
	return s
}

func (u USB) matches(a usbAttrs) bool {
	if !strings.EqualFold(strings.TrimSpace(u.VID), a.vid) || !strings.EqualFold(strings.TrimSpace(u.PID), a.pid) {
		return false
	}
	return u.Serial == "" || strings.EqualFold(strings.TrimSpace(u.Serial), a.serial)
}

// USBNotFoundError means no plugged-in tty belongs to the USB identity. It
// satisfies errors.Is(err, os.ErrNotExist), like a missing device path.
type USBNotFoundError struct {
	USB USB
}

func (e *USBNotFoundError) Error() string {
	return fmt.Sprintf("serialport: no serial port of %s is plugged in", e.USB)
}

// Is makes a missing USB device look like a missing device node to callers
// that only ask "is it there?".
func (e *USBNotFoundError) Is(target error) bool { return target == os.ErrNotExist }

// AmbiguousUSBError means several ttys match the USB identity: two identical
// adapters without a serial number in the config, or one adapter with several
// ports. Opening either could read the wrong patient's device, so none is.
type AmbiguousUSBError struct {
	USB   USB
	Ports []string // the matching device paths, sorted
}

func (e *AmbiguousUSBError) Error() string {
	hint := "add the serial number to tell them apart"
	if e.USB.Serial != "" {
		hint = "the device has several ports; name one by its /dev/serial/by-id path"
	}
	return fmt.Sprintf("serialport: %s matches %d ports (%s): %s", e.USB, len(e.Ports), strings.Join(e.Ports, ", "), hint)
}

// sysLayout is where the kernel's device information lives. It is a value,
// not constants, so tests can point it at a fake sysfs tree.
type sysLayout struct {
	sysRoot string // "/sys"
	devDir  string // "/dev": where tty device nodes are
	byIDDir string // "/dev/serial/by-id": udev's stable names
}

var hostLayout = sysLayout{sysRoot: "/sys", devDir: "/dev", byIDDir: "/dev/serial/by-id"}

// usbAttrs are the sysfs attributes of the USB device a tty belongs to.
type usbAttrs struct {
	vid, pid, serial, manufacturer, product string
}

// usbOf reports the USB device behind tty name (e.g. "ttyUSB0"). ok is false
// for ttys that are not on USB (ttyS, virtual consoles) or unknown names.
//
// /sys/class/tty/<name>/device points at the usb-serial port (ttyUSB) or the
// USB interface (ttyACM); the USB device carrying idVendor and idProduct is
// one of its ancestors, so walk up until a directory has both, never leaving
// the sysfs root.
func (l sysLayout) usbOf(name string) (attrs usbAttrs, ok bool, err error) {
	root, err := filepath.EvalSymlinks(l.sysRoot)
	if err != nil {
		return usbAttrs{}, false, err
	}
	dir, err := filepath.EvalSymlinks(filepath.Join(l.sysRoot, "class", "tty", name, "device"))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return usbAttrs{}, false, nil // virtual tty: no device behind it
		}
		return usbAttrs{}, false, err
	}
	for ; strings.HasPrefix(dir, root+string(filepath.Separator)); dir = filepath.Dir(dir) {
		vid, vidErr := readAttr(filepath.Join(dir, "idVendor"))
		pid, pidErr := readAttr(filepath.Join(dir, "idProduct"))
		if vidErr != nil || pidErr != nil {
			continue
		}
		attrs = usbAttrs{vid: strings.ToLower(vid), pid: strings.ToLower(pid)}
		// serial, manufacturer and product are optional USB strings: many
		// cheap adapters have no serial number.
		attrs.serial, _ = readAttr(filepath.Join(dir, "serial"))
		attrs.manufacturer, _ = readAttr(filepath.Join(dir, "manufacturer"))
		attrs.product, _ = readAttr(filepath.Join(dir, "product"))
		return attrs, true, nil
	}
	return usbAttrs{}, false, nil
}

// readAttr reads a one-line sysfs attribute.
func readAttr(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		b = b[:i]
	}
	return strings.TrimSpace(string(b)), nil
}

// findUSB returns the device path of the one tty belonging to u.
func (l sysLayout) findUSB(u USB) (string, error) {
	entries, err := os.ReadDir(filepath.Join(l.sysRoot, "class", "tty"))
	if err != nil {
		return "", fmt.Errorf("serialport: reading sysfs to find %s: %w", u, err)
	}
	var found []string
	for _, e := range entries {
		attrs, ok, err := l.usbOf(e.Name())
		if err != nil || !ok || !u.matches(attrs) {
			// A tty whose sysfs entry vanished or is unreadable mid-scan
			// (unplugged right now) cannot be the one we can open.
			continue
		}
		found = append(found, filepath.Join(l.devDir, e.Name()))
	}
	sort.Strings(found)
	switch len(found) {
	case 0:
		return "", &USBNotFoundError{USB: u}
	case 1:
		return found[0], nil
	default:
		return "", &AmbiguousUSBError{USB: u, Ports: found}
	}
}

// byID maps each device path (after following links) to the
// /dev/serial/by-id link naming it. A missing directory (no USB serial
// device plugged in, or no udev) is an empty map.
func (l sysLayout) byID() map[string]string {
	links := map[string]string{}
	entries, err := os.ReadDir(l.byIDDir)
	if err != nil {
		return links
	}
	for _, e := range entries {
		link := filepath.Join(l.byIDDir, e.Name())
		dev, err := filepath.EvalSymlinks(link)
		if err != nil {
			continue // dangling: the device left while we looked
		}
		// ReadDir is sorted, so the first link wins deterministically.
		if _, seen := links[dev]; !seen {
			links[dev] = link
		}
	}
	return links
}
