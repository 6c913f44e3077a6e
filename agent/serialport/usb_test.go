package serialport

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// fakeSys is a sysfs and /dev tree in a temporary directory, shaped like the
// kernel's: /sys/class/tty/<name> links to the tty's directory under
// /sys/devices, whose "device" link points at the usb-serial port (ttyUSB),
// the USB interface (ttyACM) or a platform device (ttyS).
type fakeSys struct {
	t      *testing.T
	layout sysLayout
}

func newFakeSys(t *testing.T) *fakeSys {
	root := t.TempDir()
	f := &fakeSys{t: t, layout: sysLayout{
		sysRoot: filepath.Join(root, "sys"),
		devDir:  filepath.Join(root, "dev"),
		byIDDir: filepath.Join(root, "dev", "serial", "by-id"),
	}}
	f.mkdir(filepath.Join(f.layout.sysRoot, "class", "tty"))
	f.mkdir(f.layout.devDir)
	// A virtual console: a class entry without a device link.
	f.addTTY("tty0", filepath.Join(f.layout.sysRoot, "devices", "virtual", "tty", "tty0"), "")
	return f
}

func (f *fakeSys) mkdir(dir string) {
	f.t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fakeSys) write(path, content string) {
	f.t.Helper()
	f.mkdir(filepath.Dir(path))
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fakeSys) symlink(target, link string) {
	f.t.Helper()
	f.mkdir(filepath.Dir(link))
	if err := os.Symlink(target, link); err != nil {
		f.t.Fatal(err)
	}
}

// addTTY makes the class entry of name at ttyDir, with a device link to
// deviceDir unless that is "".
func (f *fakeSys) addTTY(name, ttyDir, deviceDir string) {
	f.mkdir(ttyDir)
	f.write(filepath.Join(ttyDir, "dev"), "188:0\n")
	if deviceDir != "" {
		f.mkdir(deviceDir)
		f.symlink(deviceDir, filepath.Join(ttyDir, "device"))
	}
	f.symlink(ttyDir, filepath.Join(f.layout.sysRoot, "class", "tty", name))
}

// usbDevice creates a USB device directory at bus port busPort with the
// given attributes (idVendor, idProduct, serial, ...) and returns it.
func (f *fakeSys) usbDevice(busPort string, attrs map[string]string) string {
	dir := filepath.Join(f.layout.sysRoot, "devices", "pci0000:00", "0000:00:14.0", "usb1", busPort)
	for k, v := range attrs {
		f.write(filepath.Join(dir, k), v+"\n")
	}
	return dir
}

// addUSBSerial adds a usb-serial tty (ftdi_sio, cp210x, ch341) of the USB
// device usbDir on interface iface.
func (f *fakeSys) addUSBSerial(name, usbDir, iface string) {
	port := filepath.Join(usbDir, filepath.Base(usbDir)+":1."+iface, name)
	f.addTTY(name, filepath.Join(port, "tty", name), port)
}

// addACM adds a cdc-acm tty, whose device link is the USB interface itself.
func (f *fakeSys) addACM(name, usbDir string) {
	intf := filepath.Join(usbDir, filepath.Base(usbDir)+":1.0")
	f.addTTY(name, filepath.Join(intf, "tty", name), intf)
}

// addUART adds an on-board serial port, not on USB.
func (f *fakeSys) addUART(name string) {
	dev := filepath.Join(f.layout.sysRoot, "devices", "pnp0", "00:04")
	f.addTTY(name, filepath.Join(dev, "tty", name), dev)
}

// remove deletes name's class entry, as an unplug does.
func (f *fakeSys) remove(name string) {
	f.t.Helper()
	if err := os.Remove(filepath.Join(f.layout.sysRoot, "class", "tty", name)); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fakeSys) dev(name string) string { return filepath.Join(f.layout.devDir, name) }

func ftdi(serial string) map[string]string {
	return map[string]string{"idVendor": "0403", "idProduct": "6001", "serial": serial,
		"manufacturer": "FTDI", "product": "FT232R USB UART"}
}

