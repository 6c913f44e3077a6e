//go:build !race

// The race detector's instrumentation allocates, so allocation counts are
// only meaningful without it.

package metrics

import (
	"testing"

	"github.com/vigil-monitor/vigil/agent/devstatus"
	"github.com/vigil-monitor/vigil/drivers"
)

func TestHotPathDoesNotAllocate(t *testing.T) {
	clock := &fakeClock{now: t0}
	m := newTest(clock, Options{})
	spo2 := valid("ox1", drivers.SpO2, 97, t0)
	gone := noValue("ox1", drivers.SpO2, t0)
	pleth := &drivers.Reading{Device: "ox1", Metric: drivers.Pleth, Samples: []float64{1, 2}, Received: t0}
	ghost := valid("ghost", drivers.SpO2, 97, t0)
	status := devstatus.Status{Device: "ox1", State: devstatus.Connected}
	conditions := devstatus.Status{Device: "ox1", State: devstatus.Connected, Conditions: devstatus.Conditions()}
	silent := devstatus.Status{Device: "ox1", State: devstatus.Silent}
	for name, f := range map[string]func(){
		"Consume valid":           func() { m.Consume(spo2) },
		"Consume no value":        func() { m.Consume(gone) },
		"Consume waveform":        func() { m.Consume(pleth) },
		"Consume unknown device":  func() { m.Consume(ghost) },
		"Frame":                   func() { m.Frame("ox1", drivers.FrameMalformed, 3) },
		"DeviceStatus":            func() { m.DeviceStatus(status) },
		"DeviceStatus conditions": func() { m.DeviceStatus(conditions) },
		"DeviceStatus silent":     func() { m.DeviceStatus(silent) },
		"Reconnected":             func() { m.Reconnected("ox1") },
		"SetMQTTConnected":        func() { m.SetMQTTConnected(true) },
		"MQTTPublishError":        func() { m.MQTTPublishError() },
	} {
		if n := testing.AllocsPerRun(1000, f); n != 0 {
			t.Errorf("%s: %v allocations per call, want 0", name, n)
		}
	}
}
