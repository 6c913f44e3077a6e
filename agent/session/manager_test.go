package session

import (
	"errors"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestKetamineTimeline follows one session from start to end with a fake
// clock: baseline, dose at T0, the T+40 reading, a missed slot and its late
// reading, the regular readings, and the end check after 2 h.
func TestKetamineTimeline(t *testing.T) {
	m := newTestManager(t)
	steps := []struct {
		name string
		do   func() []Action
		want string
	}{
		{"start", func() []Action {
			_, acts, err := m.Start("IM", "chart 4711", at(-10))
			if err != nil {
				t.Fatal(err)
			}
			return acts
		}, "SessionChanged"},
		{"oximeter before the dose", func() []Action {
			return append(m.Observe("ox", "spo2", 98, true, at(-5)), m.Observe("ox", "pulse_rate", 72, true, at(-5))...)
		}, ""},
		{"baseline blood pressure", func() []Action { return bp(m, 120, 80, at(-4)) },
			"SessionChanged,SessionChanged,SessionChanged"},
		{"no schedule before the dose", func() []Action { return m.Tick(at(-1)) }, ""},
		{"dose at T0", func() []Action {
			acts, err := m.Dose(at(0))
			if err != nil {
				t.Fatal(err)
			}
			return acts
		}, "Baselines,SessionChanged"},
		{"T+39: nothing due", func() []Action { return m.Tick(at(39)) }, ""},
		{"T+40: first reading due", func() []Action { return m.Tick(at(40)) }, "StartNIBP,SessionChanged"},
		{"T+40.5: started once", func() []Action { return m.Tick(at(40.5)) }, ""},
		{"T+41: reading satisfies the slot", func() []Action { return bp(m, 135, 88, at(41)) },
			"SessionChanged,SessionChanged,SessionChanged"},
		{"T+56: next reading due", func() []Action { return m.Tick(at(56)) }, "StartNIBP,SessionChanged"},
		{"T+61: still within the grace", func() []Action { return m.Tick(at(61)) }, ""},
		{"T+61.5: missed", func() []Action { return m.Tick(at(61.5)) }, "MissedNIBP(on),SessionChanged"},
		{"T+62: advisory raised once", func() []Action { return m.Tick(at(62)) }, ""},
		{"T+64: late reading clears it", func() []Action { return bp(m, 130, 85, at(64)) },
			"MissedNIBP(off),SessionChanged,SessionChanged,SessionChanged"},
	}
	for _, st := range steps {
		wantKinds(t, st.name, st.do(), st.want)
	}

	s := mustActive(t, m)
	if s.Route != RouteIM || s.ClinicRef.Reveal() != "chart 4711" {
		t.Errorf("route %q ref %q", s.Route, s.ClinicRef.Reveal())
	}
	if len(s.Baseline) != 5 || s.Baseline["nibp_systolic"] != (Measurement{120, at(-4), "bp"}) ||
		s.Baseline["spo2"] != (Measurement{98, at(-5), "ox"}) {
		t.Errorf("baseline %+v", s.Baseline)
	}
	if s.BaselineWarning != "" || len(s.BaselineMissing) != 0 {
		t.Errorf("warning %q missing %v", s.BaselineWarning, s.BaselineMissing)
	}
	sc := s.Schedule
	wantTaken := []ScheduledReading{{Due: at(40), At: at(41)}, {Due: at(56), At: at(64), Late: true}}
	if len(sc.Taken) != 2 || sc.Taken[0] != wantTaken[0] || sc.Taken[1] != wantTaken[1] {
		t.Errorf("taken %+v", sc.Taken)
	}
	if sc.MissedCount != 1 || len(sc.Missed) != 1 || !sc.Missed[0].Equal(at(56)) || sc.AdvisoryOn {
		t.Errorf("missed %+v", sc)
	}
	if due, ok := m.NextNIBPDue(); !ok || !due.Equal(at(79)) {
		t.Errorf("next due %v %v, want T+79", due, ok)
	}

	// Regular readings: each slot due 15 min after the last reading, the
	// measurement done a minute after StartNIBP.
	for _, due := range []float64{79, 95, 111} {
		if a, ok := find[StartNIBP](m.Tick(at(due))); !ok || !a.Due.Equal(at(due)) {
			t.Fatalf("T+%v: no StartNIBP", due)
		}
		if kinds(bp(m, 124, 82, at(due+1))) != "SessionChanged,SessionChanged,SessionChanged" {
			t.Fatalf("T+%v: reading not taken", due+1)
		}
	}
	oximeter(m, 97, 76, at(124))
	if got := m.Elapsed(at(124)); got != 134*time.Minute {
		t.Errorf("elapsed %v", got)
	}

	ended, acts, err := m.End(at(125))
	if err != nil {
		t.Fatal(err)
	}
	wantKinds(t, "end", acts, "BaselinesCleared,SessionChanged")
	if cl, _ := find[BaselinesCleared](acts); len(cl.Values) != 5 || cl.Values["nibp_diastolic"].Device != "bp" {
		t.Errorf("cleared %+v", cl)
	}
	c := ended.Check
	if c == nil || !c.Pass || !c.VitalsPass || !c.ObservationComplete || len(c.Vitals) != 5 {
		t.Fatalf("check %s", describe(c))
	}
	if c.ObservedSeconds != 125*60 || c.MinObservationSeconds != 7200 || c.Tolerance != 0.2 {
		t.Errorf("check numbers %+v", c)
	}
	if len(c.Notes) != 1 || c.Notes[0] != "1 scheduled blood-pressure reading(s) missed" {
		t.Errorf("notes %q", c.Notes)
	}
	sys := vital(t, c, "nibp_systolic")
	if sys.Latest == nil || sys.Latest.Value != 124 || !sys.Latest.At.Equal(at(112)) || sys.ChangePercent == nil ||
		math.Abs(*sys.ChangePercent-(4.0/120*100)) > 1e-9 {
		t.Errorf("systolic %+v", sys)
	}
	if ended.Ended != at(125) || !ended.Schedule.NextDue.IsZero() {
		t.Errorf("ended %v next %v", ended.Ended, ended.Schedule.NextDue)
	}
	if _, ok := m.Active(); ok {
		t.Error("still active after End")
	}
	if _, ok := m.NextNIBPDue(); ok {
		t.Error("next due after End")
	}
	if m.Elapsed(at(130)) != 0 || m.Tick(at(200)) != nil || m.Observe("bp", "nibp_systolic", 120, true, at(201)) != nil {
		t.Error("an ended session still acts")
	}
	// A new session may start once the last one ended.
	s2, _, err := m.Start("", "", at(130))
	if err != nil || s2.ID == ended.ID {
		t.Fatalf("second session: %v %q", err, s2.ID)
	}
}

// TestEndCheck covers the end check's outcomes.
func TestEndCheck(t *testing.T) {
	cases := []struct {
		name string
		// after runs after a dose at T0 (baseline 98 %, 72 /min, 120/80).
		after        func(m *Manager)
		end          float64
		pass, vitals bool
		observation  bool
		results      map[string]Result
		notes        []string
	}{
		{"all within 20% after 2 h", func(m *Manager) {
			oximeter(m, 96, 80, at(119))
			bp(m, 130, 85, at(119))
		}, 120, true, true, true,
			map[string]Result{"spo2": ResultPass, "pulse_rate": ResultPass, "nibp_systolic": ResultPass, "nibp_diastolic": ResultPass, "nibp_mean": ResultPass},
			// Slots T+40, 55, 70, 85 and 100 passed without a reading; the one
			// at T+119 satisfies the slot due T+115.
			[]string{"5 scheduled blood-pressure reading(s) missed"}},
		{"exactly 20% passes", func(m *Manager) {
			oximeter(m, 96, 86.4, at(119))
			bp(m, 144, 64, at(119))
		}, 120, true, true, true,
			map[string]Result{"pulse_rate": ResultPass, "nibp_systolic": ResultPass, "nibp_diastolic": ResultPass}, nil},
		{"ended early", func(m *Manager) {
			oximeter(m, 97, 75, at(84))
			bp(m, 125, 80, at(84))
		}, 85, false, true, false, map[string]Result{"nibp_systolic": ResultPass},
			[]string{"observation shorter than 2 h (1 h 25 min since the last dose)", "3 scheduled blood-pressure reading(s) missed"}},
		{"systolic still high fails", func(m *Manager) {
			oximeter(m, 97, 75, at(130))
			bp(m, 150, 85, at(130))
		}, 130, false, false, true,
			map[string]Result{"nibp_systolic": ResultFail, "nibp_diastolic": ResultPass, "spo2": ResultPass}, nil},
		{"SpO2 within 20% but not above 92 fails", func(m *Manager) {
			oximeter(m, 92, 75, at(130))
			bp(m, 120, 80, at(130))
		}, 130, false, false, true, map[string]Result{"spo2": ResultFail, "pulse_rate": ResultPass}, nil},
		{"no value after the dose", func(m *Manager) {
			oximeter(m, 97, 75, at(130))
		}, 130, false, false, true,
			map[string]Result{"nibp_systolic": ResultNoValue, "nibp_diastolic": ResultNoValue, "spo2": ResultPass}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := newTestManager(t)
			started(t, m, 120, 80)
			if _, err := m.Dose(at(0)); err != nil {
				t.Fatal(err)
			}
			tc.after(m)
			s, _, err := m.End(at(tc.end))
			if err != nil {
				t.Fatal(err)
			}
			c := s.Check
			if c == nil || c.Pass != tc.pass || c.VitalsPass != tc.vitals || c.ObservationComplete != tc.observation {
				t.Fatalf("check %s", describe(c))
			}
			for metric, want := range tc.results {
				if v := vital(t, c, metric); v.Result != want {
					t.Errorf("%s: %s (%s), want %s", metric, v.Result, v.Reason, want)
				}
			}
			if tc.notes != nil && strings.Join(c.Notes, "|") != strings.Join(tc.notes, "|") {
				t.Errorf("notes %q, want %q", c.Notes, tc.notes)
			}
		})
	}
}