func TestFindUSBByIdentity(t *testing.T) {
	f := newFakeSys(t)
	f.addUART("ttyS0")
	f.addUSBSerial("ttyUSB0", f.usbDevice("1-1", ftdi("A10KZP3Q")), "0")
	f.addUSBSerial("ttyUSB1", f.usbDevice("1-2", map[string]string{"idVendor": "10c4", "idProduct": "ea60"}), "0")
	f.addACM("ttyACM0", f.usbDevice("1-3", map[string]string{"idVendor": "2341", "idProduct": "0043", "serial": "ab12CD"}))

	cases := []struct {
		usb  USB
		want string
	}{
		{USB{VID: "0403", PID: "6001"}, "ttyUSB0"},
		{USB{VID: "0403", PID: "6001", Serial: "A10KZP3Q"}, "ttyUSB0"},
		{USB{VID: "0403", PID: "6001", Serial: "a10kzp3q"}, "ttyUSB0"},
		{USB{VID: "10C4", PID: "EA60"}, "ttyUSB1"},
		{USB{VID: "2341", PID: "0043"}, "ttyACM0"},
		{USB{VID: "2341", PID: "0043", Serial: "AB12cd"}, "ttyACM0"},
	}
	for _, c := range cases {
		got, err := f.layout.findUSB(c.usb)
		if err != nil {
			t.Errorf("findUSB(%s): %v", c.usb, err)
			continue
		}
		if got != f.dev(c.want) {
			t.Errorf("findUSB(%s) = %s, want %s", c.usb, got, f.dev(c.want))
		}
	}
}

func TestFindUSBNotFound(t *testing.T) {
	f := newFakeSys(t)
	f.addUART("ttyS0")
	f.addUSBSerial("ttyUSB0", f.usbDevice("1-1", ftdi("A10KZP3Q")), "0")

	for _, u := range []USB{
		{VID: "0403", PID: "6015"},
		{VID: "0403", PID: "6001", Serial: "OTHER"},
		{VID: "10c4", PID: "ea60"},
	} {
		_, err := f.layout.findUSB(u)
		var nf *USBNotFoundError
		if !errors.As(err, &nf) {
			t.Fatalf("findUSB(%s) = %v, want a *USBNotFoundError", u, err)
		}
		if nf.USB != u {
			t.Errorf("USBNotFoundError.USB = %+v, want %+v", nf.USB, u)
		}
		if !errors.Is(err, os.ErrNotExist) {
			t.Errorf("findUSB(%s): errors.Is(err, os.ErrNotExist) is false", u)
		}
		if !strings.Contains(err.Error(), strings.ToLower(u.VID)+":"+strings.ToLower(u.PID)) {
			t.Errorf("error %q does not name the identity", err)
		}
		if u.Serial != "" && !strings.Contains(err.Error(), u.Serial) {
			t.Errorf("error %q does not name the serial number", err)
		}
	}
}

func TestFindUSBAmbiguous(t *testing.T) {
	f := newFakeSys(t)
	f.addUSBSerial("ttyUSB3", f.usbDevice("1-4", ftdi("B0002")), "0")
	f.addUSBSerial("ttyUSB0", f.usbDevice("1-1", ftdi("A0001")), "0")

	_, err := f.layout.findUSB(USB{VID: "0403", PID: "6001"})
	var amb *AmbiguousUSBError
	if !errors.As(err, &amb) {
		t.Fatalf("findUSB without serial = %v, want an *AmbiguousUSBError", err)
	}
	want := []string{f.dev("ttyUSB0"), f.dev("ttyUSB3")}
	if !reflect.DeepEqual(amb.Ports, want) {
		t.Errorf("AmbiguousUSBError.Ports = %v, want %v", amb.Ports, want)
	}
	for _, p := range want {
		if !strings.Contains(err.Error(), p) {
			t.Errorf("error %q does not name %s", err, p)
		}
	}
	if errors.Is(err, os.ErrNotExist) {
		t.Error("an ambiguous match must not look like a missing device")
	}

	// The serial number tells the two apart.
	got, err := f.layout.findUSB(USB{VID: "0403", PID: "6001", Serial: "B0002"})
	if err != nil || got != f.dev("ttyUSB3") {
		t.Errorf("findUSB with serial = %q, %v; want %s", got, err, f.dev("ttyUSB3"))
	}

	// One adapter with two ports and one serial number stays ambiguous.
	dual := f.usbDevice("1-5", map[string]string{"idVendor": "0403", "idProduct": "6010", "serial": "D1"})
	f.addUSBSerial("ttyUSB4", dual, "0")
	f.addUSBSerial("ttyUSB5", dual, "1")
	_, err = f.layout.findUSB(USB{VID: "0403", PID: "6010", Serial: "D1"})
	if !errors.As(err, &amb) || len(amb.Ports) != 2 {
		t.Fatalf("findUSB on a dual-port adapter = %v, want an *AmbiguousUSBError with 2 ports", err)
	}
	if !strings.Contains(err.Error(), "by-id") {
		t.Errorf("error %q does not point at /dev/serial/by-id", err)
	}
}

