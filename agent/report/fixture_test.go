package report

import (
	"bytes"
	"math"
	"testing"
	"time"

	"github.com/vigil-monitor/vigil/agent/alarm"
	"github.com/vigil-monitor/vigil/drivers"
)

// t0 is the start of every fixture session.
var t0 = time.Date(2025, 3, 14, 9, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func fp(v float64) *float64 { return &v }

func sp(s string) *string { return &s }

const (
	oximeter = "oximeter-1"
	nibp     = "nibp-1"
)

// smallSession is a short session with one of each case the exports must
// handle, its readings deliberately out of order:
//   - valid SpO2 and pulse with a device time, one with a flag;
//   - an invalid SpO2 carrying a device sentinel (127) and sensor-off;
//   - a "valid" SpO2 whose value is NaN (a caller bug): exported as invalid;
//   - one NIBP measurement (systolic, diastolic, mean, pulse) at one time;
//   - a second NIBP measurement whose diastolic failed;
//   - a pleth waveform batch (left out and counted);
//   - a medium SpO2 alarm (start, end) acknowledged from a phone, and a
//     high systolic alarm still active at the end.
func smallSession() Session {
	ended := at(2*time.Hour + 5*time.Minute)
	drift := -3 * time.Second
	readings := []drivers.Reading{
		{Device: nibp, Seq: 5, Metric: drivers.NIBPSystolic, Value: 176, Valid: true, Received: at(50 * time.Minute)},
		{Device: nibp, Seq: 6, Metric: drivers.NIBPDiastolic, Value: 0, Valid: false, Flags: drivers.FlagCuffError, Received: at(50 * time.Minute)},
		{Device: oximeter, Seq: 1, Metric: drivers.SpO2, Value: 98, Valid: true, Received: at(time.Second), DeviceTime: at(time.Second + drift)},
		{Device: oximeter, Seq: 2, Metric: drivers.PulseRate, Value: 72, Valid: true, Received: at(time.Second), DeviceTime: at(time.Second + drift)},
		{Device: oximeter, Seq: 3, Metric: drivers.SpO2, Value: 127, Valid: false, Flags: drivers.FlagSensorOff | drivers.FlagOutOfRange, Received: at(2 * time.Second)},
		{Device: oximeter, Seq: 4, Metric: drivers.Pleth, Samples: []float64{1, 2, 3}, SampleRate: 75, Received: at(2 * time.Second)},
		{Device: oximeter, Seq: 5, Metric: drivers.SpO2, Value: math.NaN(), Valid: true, Received: at(3 * time.Second)},
		{Device: oximeter, Seq: 6, Metric: drivers.SpO2, Value: 96.5, Valid: true, Flags: drivers.FlagLowPerfusion, Received: at(4 * time.Second)},
		{Device: nibp, Seq: 1, Metric: drivers.NIBPSystolic, Value: 128, Valid: true, Received: at(2 * time.Minute)},
		{Device: nibp, Seq: 2, Metric: drivers.NIBPDiastolic, Value: 82, Valid: true, Received: at(2 * time.Minute)},
		{Device: nibp, Seq: 3, Metric: drivers.NIBPMean, Value: 97, Valid: true, Received: at(2 * time.Minute)},
		{Device: nibp, Seq: 4, Metric: drivers.NIBPPulseRate, Value: 74, Valid: true, Received: at(2 * time.Minute)},
		{Device: oximeter, Seq: 7, Metric: drivers.SpO2, Value: 97, Valid: true, Received: at(2*time.Hour + 4*time.Minute)},
	}
	spo2Low := alarm.Event{
		AlarmID: "spo2-low-medium/oximeter-1", EventID: "ev-1", Kind: alarm.Physiological, Priority: alarm.Medium,
		Metric: "spo2", Value: fp(89), Unit: "%", Limit: fp(90), Condition: "below",
		Site: "clinic-a", Room: "room-1", Device: oximeter, Session: sp("s-fixture0000000001"),
		Onset: at(30 * time.Minute), AckURL: "http://room-1.clinic.lan/ack/SECRETTOKEN",
	}
	start, end := spo2Low, spo2Low
	start.Phase, start.State, start.Sent, start.Text = alarm.PhaseStart, alarm.Active, at(30*time.Minute+15*time.Second), "** SpO2 89 % below 90 %"
	end.Phase, end.State, end.Sent, end.Text = alarm.PhaseEnd, alarm.Resolved, at(33*time.Minute), "** SpO2 back to 93 %"
	end.Value = fp(93)
	sysHigh := alarm.Event{
		AlarmID: "nibp_systolic-high-medium/nibp-1", EventID: "ev-2", Phase: alarm.PhaseStart, Kind: alarm.Physiological,
		Priority: alarm.Medium, State: alarm.Active, Metric: "nibp_systolic", Value: fp(176), Unit: "mm[Hg]",
		Limit: fp(160), Condition: "above", Text: "** NIBP systolic 176 mmHg above 160", Device: nibp,
		Onset: at(50 * time.Minute), Sent: at(50 * time.Minute),
	}
	escalated := sysHigh
	escalated.Phase, escalated.Priority, escalated.Text, escalated.Sent = alarm.PhaseUpdate, alarm.High, "*** NIBP systolic 176 mmHg, escalated", at(52*time.Minute)
	return Session{
		ID: "s-fixture0000000001", Site: "clinic-a", Room: "room-1", Route: "im",
		Started: t0, Ended: &ended,
		Doses: []time.Time{at(10 * time.Minute)},
		Baseline: map[string]Value{
			"spo2":           {Value: 98, At: at(time.Second), Device: oximeter},
			"pulse_rate":     {Value: 72, At: at(time.Second), Device: oximeter},
			"nibp_systolic":  {Value: 128, Unit: "mm[Hg]", At: at(2 * time.Minute), Device: nibp},
			"nibp_diastolic": {Value: 82, At: at(2 * time.Minute), Device: nibp},
		},
		Check: &Check{
			At: ended,
			Metrics: []MetricCheck{
				{Metric: "spo2", Baseline: fp(98), Final: fp(97), WithinTolerance: true},
				{Metric: "nibp_systolic", Baseline: fp(128), Final: fp(176), WithinTolerance: false},
				{Metric: "nibp_diastolic", Baseline: fp(82)},
			},
			ObservationLongEnough: false,
			Observed:              time.Hour + 55*time.Minute,
			MinObservation:        2 * time.Hour,
			Result:                "check failed: systolic outside 20 % of baseline; observation shorter than 2 h",
		},
		Readings: readings,
		Alarms:   []alarm.Event{end, escalated, start, sysHigh}, // out of order on purpose
		Acknowledgements: []Ack{
			{AlarmID: spo2Low.AlarmID, EventID: "ev-1", By: "RN Kim", Via: "phone link", At: at(31 * time.Minute)},
			{AlarmID: "unknown-alarm", By: "Dr Lee", Via: "cli", At: at(60 * time.Minute)},
		},
	}
}

// longSession is a session of the given length with SpO2, pulse and
// perfusion index at 1 Hz, an NIBP measurement every 15 minutes, a
// desaturation with its alarm, a sensor-off gap, and two doses: the shape
// of a real ketamine session (clinical.md 3) for benchmarks and the
// browser test.
func longSession(length time.Duration) Session {
	ended := at(length)
	n := int(length / time.Second)
	s := Session{
		ID: "s-long000000000001", Site: "clinic-a", Room: "room-2", Route: "iv",
		Started: t0, Ended: &ended,
		Doses: []time.Time{at(10 * time.Minute), at(40 * time.Minute)},
		Baseline: map[string]Value{
			"spo2": {Value: 97, At: at(9 * time.Minute)}, "pulse_rate": {Value: 70, At: at(9 * time.Minute)},
			"nibp_systolic": {Value: 124, At: at(5 * time.Minute)}, "nibp_diastolic": {Value: 80, At: at(5 * time.Minute)},
		},
		Readings: make([]drivers.Reading, 0, 3*n+4*(n/900+1)),
	}
	var oxSeq, bpSeq uint64
	for i := range n {
		t := at(time.Duration(i) * time.Second)
		spo2 := 97 + 1.5*math.Sin(float64(i)/300)
		if i >= 1800 && i < 1900 { // a desaturation at T+20 min
			spo2 = 88 - 2*math.Sin(float64(i-1800)/100*math.Pi)
		}
		pulse := 72 + 8*math.Sin(float64(i)/700)
		valid := !(i >= 3000 && i < 3060) // a minute of sensor off
		var flags drivers.Flags
		if !valid {
			flags = drivers.FlagSensorOff
		}
		for _, m := range []struct {
			id drivers.MetricID
			v  float64
		}{{drivers.SpO2, spo2}, {drivers.PulseRate, pulse}, {drivers.PerfusionIndex, 2.5}} {
			oxSeq++
			s.Readings = append(s.Readings, drivers.Reading{Device: oximeter, Seq: oxSeq, Metric: m.id,
				Value: math.Round(m.v*10) / 10, Valid: valid, Flags: flags, Received: t})
		}
		if i%900 == 300 {
			k := float64(i / 900)
			for _, m := range []struct {
				id drivers.MetricID
				v  float64
			}{{drivers.NIBPSystolic, 124 + 6*k}, {drivers.NIBPDiastolic, 80 + 3*k}, {drivers.NIBPMean, 95 + 4*k}, {drivers.NIBPPulseRate, 74}} {
				bpSeq++
				s.Readings = append(s.Readings, drivers.Reading{Device: nibp, Seq: bpSeq, Metric: m.id, Value: m.v, Valid: true, Received: t})
			}
		}
	}
	ev := alarm.Event{AlarmID: "spo2-low-medium/oximeter-1", EventID: "long-1", Kind: alarm.Physiological,
		Priority: alarm.Medium, Metric: "spo2", Value: fp(87), Unit: "%", Limit: fp(90), Text: "** SpO2 87 % below 90 %",
		Device: oximeter, Onset: at(1810 * time.Second)}
	start, end := ev, ev
	start.Phase, start.State, start.Sent = alarm.PhaseStart, alarm.Active, at(1825*time.Second)
	end.Phase, end.State, end.Sent = alarm.PhaseEnd, alarm.Resolved, at(1890*time.Second)
	off := alarm.Event{AlarmID: "sensor-off/oximeter-1", EventID: "long-2", Phase: alarm.PhaseStart, Kind: alarm.Technical,
		Priority: alarm.High, State: alarm.Active, Condition: "sensor_off", Text: "*** sensor off", Device: oximeter,
		Onset: at(3000 * time.Second), Sent: at(3010 * time.Second)}
	offEnd := off
	offEnd.Phase, offEnd.State, offEnd.Sent = alarm.PhaseEnd, alarm.Resolved, at(3060*time.Second)
	s.Alarms = []alarm.Event{start, end, off, offEnd}
	s.Acknowledgements = []Ack{{AlarmID: ev.AlarmID, EventID: "long-1", By: "RN Kim", Via: "phone link", At: at(1840 * time.Second)}}
	s.Check = &Check{At: ended, ObservationLongEnough: true, Observed: length - 10*time.Minute, MinObservation: 2 * time.Hour,
		Metrics: []MetricCheck{{Metric: "spo2", Baseline: fp(97), Final: fp(97.4), WithinTolerance: true}},
		Result:  "check passed"}
	return s
}

// render runs one writer and returns its output.
func render(t testing.TB, write func(*bytes.Buffer, Session) error, s Session) string {
	t.Helper()
	var b bytes.Buffer
	if err := write(&b, s); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func csvOf(b *bytes.Buffer, s Session) error  { return WriteCSV(b, s) }
func jsonOf(b *bytes.Buffer, s Session) error { return WriteJSON(b, s) }
func fhirOf(b *bytes.Buffer, s Session) error { return WriteFHIR(b, s) }
func htmlOf(b *bytes.Buffer, s Session) error { return WriteHTML(b, s) }