func TestEndCheckReasons(t *testing.T) {
	m := newTestManager(t)
	started(t, m, 120, 80)
	if _, err := m.Dose(at(0)); err != nil {
		t.Fatal(err)
	}
	oximeter(m, 92, 50, at(130))
	bp(m, 150, 80, at(130))
	s, _, _ := m.End(at(130))
	for metric, want := range map[string]string{
		"nibp_systolic":  "150 is more than 20% above the baseline 120",
		"pulse_rate":     "50 is more than 20% below the baseline 72",
		"spo2":           "SpO2 92% is not above 92%",
		"nibp_diastolic": "within 20% of baseline",
	} {
		if v := vital(t, s.Check, metric); v.Reason != want {
			t.Errorf("%s: %q, want %q", metric, v.Reason, want)
		}
	}
}

func TestEndWithoutDose(t *testing.T) {
	m := newTestManager(t)
	started(t, m, 120, 80)
	s, acts, err := m.End(at(30))
	if err != nil {
		t.Fatal(err)
	}
	wantKinds(t, "end", acts, "SessionChanged")
	if c := s.Check; c == nil || c.Pass || len(c.Vitals) != 0 || len(c.Notes) != 1 || c.Notes[0] != "no dose recorded" {
		t.Fatalf("check %s", describe(s.Check))
	}
}

