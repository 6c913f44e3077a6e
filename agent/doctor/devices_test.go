package doctor

import (
	"errors"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/creack/pty"

	"github.com/vigil-monitor/vigil/agent/config"
	"github.com/vigil-monitor/vigil/agent/serialport"
)

// openPTY is a real tty device for the device checks: its slave side is a
// character device under /dev/pts, as a USB-serial port is under /dev.
func openPTY(t *testing.T) string {
	t.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatalf("pty: %v", err)
	}
	t.Cleanup(func() { tty.Close(); ptmx.Close() })
	return tty.Name()
}

func TestDevicePresentAndUsable(t *testing.T) {
	tty := openPTY(t)
	link := filepath.Join(t.TempDir(), "oximeter")
	if err := os.Symlink(tty, link); err != nil {
		t.Fatal(err)
	}
	d := &config.Device{ID: "oximeter-1", Driver: "masimo-ascii", Port: link}
	r := run(t, DeviceCheck(d, 0, asMe(t)))
	expect(t, r, OK, link+" -> "+tty, "is present", "may read and write it")
	if r.Name != "device oximeter-1" {
		t.Errorf("name %q", r.Name)
	}
}

func TestDeviceMissing(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "ttyUSB7")
	r := run(t, DeviceCheck(&config.Device{ID: "oximeter-1", Driver: "masimo-ascii", Port: missing}, 2, asMe(t)))
	expect(t, r, Fail, missing+" does not exist")
	for _, want := range []string{"plug in", "vigil devices", "devices[2].port", "/dev/serial/by-id"} {
		if !strings.Contains(r.Fix, want) {
			t.Errorf("fix lacks %q: %q", want, r.Fix)
		}
	}

	// A by-id link left behind by an unplugged adapter.
	dangling := filepath.Join(dir, "usb-FTDI_FT232R-if00-port0")
	if err := os.Symlink(filepath.Join(dir, "ttyUSB9"), dangling); err != nil {
		t.Fatal(err)
	}
	r = run(t, DeviceCheck(&config.Device{ID: "oximeter-1", Driver: "masimo-ascii", Port: dangling}, 0, asMe(t)))
	expect(t, r, Fail, "is a link to "+filepath.Join(dir, "ttyUSB9")+", which does not exist")

	file := writeFile(t, filepath.Join(dir, "capture.log"), "", 0o600)
	r = run(t, DeviceCheck(&config.Device{ID: "oximeter-1", Driver: "masimo-ascii", Port: file}, 0, asMe(t)))
	expect(t, r, Fail, "not a serial device (a regular file)")
}

func TestDeviceByUSBIdentityNotPluggedIn(t *testing.T) {
	// No adapter with this (unassigned) identity is plugged into any test
	// machine; the ports are listed for real.
	d := &config.Device{ID: "bp-1", Driver: "masimo-ascii", USB: &config.USB{VID: "fffe", PID: "0b0e", Serial: "VIGIL-TEST"}}
	r := run(t, DeviceCheck(d, 1, asMe(t)))
	expect(t, r, Fail, "no serial port of usb fffe:0b0e serial VIGIL-TEST is plugged in")
	if !strings.Contains(r.Fix, "devices[1].usb") || !strings.Contains(r.Fix, "vigil devices") {
		t.Errorf("fix: %q", r.Fix)
	}
}

