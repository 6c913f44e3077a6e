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
	// Conditions in force, in Conditions() order; empty while disconnected
	// or silent (nothing is known then).
	Conditions []Condition
}

// Condition is a technical condition of a device that limits monitoring,
// derived from the flags of its latest readings (issue: technical alarms are
// raised from these by the alarm engine).
type Condition string

const (
	// SensorOff: sensor off the patient, no finger, or no sensor connected.
	SensorOff Condition = "sensor-off"
	// Searching: the device is searching for a pulse (out of track).
	Searching Condition = "searching"
	// LowSignalQuality: low perfusion, low signal quality or artefact.
	LowSignalQuality Condition = "low-signal-quality"
	// CuffError: the last NIBP measurement failed.
	CuffError Condition = "cuff-error"
	// SensorFault: defective or unrecognised sensor.
	SensorFault Condition = "sensor-fault"
)

// Conditions lists every condition, in a stable order: the order in which
// they appear on MQTT and the label values of vigil_device_condition.
func Conditions() []Condition {
	return []Condition{SensorOff, Searching, LowSignalQuality, CuffError, SensorFault}
}