func TestBaselineWarning(t *testing.T) {
	cases := []struct {
		name     string
		sys, dia float64 // 0: not measured
		want     string  // "" for no warning
		missing  []string
	}{
		{"normal", 120, 80, "", nil},
		{"at the limit is not above it", 140, 90, "", nil},
		{"systolic above", 150, 85, "baseline blood pressure 150/85 mmHg is above the pre-dose limit 140/90 mmHg", nil},
		{"diastolic above", 130, 95, "baseline blood pressure 130/95 mmHg is above the pre-dose limit 140/90 mmHg", nil},
		{"only diastolic measured", 0, 95, "baseline blood pressure -/95 mmHg is above the pre-dose limit 140/90 mmHg",
			[]string{"nibp_systolic"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := newTestManager(t)
			if _, _, err := m.Start("", "", at(-10)); err != nil {
				t.Fatal(err)
			}
			oximeter(m, 98, 70, at(-5))
			if tc.sys != 0 {
				m.Observe("bp", "nibp_systolic", tc.sys, true, at(-5))
			}
			m.Observe("bp", "nibp_diastolic", tc.dia, true, at(-5))
			acts, err := m.Dose(at(0))
			if err != nil {
				t.Fatal(err)
			}
			high, gotHigh := find[BaselineHigh](acts)
			if gotHigh != (tc.want != "") {
				t.Fatalf("BaselineHigh %v in %s", gotHigh, kinds(acts))
			}
			if gotHigh && (high.Systolic != tc.sys || high.Diastolic != tc.dia || high.Limit != (BP{140, 90})) {
				t.Errorf("BaselineHigh %+v", high)
			}
			s := mustActive(t, m)
			if s.BaselineWarning != tc.want {
				t.Errorf("warning %q, want %q", s.BaselineWarning, tc.want)
			}
			miss, gotMissing := find[BaselineMissing](acts)
			if strings.Join(miss.Metrics, ",") != strings.Join(tc.missing, ",") || gotMissing != (tc.missing != nil) {
				t.Errorf("missing %v, want %v", miss.Metrics, tc.missing)
			}
		})
	}
}

