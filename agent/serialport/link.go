package serialport

import (
	"fmt"
	"runtime"
	"strings"

	"go.bug.st/serial"

	"github.com/vigil-monitor/vigil/drivers"
)

// LinkError is an invalid serial line setting in a drivers.Link.
type LinkError struct {
	Field  string // "baud", "data bits", "parity" or "stop bits"
	Value  string // the rejected value as written
	Reason string // what is accepted instead
}

func (e *LinkError) Error() string {
	return fmt.Sprintf("serialport: invalid %s %q: %s", e.Field, e.Value, e.Reason)
}

// maxBaud is the highest rate Linux termios names (B4000000); anything above
// is not a rate any bedside device uses.
const maxBaud = 4_000_000

// Mode maps link settings to the go.bug.st/serial mode. Every field must be
// set: a zero baud or zero data bits would silently become the library's
// 9600 or 8, which hides a config mistake instead of reporting it. Parity and
// stop bits are matched case-insensitively.
func Mode(l drivers.Link) (*serial.Mode, error) {
	m := &serial.Mode{}
	if l.Baud <= 0 || l.Baud > maxBaud {
		return nil, &LinkError{Field: "baud", Value: fmt.Sprint(l.Baud), Reason: fmt.Sprintf("must be between 1 and %d", maxBaud)}
	}
	m.BaudRate = l.Baud
	if l.DataBits < 5 || l.DataBits > 8 {
		return nil, &LinkError{Field: "data bits", Value: fmt.Sprint(l.DataBits), Reason: "must be 5, 6, 7 or 8"}
	}
	m.DataBits = l.DataBits
	switch strings.ToLower(strings.TrimSpace(l.Parity)) {
	case "none":
		m.Parity = serial.NoParity
	case "odd":
		m.Parity = serial.OddParity
	case "even":
		m.Parity = serial.EvenParity
	case "mark":
		m.Parity = serial.MarkParity
	case "space":
		m.Parity = serial.SpaceParity
	default:
		return nil, &LinkError{Field: "parity", Value: l.Parity, Reason: "must be none, odd, even, mark or space"}
	}
	switch strings.TrimSpace(l.StopBits) {
	case "1":
		m.StopBits = serial.OneStopBit
	case "1.5":
		// go.bug.st/serial refuses 1.5 stop bits on every Unix (termios has
		// no such setting), so accepting it here would only move the failure
		// to every open attempt.
		if runtime.GOOS != "windows" {
			return nil, &LinkError{Field: "stop bits", Value: l.StopBits, Reason: "1.5 stop bits are not supported on " + runtime.GOOS + "; use 1 or 2"}
		}
		m.StopBits = serial.OnePointFiveStopBits
	case "2":
		m.StopBits = serial.TwoStopBits
	default:
		return nil, &LinkError{Field: "stop bits", Value: l.StopBits, Reason: "must be 1, 1.5 or 2"}
	}
	return m, nil
}
