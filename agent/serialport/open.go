package serialport

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"time"

	"go.bug.st/serial"

	"github.com/vigil-monitor/vigil/drivers"
)

// Target is one device's port and line settings. Exactly one of Path and USB
// is set.
type Target struct {
	// Path is a tty path: /dev/ttyUSB0, a /dev/serial/by-id/... link, a pty,
	// or any symlink to a tty. Links are followed again on every open.
	Path string
	// USB names the port by the identity of the USB device behind it.
	USB  *USB
	Link drivers.Link
}

func (t Target) String() string {
	if t.USB != nil {
		return t.USB.String()
	}
	return t.Path
}

// TargetError is a Target that can never be opened, whatever is plugged in.
type TargetError struct {
	Target string
	Reason string
}

func (e *TargetError) Error() string {
	if e.Target == "" {
		return "serialport: invalid target: " + e.Reason
	}
	return fmt.Sprintf("serialport: invalid target %s: %s", e.Target, e.Reason)
}

// Validate checks t without touching any device: a *TargetError for the
// port naming, a *LinkError for the line settings.
func (t Target) Validate() error {
	_, err := t.mode()
	return err
}

// mode validates t and returns its serial mode.
func (t Target) mode() (*serial.Mode, error) {
	switch {
	case t.Path == "" && t.USB == nil:
		return nil, &TargetError{Reason: "neither a path nor a USB identity is set"}
	case t.Path != "" && t.USB != nil:
		return nil, &TargetError{Target: t.Path, Reason: "both a path and a USB identity are set; use one"}
	case t.USB != nil:
		if !isUSBID(t.USB.VID) || !isUSBID(t.USB.PID) {
			return nil, &TargetError{Target: t.USB.String(), Reason: "vid and pid must be 4 hex digits each, e.g. 0403 and 6001"}
		}
	}
	return Mode(t.Link)
}

// isUSBID reports whether s is a 16-bit USB id written as sysfs writes it:
// exactly 4 hex digits.
func isUSBID(s string) bool {
	if len(s) != 4 {
		return false
	}
	for _, c := range s {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// OpenError is a failed attempt to open a resolved port path.
type OpenError struct {
	Port string // the path tried
	Err  error  // the cause: a syscall errno, a *serial.PortError, ...
}

func (e *OpenError) Error() string {
	cause := e.Err
	var pathErr *fs.PathError
	if errors.As(cause, &pathErr) && pathErr.Path == e.Port {
		cause = pathErr.Err // the path is already in the message
	}
	msg := fmt.Sprintf("serialport: open %s: %v", e.Port, cause)
	var portErr *serial.PortError
	if errors.As(e.Err, &portErr) {
		switch portErr.Code() {
		case serial.PermissionDenied:
			msg += " (the user running vigil needs to be in the dialout group)"
		case serial.PortBusy:
			msg += " (another program has the port open)"
		}
	}
	return msg
}

func (e *OpenError) Unwrap() error { return e.Err }

// readTimeout bounds each Read so the read loop notices the end of its
// context within this long; a Read that times out returns (0, nil).
const readTimeout = 100 * time.Millisecond

// Open resolves t (following links, or finding its USB identity in sysfs)
// and opens the port with t's line settings and a 100 ms read timeout: Read
// returns (0, nil) when no byte arrived in that time. It returns the port and
// the device path it opened. Errors: *TargetError or *LinkError for an
// invalid t, *USBNotFoundError or *AmbiguousUSBError from USB resolution,
// *OpenError otherwise (errors.Is(err, os.ErrNotExist) for a missing device).
func Open(t Target) (serial.Port, string, error) {
	mode, err := t.mode()
	if err != nil {
		return nil, "", err
	}
	return hostLayout.open(t, mode)
}

func (l sysLayout) open(t Target, mode *serial.Mode) (serial.Port, string, error) {
	path := t.Path
	if t.USB != nil {
		p, err := l.findUSB(*t.USB)
		if err != nil {
			return nil, "", err
		}
		path = p
	}
	// Follow links now so the name reported to the handler and the logs is
	// the device actually opened (/dev/ttyUSB1, /dev/pts/3), not the alias.
	dev, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil, "", &OpenError{Port: path, Err: err}
	}
	port, err := serial.Open(dev, mode)
	if err != nil {
		return nil, "", &OpenError{Port: dev, Err: err}
	}
	if err := port.SetReadTimeout(readTimeout); err != nil {
		_ = port.Close() // the timeout error is the one worth reporting
		return nil, "", &OpenError{Port: dev, Err: err}
	}
	return port, dev, nil
}