func TestSecondDoseKeepsFirstBaseline(t *testing.T) {
	m := newTestManager(t)
	started(t, m, 120, 80)
	if _, err := m.Dose(at(0)); err != nil {
		t.Fatal(err)
	}
	oximeter(m, 95, 90, at(3))
	bp(m, 150, 95, at(3)) // before the T+40 window: not a scheduled reading
	acts, err := m.Dose(at(5))
	if err != nil {
		t.Fatal(err)
	}
	wantKinds(t, "second dose", acts, "SessionChanged")
	s := mustActive(t, m)
	if s.Baseline["nibp_systolic"].Value != 120 || s.Baseline["pulse_rate"].Value != 72 || len(s.Doses) != 2 {
		t.Fatalf("baseline %+v doses %v", s.Baseline, s.Doses)
	}
	if len(s.Schedule.Taken) != 0 || !s.Schedule.NextDue.Equal(at(40)) {
		t.Errorf("schedule %+v", s.Schedule)
	}
	// The observation runs from the last dose: 2 h after the first is not
	// enough.
	oximeter(m, 97, 75, at(120))
	bp(m, 122, 80, at(120))
	end, _, _ := m.End(at(120))
	if end.Check.ObservationComplete || end.Check.ObservedSeconds != 115*60 {
		t.Errorf("check %s observed %v", describe(end.Check), end.Check.ObservedSeconds)
	}
}

// With an interval longer than the first reading's delay, a later dose gets
// its own reading at dose+FirstNIBPAfterDose.
func TestLaterDoseBringsReadingForward(t *testing.T) {
	p := DefaultProtocol()
	p.NIBPInterval = 60 * time.Minute
	m, err := NewManager("room-1", p)
	if err != nil {
		t.Fatal(err)
	}
	started(t, m, 120, 80)
	m.Dose(at(0))
	m.Tick(at(40))
	bp(m, 125, 80, at(41)) // next due T+101
	m.Dose(at(45))
	if due, _ := m.NextNIBPDue(); !due.Equal(at(85)) {
		t.Errorf("next due %v, want T+85", due)
	}
}

func TestMissingBaseline(t *testing.T) {
	m := newTestManager(t)
	if _, _, err := m.Start("", "", at(-10)); err != nil {
		t.Fatal(err)
	}
	acts, err := m.Dose(at(0))
	if err != nil {
		t.Fatal(err)
	}
	wantKinds(t, "dose", acts, "BaselineMissing,SessionChanged")
	miss, _ := find[BaselineMissing](acts)
	if strings.Join(miss.Metrics, ",") != "spo2,pulse_rate,nibp_systolic,nibp_diastolic" {
		t.Errorf("missing %v", miss.Metrics)
	}
	oximeter(m, 97, 70, at(130))
	bp(m, 120, 80, at(130))
	s, _, _ := m.End(at(130))
	if s.Check.Pass || vital(t, s.Check, "spo2").Result != ResultNoBaseline {
		t.Errorf("check %s", describe(s.Check))
	}
	for _, v := range s.Check.Vitals {
		if v.Metric == "nibp_mean" {
			t.Error("optional nibp_mean checked without a baseline")
		}
	}
}

