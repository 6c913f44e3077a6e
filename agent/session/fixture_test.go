package session

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

// t0 is the first dose time of the test timelines; fixed, without a
// monotonic reading, so stored times compare equal after a round trip.
var t0 = time.Date(2025, 3, 14, 10, 0, 0, 0, time.UTC)

// at is t0 plus minutes (negative before the dose).
func at(minutes float64) time.Time {
	return t0.Add(time.Duration(minutes * float64(time.Minute)))
}

func newTestManager(t *testing.T) *Manager {
	t.Helper()
	m, err := NewManager("room-1", DefaultProtocol())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// kinds names the actions, in order: "StartNIBP", "MissedNIBP(on)",
// "SessionChanged"...
func kinds(acts []Action) string {
	var out []string
	for _, a := range acts {
		name := reflect.TypeOf(a).Name()
		if mn, ok := a.(MissedNIBP); ok {
			if mn.On {
				name += "(on)"
			} else {
				name += "(off)"
			}
		}
		out = append(out, name)
	}
	return strings.Join(out, ",")
}

// find returns the first action of type T.
func find[T Action](acts []Action) (T, bool) {
	for _, a := range acts {
		if v, ok := a.(T); ok {
			return v, true
		}
	}
	var zero T
	return zero, false
}

func wantKinds(t *testing.T, step string, acts []Action, want string) {
	t.Helper()
	if got := kinds(acts); got != want {
		t.Fatalf("%s: actions %q, want %q", step, got, want)
	}
}

// bp observes a blood-pressure measurement (systolic, diastolic, mean).
func bp(m *Manager, sys, dia float64, when time.Time) []Action {
	var acts []Action
	acts = append(acts, m.Observe("bp", "nibp_systolic", sys, true, when)...)
	acts = append(acts, m.Observe("bp", "nibp_diastolic", dia, true, when)...)
	acts = append(acts, m.Observe("bp", "nibp_mean", (sys+2*dia)/3, true, when)...)
	return acts
}

// oximeter observes SpO2 and pulse.
func oximeter(m *Manager, spo2, pulse float64, when time.Time) {
	m.Observe("ox", "spo2", spo2, true, when)
	m.Observe("ox", "pulse_rate", pulse, true, when)
}

// started starts a session at T-10 min with pre-dose readings at T-5 min.
func started(t *testing.T, m *Manager, sys, dia float64) Session {
	t.Helper()
	s, _, err := m.Start("", "", at(-10))
	if err != nil {
		t.Fatal(err)
	}
	oximeter(m, 98, 72, at(-5))
	bp(m, sys, dia, at(-5))
	return s
}

func mustActive(t *testing.T, m *Manager) Session {
	t.Helper()
	s, ok := m.Active()
	if !ok {
		t.Fatal("no active session")
	}
	return s
}

func vital(t *testing.T, c *Check, metric string) VitalCheck {
	t.Helper()
	if c == nil {
		t.Fatal("no check")
	}
	for _, v := range c.Vitals {
		if v.Metric == metric {
			return v
		}
	}
	t.Fatalf("check has no %s: %+v", metric, c.Vitals)
	return VitalCheck{}
}

func describe(c *Check) string {
	if c == nil {
		return "<nil>"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "pass=%v vitals=%v obs=%v notes=%q", c.Pass, c.VitalsPass, c.ObservationComplete, c.Notes)
	for _, v := range c.Vitals {
		fmt.Fprintf(&b, " %s:%s(%s)", v.Metric, v.Result, v.Reason)
	}
	return b.String()
}
