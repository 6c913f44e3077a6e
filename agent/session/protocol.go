package session

import (
	"fmt"
	"math"
	"time"
)

// Rise-over-baseline limits of the ketamine protocol: rises of at least
// 40 mmHg systolic or 25 mmHg diastolic (esketamine label, clinical.md 3 and
// the rule table of clinical.md 4). They are alarm rules: the lead configures
// them in the alarm engine (alarm.Rule.RiseOverBaseline), which gets the
// baselines from the Baselines action.
const (
	DefaultRiseSystolic  = 40.0 // mmHg over the pre-dose baseline
	DefaultRiseDiastolic = 25.0 // mmHg over the pre-dose baseline
)

// BP is a blood pressure, systolic over diastolic, in mmHg.
type BP struct {
	Systolic  float64 `json:"systolic"`
	Diastolic float64 `json:"diastolic"`
}

func (b BP) String() string { return formatBP(b.Systolic, b.Diastolic) }

// Protocol is the ketamine session protocol. Every number is for the
// clinic's medical director to confirm; DefaultProtocol gives clinical.md 3's.
type Protocol struct {
	// PredoseBPLimit: a baseline above it (either value) is warned of.
	// Esketamine label: caution when baseline exceeds 140/90 (clinical.md 3).
	PredoseBPLimit BP
	// FirstNIBPAfterDose: the first scheduled reading after the first dose.
	// Esketamine label: BP again about 40 minutes after; rises peak around
	// 40 min (clinical.md 3).
	FirstNIBPAfterDose time.Duration
	// NIBPInterval: the following readings, each this long after the
	// previous scheduled one. KAP clinics commonly measure every 10-15 min
	// (clinical.md 3).
	NIBPInterval time.Duration
	// NIBPGrace: how late a scheduled reading may be before it counts as
	// missed; a reading up to NIBPGrace early also counts, as staff often
	// start the cuff a little before the mark. Vigil's own number: a cuff
	// measurement takes up to a minute or two, and a retry as long again.
	NIBPGrace time.Duration
	// MinObservation: the observation time after the dose before the end
	// check counts as complete. Esketamine label: at least 2 hours
	// (clinical.md 3).
	MinObservation time.Duration
	// CheckTolerance: each vital must be within this fraction of its
	// baseline at the end. Discharge scores (PADSS, modified Aldrete) give
	// full marks within 20% (clinical.md 3).
	CheckTolerance float64
	// DischargeSpO2: the end SpO2 must also be above this, in %: "SpO2 above
	// 92% on room air" (clinical.md 3).
	DischargeSpO2 float64
}

// DefaultProtocol returns the defaults of clinical.md 3.
func DefaultProtocol() Protocol {
	return Protocol{
		PredoseBPLimit:     BP{Systolic: 140, Diastolic: 90},
		FirstNIBPAfterDose: 40 * time.Minute,
		NIBPInterval:       15 * time.Minute,
		NIBPGrace:          5 * time.Minute,
		MinObservation:     2 * time.Hour,
		CheckTolerance:     0.20,
		DischargeSpO2:      92,
	}
}

// ProtocolError is a protocol setting that is not valid.
type ProtocolError struct {
	Field  string
	Reason string
}

func (e *ProtocolError) Error() string {
	return "session protocol: " + e.Field + ": " + e.Reason
}

// maxProtocolDuration bounds the durations: a session is hours, not days.
const maxProtocolDuration = 24 * time.Hour

// Validate checks the protocol; the config package calls it at load time.
func (p Protocol) Validate() error {
	bad := func(field, format string, args ...any) error {
		return &ProtocolError{Field: field, Reason: fmt.Sprintf(format, args...)}
	}
	inRange := func(v, lo, hi float64) bool { return !math.IsNaN(v) && v >= lo && v <= hi }
	switch {
	// The catalogue's possible ranges (drivers/metric.go).
	case !inRange(p.PredoseBPLimit.Systolic, 20, 300):
		return bad("PredoseBPLimit.Systolic", "%v mmHg is outside 20-300", p.PredoseBPLimit.Systolic)
	case !inRange(p.PredoseBPLimit.Diastolic, 10, 250):
		return bad("PredoseBPLimit.Diastolic", "%v mmHg is outside 10-250", p.PredoseBPLimit.Diastolic)
	case p.PredoseBPLimit.Diastolic >= p.PredoseBPLimit.Systolic:
		return bad("PredoseBPLimit", "diastolic %v must be below systolic %v", p.PredoseBPLimit.Diastolic, p.PredoseBPLimit.Systolic)
	case p.FirstNIBPAfterDose <= 0 || p.FirstNIBPAfterDose > maxProtocolDuration:
		return bad("FirstNIBPAfterDose", "%v is outside (0, 24h]", p.FirstNIBPAfterDose)
	case p.NIBPInterval < time.Minute || p.NIBPInterval > maxProtocolDuration:
		return bad("NIBPInterval", "%v is outside [1m, 24h]", p.NIBPInterval)
	case p.NIBPGrace <= 0:
		return bad("NIBPGrace", "%v must be positive", p.NIBPGrace)
	// A reading late by more than the grace is missed, and one early by up
	// to the grace belongs to the next slot: the two windows must not meet.
	case 2*p.NIBPGrace >= p.NIBPInterval:
		return bad("NIBPGrace", "%v must be less than half of NIBPInterval (%v)", p.NIBPGrace, p.NIBPInterval)
	case p.NIBPGrace >= p.FirstNIBPAfterDose:
		return bad("NIBPGrace", "%v must be less than FirstNIBPAfterDose (%v)", p.NIBPGrace, p.FirstNIBPAfterDose)
	case p.MinObservation < 0 || p.MinObservation > maxProtocolDuration:
		return bad("MinObservation", "%v is outside [0, 24h]", p.MinObservation)
	case !inRange(p.CheckTolerance, 0, 1) || p.CheckTolerance == 0:
		return bad("CheckTolerance", "%v is outside (0, 1]", p.CheckTolerance)
	case !inRange(p.DischargeSpO2, 0, 100):
		return bad("DischargeSpO2", "%v %% is outside 0-100", p.DischargeSpO2)
	}
	return nil
}