func TestInvalidReadingsIgnored(t *testing.T) {
	m := newTestManager(t)
	// Before the session: the previous patient's reading must not become
	// the baseline.
	m.Observe("bp", "nibp_systolic", 170, true, at(-20))
	if _, _, err := m.Start("", "", at(-10)); err != nil {
		t.Fatal(err)
	}
	m.Observe("bp", "nibp_systolic", 165, true, at(-11)) // stamped before the start
	bp(m, 120, 80, at(-6))
	m.Observe("ox", "spo2", 97, true, at(-6))
	m.Observe("ox", "pulse_rate", 70, true, at(-6))
	bad := []struct {
		metric string
		value  float64
		valid  bool
	}{
		{"nibp_systolic", 90, false},        // the device said invalid
		{"nibp_systolic", math.NaN(), true}, // not a number
		{"nibp_systolic", math.Inf(1), true},
		{"nibp_systolic", 400, true}, // outside the possible range
		{"nibp_diastolic", -5, true},
		{"spo2", 101, true},
		{"spo2", 0, false},
		{"pulse_rate", 511, true},    // Nonin's "no value"
		{"perfusion_index", 5, true}, // not a session metric
		{"no_such_metric", 1, true},
		{"", 1, true},
	}
	for _, b := range bad {
		if acts := m.Observe("x", b.metric, b.value, b.valid, at(-3)); acts != nil {
			t.Errorf("%s %v %v: actions %s", b.metric, b.value, b.valid, kinds(acts))
		}
	}
	m.Dose(at(0))
	s := mustActive(t, m)
	for metric, want := range map[string]float64{"nibp_systolic": 120, "nibp_diastolic": 80, "spo2": 97, "pulse_rate": 70} {
		if got := s.Baseline[metric]; got.Value != want || !got.At.Equal(at(-6)) {
			t.Errorf("%s baseline %+v, want %v", metric, got, want)
		}
	}
	// An invalid systolic in the slot's window does not satisfy it.
	m.Tick(at(40))
	m.Observe("bp", "nibp_systolic", 0, false, at(41))
	if a, ok := find[MissedNIBP](m.Tick(at(46))); !ok || !a.On {
		t.Error("invalid reading satisfied the slot")
	}
}

// A reading belongs to a slot from NIBPGrace before its due time on.
func TestSlotWindow(t *testing.T) {
	m := newTestManager(t)
	started(t, m, 120, 80)
	m.Dose(at(0))
	bp(m, 125, 80, at(34.9)) // before T+35: an extra reading
	if due, _ := m.NextNIBPDue(); !due.Equal(at(40)) {
		t.Fatalf("extra reading moved the schedule to %v", due)
	}
	bp(m, 125, 80, at(35)) // early, within the grace
	s := mustActive(t, m)
	if len(s.Schedule.Taken) != 1 || s.Schedule.Taken[0].Late || !s.Schedule.NextDue.Equal(at(50)) {
		t.Fatalf("schedule %+v", s.Schedule)
	}
	// No StartNIBP for a slot already satisfied.
	if acts := m.Tick(at(40)); acts != nil {
		t.Errorf("T+40: %s", kinds(acts))
	}
}

// A slot with no reading for a whole interval gives way to the next one: a
// new StartNIBP, one more missed slot, and the advisory stays on.
func TestWholeSlotMissed(t *testing.T) {
	m := newTestManager(t)
	started(t, m, 120, 80)
	m.Dose(at(0))
	wantKinds(t, "T+40", m.Tick(at(40)), "StartNIBP,SessionChanged")
	wantKinds(t, "T+46", m.Tick(at(46)), "MissedNIBP(on),SessionChanged")
	wantKinds(t, "T+50 (next window opens)", m.Tick(at(50)), "SessionChanged")
	wantKinds(t, "T+55", m.Tick(at(55)), "StartNIBP,SessionChanged")
	wantKinds(t, "T+61", m.Tick(at(61)), "SessionChanged")
	s := mustActive(t, m)
	if s.Schedule.MissedCount != 2 || !s.Schedule.MissingSince.Equal(at(40)) || !s.Schedule.AdvisoryOn {
		t.Fatalf("schedule %+v", s.Schedule)
	}
	acts := bp(m, 125, 80, at(62))
	if a, ok := find[MissedNIBP](acts); !ok || a.On || !a.Due.Equal(at(40)) {
		t.Errorf("off %+v in %s", a, kinds(acts))
	}
}

