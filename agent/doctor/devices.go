package doctor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/vigil-monitor/vigil/agent/config"
	"github.com/vigil-monitor/vigil/agent/serialport"
	"github.com/vigil-monitor/vigil/drivers"
)

// DeviceCheck checks that device index of the config is present (its port
// path exists, or its USB identity names exactly one plugged-in port) and
// that the service user may read and write it. The port is not opened: the
// running agent holds it exclusively, and opening it would reset the line.
func DeviceCheck(d *config.Device, index int, o Options) Check {
	o = o.withDefaults()
	name := "device " + d.ID
	return Check{Name: name, Run: func(context.Context) Result {
		if drv, ok := drivers.Lookup(d.Driver); ok && drv.Transport != drivers.Serial {
			return okf(name, "connects over the network (driver %s); no serial port to check", d.Driver)
		}
		key := fmt.Sprintf("devices[%d]", index)
		path := d.Port
		var via string
		if d.USB != nil {
			found, r := resolveUSB(name, key, *d.USB, serialport.List)
			if found == "" {
				return r
			}
			path, via = found, serialport.USB{VID: d.USB.VID, PID: d.USB.PID, Serial: d.USB.Serial}.String()+" is "
		}
		if path == "" {
			return failf(name, "give "+key+" a port: /dev/serial/by-id/... or usb: {vid: ..., pid: ...}", "no port is configured")
		}
		return checkDevicePath(name, key, path, via, o)
	}}
}

// checkDevicePath checks one device node; via prefixes the finding.
func checkDevicePath(name, key, path, via string, o Options) Result {
	fixMissing := "plug in the device's USB-serial adapter and check its cable; `vigil devices` lists the serial ports present. If the port's name changed, correct " +
		key + ".port (a /dev/serial/by-id/... path survives replugging)"
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			if target, lerr := os.Readlink(path); lerr == nil {
				return failf(name, fixMissing, "%s%s is a link to %s, which does not exist", via, path, target)
			}
			return failf(name, fixMissing, "%s%s does not exist", via, path)
		}
		return failf(name, "check that the user running vigil doctor may read "+filepath.Dir(path), "%s%s cannot be examined: %v", via, path, err)
	}
	st, err := os.Stat(real)
	if err != nil {
		return failf(name, fixMissing, "%s%s cannot be examined: %v", via, path, err)
	}
	if st.Mode()&fs.ModeCharDevice == 0 {
		return failf(name, "point "+key+".port at the serial device (e.g. /dev/serial/by-id/usb-FTDI_...), not at a file",
			"%s%s is not a serial device (%s)", via, path, fileKind(st.Mode()))
	}
	shown := path
	if real != path {
		shown += " -> " + real
	}
	acc, err := serviceAccess(real, permRead|permWrite, o)
	if err != nil {
		return failf(name, fixMissing, "%s%s: %v", via, shown, err)
	}
	if !acc.ok {
		return failf(name,
			"install Vigil's udev rules (the .deb installs them; apply them with `udevadm control --reload && udevadm trigger`) so the port gets group dialout and mode 0660; or add the user to the port's group: usermod -aG dialout "+o.ServiceUser,
			"%s%s is present but %s cannot read and write it: %s", via, shown, o.ServiceUser, acc.how)
	}
	return okf(name, "%s%s is present; %s may read and write it %s", via, shown, o.ServiceUser, acc.how)
}

func fileKind(m fs.FileMode) string {
	switch {
	case m.IsDir():
		return "a directory"
	case m.IsRegular():
		return "a regular file"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	}
	return "not a character device"
}

// resolveUSB finds the one port of the USB identity among the ports list
// returns, as the agent does at open (agent/serialport: vid and pid, and the
// serial when given, compared case-insensitively). It returns the port's
// path, or "" and the failure to report.
func resolveUSB(name, key string, u config.USB, list func() ([]serialport.PortInfo, error)) (string, Result) {
	id := serialport.USB{VID: u.VID, PID: u.PID, Serial: u.Serial}
	ports, err := list()
	if err != nil {
		return "", failf(name, "check that /sys is mounted and readable", "the serial ports cannot be listed to find %s: %v", id, err)
	}
	var found []string
	for _, p := range ports {
		if !p.IsUSB || !strings.EqualFold(p.VID, strings.TrimSpace(u.VID)) || !strings.EqualFold(p.PID, strings.TrimSpace(u.PID)) {
			continue
		}
		if u.Serial != "" && !strings.EqualFold(p.SerialNumber, strings.TrimSpace(u.Serial)) {
			continue
		}
		found = append(found, p.Name)
	}
	switch len(found) {
	case 0:
		return "", failf(name, "plug in the device's USB-serial adapter; `vigil devices` shows the vid, pid and serial of every adapter plugged in, to compare with "+key+".usb",
			"no serial port of %s is plugged in", id)
	case 1:
		return found[0], Result{}
	}
	return "", failf(name, "add the adapter's serial number to "+key+".usb (`vigil devices` shows it), or name the port by its /dev/serial/by-id path",
		"%s matches %d ports (%s): the agent would not know which is this device", id, len(found), strings.Join(found, ", "))
}
