// Package devstatus names the connection states of a configured device, shared
// by the device runner that detects them and the outputs (MQTT, metrics) that
// report them.
package devstatus

import "time"

// State is a device's connection state.
type State string

const (
	// Connected: the port is open and frames arrive.
	Connected State = "connected"
	// Disconnected: the port could not be opened or a read failed (unplugged).
	Disconnected State = "disconnected"
	// Silent: the port is open but no frame arrived within the driver's
	// silence limit (device off, wrong output mode, wrong baud rate).
	Silent State = "silent"
)

// Status is one change of a device's state.
type Status struct {
	Device    string
	State     State
	Since     time.Time // when the device entered State
	LastError string    // why, for Disconnected and Silent; never contains secrets
}