// An agent down for days (or a clock jump) records the missed slots with a
// bounded list, and asks for one measurement, not hundreds.
func TestLongGap(t *testing.T) {
	m := newTestManager(t)
	started(t, m, 120, 80)
	m.Dose(at(0))
	acts := m.Tick(at(40 + 15*1000 + 1))
	wantKinds(t, "after the gap", acts, "StartNIBP,MissedNIBP(on),SessionChanged")
	s := mustActive(t, m)
	if s.Schedule.MissedCount != 1000 || len(s.Schedule.Missed) != maxScheduleRecords {
		t.Errorf("missed %d recorded %d", s.Schedule.MissedCount, len(s.Schedule.Missed))
	}
	if !s.Schedule.NextDue.Equal(at(40 + 15*1000)) {
		t.Errorf("next due %v", s.Schedule.NextDue)
	}
	end, _, _ := m.End(at(40 + 15*1000 + 2))
	if !strings.Contains(strings.Join(end.Check.Notes, "|"), "1000 scheduled blood-pressure reading(s) missed") {
		t.Errorf("notes %q", end.Check.Notes)
	}
}

// Ending while a slot is missed turns the advisory off.
func TestEndTurnsAdvisoryOff(t *testing.T) {
	m := newTestManager(t)
	started(t, m, 120, 80)
	m.Dose(at(0))
	m.Tick(at(40))
	m.Tick(at(46))
	_, acts, err := m.End(at(47))
	if err != nil {
		t.Fatal(err)
	}
	wantKinds(t, "end", acts, "MissedNIBP(off),BaselinesCleared,SessionChanged")
}