func TestResolveUSBMatchesAsTheAgentDoes(t *testing.T) {
	ports := []serialport.PortInfo{
		{Name: "/dev/ttyS0"},
		{Name: "/dev/ttyUSB0", IsUSB: true, VID: "0403", PID: "6001", SerialNumber: "A1"},
		{Name: "/dev/ttyUSB1", IsUSB: true, VID: "0403", PID: "6001", SerialNumber: "B2"},
		{Name: "/dev/ttyACM0", IsUSB: true, VID: "1234", PID: "abcd"},
	}
	list := func() ([]serialport.PortInfo, error) { return ports, nil }
	if got, _ := resolveUSB("d", "devices[0]", config.USB{VID: "0403", PID: "6001", Serial: "b2"}, list); got != "/dev/ttyUSB1" {
		t.Errorf("by serial (any case): %q", got)
	}
	if got, _ := resolveUSB("d", "devices[0]", config.USB{VID: "1234", PID: "ABCD"}, list); got != "/dev/ttyACM0" {
		t.Errorf("by vid:pid (any case): %q", got)
	}
	got, r := resolveUSB("d", "devices[0]", config.USB{VID: "0403", PID: "6001"}, list)
	if got != "" {
		t.Errorf("two adapters without a serial resolved to %q", got)
	}
	expect(t, r, Fail, "matches 2 ports (/dev/ttyUSB0, /dev/ttyUSB1)")
	if !strings.Contains(r.Fix, "serial number") {
		t.Errorf("fix: %q", r.Fix)
	}
	_, r = resolveUSB("d", "devices[0]", config.USB{VID: "0403", PID: "6001"}, func() ([]serialport.PortInfo, error) {
		return nil, errors.New("no /sys")
	})
	expect(t, r, Fail, "cannot be listed")
}

func TestHL7DeviceHasNoPort(t *testing.T) {
	d := &config.Device{ID: "monitor-1", Driver: "hl7-mllp"}
	expect(t, run(t, DeviceCheck(d, 0, asMe(t))), OK, "over the network")
}

// TestDevicePermissionsForTheServiceUser checks, as root, what the service
// user (here "nobody", which is in no group of the device) may do: only the
// group dialout the unit adds, or a mode open to all, lets it in.
func TestDevicePermissionsForTheServiceUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("changing a device's group needs root")
	}
	// Debian always has both (base-passwd); elsewhere the test cannot
	// express the service user's view.
	missing := func(what string, err error) {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s is needed in CI: %v", what, err)
		}
		t.Skipf("no %s: %v", what, err)
	}
	if _, err := user.Lookup("nobody"); err != nil {
		missing("user nobody", err)
	}
	dialout, err := user.LookupGroup("dialout")
	if err != nil {
		missing("group dialout", err)
	}
	gid, _ := strconv.Atoi(dialout.Gid)
	tty := openPTY(t)
	d := &config.Device{ID: "oximeter-1", Driver: "masimo-ascii", Port: tty}
	o := Options{ServiceUser: "nobody"}

	if err := os.Chown(tty, 0, 0); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(tty, 0o660); err != nil {
		t.Fatal(err)
	}
	r := run(t, DeviceCheck(d, 0, o))
	expect(t, r, Fail, "nobody cannot read and write it", "owned by root:root, mode 0660")
	for _, want := range []string{"udev rules", "usermod -aG dialout nobody"} {
		if !strings.Contains(r.Fix, want) {
			t.Errorf("fix lacks %q: %q", want, r.Fix)
		}
	}

	// What the udev rules do: group dialout, mode 0660.
	if err := os.Chown(tty, 0, gid); err != nil {
		t.Fatal(err)
	}
	expect(t, run(t, DeviceCheck(d, 0, o)), OK, "through group dialout")

	// Without the unit's SupplementaryGroups, nobody is not in dialout.
	o.SupplementaryGroups = []string{}
	expect(t, run(t, DeviceCheck(d, 0, o)), Fail, "cannot read and write")

	if err := os.Chmod(tty, 0o666); err != nil {
		t.Fatal(err)
	}
	expect(t, run(t, DeviceCheck(d, 0, o)), OK, "mode 0666 lets every user")

	// A service user that does not exist yet gets the unit's groups only.
	o = Options{ServiceUser: "vigil-no-such-user"}
	if err := os.Chmod(tty, 0o600); err != nil {
		t.Fatal(err)
	}
	expect(t, run(t, DeviceCheck(d, 0, o)), Fail, "user vigil-no-such-user does not exist")
}