func TestFindUSBFollowsRenumbering(t *testing.T) {
	f := newFakeSys(t)
	usb := f.usbDevice("1-1", ftdi("A0001"))
	f.addUSBSerial("ttyUSB0", usb, "0")
	u := USB{VID: "0403", PID: "6001", Serial: "A0001"}
	if got, err := f.layout.findUSB(u); err != nil || got != f.dev("ttyUSB0") {
		t.Fatalf("before replug: %q, %v", got, err)
	}
	f.remove("ttyUSB0")
	if _, err := f.layout.findUSB(u); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("while unplugged: %v, want not found", err)
	}
	f.addUSBSerial("ttyUSB1", f.usbDevice("1-2", ftdi("A0001")), "0")
	if got, err := f.layout.findUSB(u); err != nil || got != f.dev("ttyUSB1") {
		t.Fatalf("after replug: %q, %v; want %s", got, err, f.dev("ttyUSB1"))
	}
}

func TestFindUSBWithoutSysfs(t *testing.T) {
	l := sysLayout{sysRoot: filepath.Join(t.TempDir(), "nosys"), devDir: "/dev"}
	_, err := l.findUSB(USB{VID: "0403", PID: "6001"})
	if err == nil {
		t.Fatal("findUSB without a sysfs tree succeeded")
	}
}

func TestUSBOfHostSysfs(t *testing.T) {
	// Whatever the host has, asking about a name that is not there, or a
	// virtual tty, is not an error.
	for _, name := range []string{"ttyNOPE99", "tty0", "ttyS0"} {
		if _, err := os.Stat("/sys/class/tty"); err != nil {
			t.Skip("no /sys/class/tty on this host")
		}
		attrs, ok, err := hostLayout.usbOf(name)
		if err != nil {
			t.Errorf("usbOf(%s): %v", name, err)
		}
		if name != "ttyS0" && ok {
			t.Errorf("usbOf(%s) = %+v, true; want not USB", name, attrs)
		}
	}
}

func TestDescribePorts(t *testing.T) {
	f := newFakeSys(t)
	f.addUART("ttyS0")
	f.addUSBSerial("ttyUSB0", f.usbDevice("1-1", ftdi("A10KZP3Q")), "0")
	f.addACM("ttyACM0", f.usbDevice("1-3", map[string]string{"idVendor": "2341", "idProduct": "0043"}))
	for _, n := range []string{"ttyS0", "ttyUSB0", "ttyACM0"} {
		f.write(f.dev(n), "")
	}
	byID := filepath.Join(f.layout.byIDDir, "usb-FTDI_FT232R_USB_UART_A10KZP3Q-if00-port0")
	f.symlink("../../ttyUSB0", byID)
	// A dangling link (device left while listing) is ignored.
	f.symlink("../../ttyUSB9", filepath.Join(f.layout.byIDDir, "usb-gone-if00-port0"))

	got := f.layout.describe([]string{f.dev("ttyUSB0"), f.dev("ttyS0"), f.dev("ttyACM0")})
	want := []PortInfo{
		{Name: f.dev("ttyACM0"), IsUSB: true, VID: "2341", PID: "0043"},
		{Name: f.dev("ttyS0")},
		{Name: f.dev("ttyUSB0"), IsUSB: true, VID: "0403", PID: "6001", SerialNumber: "A10KZP3Q",
			Manufacturer: "FTDI", Product: "FT232R USB UART", ByID: byID},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("describe:\n got %+v\nwant %+v", got, want)
	}
}