func TestStateErrors(t *testing.T) {
	m := newTestManager(t)
	if _, err := m.Dose(at(0)); !errors.Is(err, ErrNoSession) {
		t.Errorf("dose without session: %v", err)
	}
	if _, _, err := m.End(at(0)); !errors.Is(err, ErrNoSession) {
		t.Errorf("end without session: %v", err)
	}
	if _, _, err := m.Start("", "", time.Time{}); !IsInput(err) {
		t.Errorf("zero time: %v", err)
	}
	if _, _, err := m.Start("", "", at(0)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := m.Start("", "", at(1)); !errors.Is(err, ErrActive) {
		t.Errorf("second start: %v", err)
	}
	if _, err := m.Dose(at(-1)); !errors.Is(err, ErrTimeOrder) {
		t.Errorf("dose before start: %v", err)
	}
	if _, err := m.Dose(at(5)); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Dose(at(4)); !errors.Is(err, ErrTimeOrder) {
		t.Errorf("dose before the last one: %v", err)
	}
	if _, _, err := m.End(at(4)); !errors.Is(err, ErrTimeOrder) {
		t.Errorf("end before the last dose: %v", err)
	}
	for i := 1; i < MaxDoses; i++ {
		if _, err := m.Dose(at(5 + float64(i))); err != nil {
			t.Fatalf("dose %d: %v", i, err)
		}
	}
	if _, err := m.Dose(at(500)); !errors.Is(err, ErrTooManyDoses) {
		t.Errorf("dose past MaxDoses: %v", err)
	}
}

func TestStartInput(t *testing.T) {
	cases := []struct {
		route, ref string
		wantRoute  Route
		wantRef    string
		field      string // "" when valid
	}{
		{"", "", "", "", ""},
		{"lozenge", "", RouteLozenge, "", ""},
		{" IV ", "", RouteIV, "", ""},
		{"Intranasal", "A-17", RouteIntranasal, "A-17", ""},
		{"im", "  padded  ", RouteIM, "padded", ""},
		{"", strings.Repeat("é", 64), "", strings.Repeat("é", 64), ""},
		{"oral", "", "", "", "route"},
		{"iv;drop", "", "", "", "route"},
		{"", strings.Repeat("x", 65), "", "", "clinic_ref"},
		{"", "line\nbreak", "", "", "clinic_ref"},
		{"", "bad\xffutf8", "", "", "clinic_ref"},
	}
	for _, tc := range cases {
		m := newTestManager(t)
		s, _, err := m.Start(tc.route, tc.ref, at(0))
		if tc.field != "" {
			var ie *InputError
			if !errors.As(err, &ie) || ie.Field != tc.field {
				t.Errorf("%q %q: error %v, want field %s", tc.route, tc.ref, err, tc.field)
			}
			for _, input := range []string{tc.ref, tc.route} {
				if err != nil && input != "" && strings.Contains(err.Error(), input) {
					t.Errorf("error quotes the input: %v", err)
				}
			}
			if _, ok := m.Active(); ok {
				t.Errorf("%q %q: started anyway", tc.route, tc.ref)
			}
			continue
		}
		if err != nil || s.Route != tc.wantRoute || s.ClinicRef.Reveal() != tc.wantRef {
			t.Errorf("%q %q: %v route %q ref %q", tc.route, tc.ref, err, s.Route, s.ClinicRef.Reveal())
		}
	}
}

// The returned sessions are copies.
func TestActiveIsACopy(t *testing.T) {
	m := newTestManager(t)
	started(t, m, 120, 80)
	m.Dose(at(0))
	s := mustActive(t, m)
	s.Doses[0] = at(99)
	s.Baseline["spo2"] = Measurement{Value: 1}
	s.Schedule.NextDue = at(1)
	again := mustActive(t, m)
	if !again.Doses[0].Equal(at(0)) || again.Baseline["spo2"].Value != 98 || !again.Schedule.NextDue.Equal(at(40)) {
		t.Errorf("the manager's session changed through a copy: %+v", again)
	}
}

func TestNewManager(t *testing.T) {
	if _, err := NewManager("", DefaultProtocol()); !IsInput(err) {
		t.Errorf("empty room: %v", err)
	}
	p := DefaultProtocol()
	p.NIBPGrace = 0
	var pe *ProtocolError
	if _, err := NewManager("r", p); !errors.As(err, &pe) || pe.Field != "NIBPGrace" {
		t.Errorf("bad protocol: %v", err)
	}
}

func TestProtocolValidate(t *testing.T) {
	if err := DefaultProtocol().Validate(); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	cases := []struct {
		field string
		edit  func(p *Protocol)
	}{
		{"PredoseBPLimit.Systolic", func(p *Protocol) { p.PredoseBPLimit.Systolic = math.NaN() }},
		{"PredoseBPLimit.Systolic", func(p *Protocol) { p.PredoseBPLimit.Systolic = 400 }},
		{"PredoseBPLimit.Diastolic", func(p *Protocol) { p.PredoseBPLimit.Diastolic = 0 }},
		{"PredoseBPLimit", func(p *Protocol) { p.PredoseBPLimit = BP{90, 140} }},
		{"FirstNIBPAfterDose", func(p *Protocol) { p.FirstNIBPAfterDose = 0 }},
		{"FirstNIBPAfterDose", func(p *Protocol) { p.FirstNIBPAfterDose = 25 * time.Hour }},
		{"NIBPInterval", func(p *Protocol) { p.NIBPInterval = 30 * time.Second }},
		{"NIBPGrace", func(p *Protocol) { p.NIBPGrace = -time.Second }},
		{"NIBPGrace", func(p *Protocol) { p.NIBPGrace = 7*time.Minute + 30*time.Second }},
		{"NIBPGrace", func(p *Protocol) { p.FirstNIBPAfterDose = 4 * time.Minute }},
		{"MinObservation", func(p *Protocol) { p.MinObservation = -time.Minute }},
		{"CheckTolerance", func(p *Protocol) { p.CheckTolerance = 0 }},
		{"CheckTolerance", func(p *Protocol) { p.CheckTolerance = 20 }},
		{"CheckTolerance", func(p *Protocol) { p.CheckTolerance = math.NaN() }},
		{"DischargeSpO2", func(p *Protocol) { p.DischargeSpO2 = 120 }},
	}
	for _, tc := range cases {
		p := DefaultProtocol()
		tc.edit(&p)
		var pe *ProtocolError
		if err := p.Validate(); !errors.As(err, &pe) || pe.Field != tc.field {
			t.Errorf("%s: %v", tc.field, err)
		}
	}
	// A 5 min interval (the anaesthesia standard) with a 2 min grace is fine.
	p := DefaultProtocol()
	p.NIBPInterval, p.NIBPGrace = 5*time.Minute, 2*time.Minute
	if err := p.Validate(); err != nil {
		t.Errorf("5 min interval: %v", err)
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		2 * time.Hour:                   "2 h",
		85*time.Minute + 59*time.Second: "1 h 25 min",
		45 * time.Minute:                "45 min",
		0:                               "0 min",
		-time.Minute:                    "0 min",
	} {
		if got := formatDuration(d); got != want {
			t.Errorf("%v: %q, want %q", d, got, want)
		}
	}
}

// The API, the reading pipeline and the ticker call the manager at once.
func TestConcurrentUse(t *testing.T) {
	m := newTestManager(t)
	started(t, m, 120, 80)
	m.Dose(at(0))
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				when := at(float64(i) / 5)
				m.Observe("ox", "spo2", 97, true, when)
				m.Tick(when)
				m.Active()
				m.NextNIBPDue()
				m.Elapsed(when)
			}
		}()
	}
	wg.Wait()
	if s := mustActive(t, m); s.latest["spo2"].Value != 97 {
		t.Errorf("latest %+v", s.latest)
	}
}

func BenchmarkObserve(b *testing.B) {
	m, _ := NewManager("room-1", DefaultProtocol())
	m.Start("", "", at(-10))
	m.Dose(at(0))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		m.Observe("ox", "spo2", 97, true, at(float64(i)/60000))
	}
}

func BenchmarkObserveNIBP(b *testing.B) {
	m, _ := NewManager("room-1", DefaultProtocol())
	m.Start("", "", at(-10))
	m.Dose(at(0))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		m.Observe("bp", "nibp_systolic", 120, true, at(float64(i)/60000))
	}
}

func BenchmarkTick(b *testing.B) {
	m, _ := NewManager("room-1", DefaultProtocol())
	m.Start("", "", at(-10))
	m.Dose(at(0))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		m.Tick(at(float64(i) / 60000))
	}
}

// A reading stamped before the start (delivered late, or the previous
// patient's) is not a baseline.
func TestReadingBeforeStartIsNoBaseline(t *testing.T) {
	m := newTestManager(t)
	if _, _, err := m.Start("", "", at(-10)); err != nil {
		t.Fatal(err)
	}
	if acts := m.Observe("bp", "nibp_systolic", 165, true, at(-11)); acts != nil {
		t.Errorf("actions %s", kinds(acts))
	}
	m.Observe("bp", "nibp_diastolic", 85, true, at(-2))
	acts, _ := m.Dose(at(0))
	miss, _ := find[BaselineMissing](acts)
	if strings.Join(miss.Metrics, ",") != "spo2,pulse_rate,nibp_systolic" {
		t.Errorf("missing %v", miss.Metrics)
	}
	if _, ok := mustActive(t, m).Baseline["nibp_systolic"]; ok {
		t.Error("systolic baseline from before the start")
	}
}

// After the agent's clock steps back, the reading that arrived last is the
// latest, whatever its stamp.
func TestLatestIsLastToArrive(t *testing.T) {
	m := newTestManager(t)
	started(t, m, 120, 80)
	m.Dose(at(0))
	oximeter(m, 90, 100, at(130))
	oximeter(m, 97, 75, at(125)) // the clock stepped back 5 min
	bp(m, 122, 80, at(126))
	s, _, _ := m.End(at(127))
	if v := vital(t, s.Check, "spo2"); v.Latest == nil || v.Latest.Value != 97 || v.Result != ResultPass {
		t.Errorf("spo2 %+v", v)
	}
}
