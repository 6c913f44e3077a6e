package alarm

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-monitor/vigil/drivers"
)

// session records what an engine emits while a test drives it second by
// second, as the agent would: each reading, then a Tick.
type session struct {
	t   *testing.T
	e   *Engine
	log []string
	evs []Event
}

func newSession(t *testing.T, rules []Rule) *session {
	t.Helper()
	e, err := NewEngine(rules, Options{Site: "clinic", Room: "3", IDs: counterIDs()})
	if err != nil {
		t.Fatal(err)
	}
	return &session{t: t, e: e}
}

func (s *session) record(now time.Time, evs []Event) {
	for _, ev := range evs {
		s.evs = append(s.evs, ev)
		s.log = append(s.log, fmt.Sprintf("t=%g %s %s", now.Sub(t0).Seconds(), ev.AlarmID, brief(ev)))
	}
}

// spo2 feeds one SpO2 reading a second on device "ox" for seconds [from, to),
// each followed by a Tick.
func (s *session) spo2(from, to int, value float64, flags drivers.Flags) {
	for sec := from; sec < to; sec++ {
		now := at(float64(sec))
		s.record(now, s.e.Observe("ox", "spo2", value, true, flags, now))
		s.record(now, s.e.Tick(now))
	}
}

func (s *session) tick(from, to int) {
	for sec := from; sec < to; sec++ {
		now := at(float64(sec))
		s.record(now, s.e.Tick(now))
	}
}

func (s *session) ack(alarmID string, sec float64) {
	s.t.Helper()
	evs, err := s.e.Acknowledge(alarmID, "nurse-a", "web", at(sec))
	if err != nil {
		s.t.Fatalf("acknowledge %s: %v", alarmID, err)
	}
	s.record(at(sec), evs)
}

func (s *session) expect(want ...string) {
	s.t.Helper()
	if !reflect.DeepEqual(s.log, want) {
		s.t.Errorf("events\n got %s\nwant %s", strings.Join(s.log, "\n     "), strings.Join(want, "\n     "))
	}
	s.log = nil
}

// Issue scenario: SpO2 below 90 for 20 s gives one medium alarm after the
// 15 s delay.
func TestScenarioSpO2BelowLimitFor20s(t *testing.T) {
	s := newSession(t, DefaultRules())
	s.spo2(0, 10, 96, 0)
	s.spo2(10, 30, 88, 0) // 20 s at 88 %
	s.spo2(30, 60, 96, 0)
	s.expect(
		"t=25 spo2-low-medium/ox start active medium e1 onset=10 v=88",
		// back to 96 % (>= 90 + 2) at t=30, clear for 10 s
		"t=40 spo2-low-medium/ox end resolved medium e1 onset=10 v=88",
	)
	ev := s.evs[0]
	if ev.Kind != Physiological || *ev.Limit != 90 || ev.Unit != "%" || ev.Condition != "below" || ev.Site != "clinic" || ev.Room != "3" || ev.Device != "ox" {
		t.Errorf("start event fields: %+v", ev)
	}
	if want := "** spo2 88 % (limit: at or below 90 %), ox, room 3: active"; ev.Text != want {
		t.Errorf("text %q, want %q", ev.Text, want)
	}
}

// Issue scenario: values oscillating around the limit do not flap.
func TestScenarioOscillationDoesNotFlap(t *testing.T) {
	s := newSession(t, DefaultRules())
	// Before an alarm: 89/91 around the 90 % limit never holds for the 15 s
	// delay, so nothing is raised (the SatSeconds rule would catch this
	// pattern; see TestScenarioSatSecondsThreeViolations).
	for sec := 0; sec < 60; sec++ {
		v := 89.0
		if sec%2 == 1 {
			v = 91
		}
		s.spo2(sec, sec+1, v, 0)
	}
	s.expect()

	s.spo2(60, 76, 88, 0)
	s.expect("t=75 spo2-low-medium/ox start active medium e1 onset=60 v=88")
	// Raised: 89/91, then 91/93 around the clear margin (92) must neither
	// resolve nor re-raise.
	for sec := 76; sec < 136; sec++ {
		v := 89.0
		switch {
		case sec >= 106 && sec%2 == 0:
			v = 93
		case sec%2 == 1:
			v = 91
		}
		s.spo2(sec, sec+1, v, 0)
	}
	s.expect()
	s.spo2(136, 150, 95, 0)
	s.expect("t=146 spo2-low-medium/ox end resolved medium e1 onset=60 v=88")
}

// Issue scenario: a brief dip into a latching (high) alarm stays latched
// until acknowledged.
func TestScenarioBriefDipLatchesUntilAcknowledged(t *testing.T) {
	s := newSession(t, DefaultRules())
	s.spo2(0, 5, 97, 0)
	s.spo2(5, 21, 84, 0) // 16 s at 84 %
	s.spo2(21, 40, 97, 0)
	s.expect(
		"t=20 spo2-low-medium/ox start active medium e1 onset=5 v=84",
		"t=20 spo2-low-high/ox start active high e2 onset=5 v=84",
		"t=31 spo2-low-medium/ox end resolved medium e1 onset=5 v=84",
		"t=31 spo2-low-high/ox update latched high e2 onset=5 v=84",
	)
	s.tick(40, 640) // ten minutes: still latched
	s.expect()
	if act := s.e.Active(); len(act) != 1 || act[0].AlarmID != "spo2-low-high/ox" || act[0].State != Latched {
		t.Fatalf("Active() = %q", briefs(act))
	}
	s.ack("spo2-low-high/ox", 640)
	s.expect("t=640 spo2-low-high/ox end resolved high e2 onset=5 v=84")
	if act := s.e.Active(); len(act) != 0 {
		t.Errorf("Active() after ack = %q", briefs(act))
	}
	if !strings.HasSuffix(s.evs[len(s.evs)-1].Text, "resolved by nurse-a via web") {
		t.Errorf("end text %q does not say who acknowledged", s.evs[len(s.evs)-1].Text)
	}
}

// Issue scenario: a new high alarm is notifiable during a pause.
func TestScenarioNewHighAlarmNotifiesDuringPause(t *testing.T) {
	s := newSession(t, DefaultRules())
	s.spo2(0, 16, 88, 0)
	s.expect("t=15 spo2-low-medium/ox start active medium e1 onset=0 v=88")
	medium := s.evs[0]

	until := s.e.Pause(10*time.Minute, at(16))
	if want := at(16).Add(DefaultMaxPause); !until.Equal(want) {
		t.Errorf("pause until %v, want %v (bounded by the 2 min maximum)", until, want)
	}
	if s.e.ShouldNotify(medium, at(17)) {
		t.Error("a paused alarm's repeat notifies during the pause")
	}
	s.spo2(16, 32, 84, 0)
	s.expect("t=31 spo2-low-high/ox start active high e2 onset=16 v=84")
	if high := s.evs[1]; !s.e.ShouldNotify(high, at(31)) {
		t.Error("a new high alarm does not notify during the pause")
	}
	s.ack("spo2-low-medium/ox", 32)
	ackEv := s.evs[2]
	if ackEv.State != Acknowledged || s.e.ShouldNotify(ackEv, at(32)) {
		t.Errorf("update of a paused alarm notifies during the pause: %s", brief(ackEv))
	}
	// Ends always go out: they withdraw messages.
	s.spo2(32, 50, 97, 0)
	for _, ev := range s.evs[3:] {
		if ev.Phase == PhaseEnd && !s.e.ShouldNotify(ev, at(50)) {
			t.Errorf("end event withheld during a pause: %s", brief(ev))
		}
	}
	// A priority rise of a paused occurrence notifies.
	raised := medium
	raised.Priority, raised.Phase = High, PhaseUpdate
	if !s.e.ShouldNotify(raised, at(40)) {
		t.Error("a paused alarm raised to a higher priority does not notify")
	}
	if !s.e.ShouldNotify(ackEv, at(16).Add(DefaultMaxPause)) {
		t.Error("the pause did not end at its limit")
	}
	if _, paused := s.e.PausedUntil(at(16).Add(DefaultMaxPause)); paused {
		t.Error("PausedUntil reports a pause past its end")
	}
	s.e.Pause(time.Minute, at(200))
	if u, paused := s.e.PausedUntil(at(230)); !paused || !u.Equal(at(260)) {
		t.Errorf("PausedUntil during a pause: %v %v, want %v", u, paused, at(260))
	}
	if got := s.e.Pause(0, at(201)); !got.Equal(at(201)) || !s.e.ShouldNotify(ackEv, at(202)) {
		t.Error("Pause(0) does not end the pause")
	}
	if _, paused := s.e.PausedUntil(at(202)); paused {
		t.Error("PausedUntil reports a pause after Pause(0)")
	}
}

// Issue scenario: low signal quality holds back the SpO2 escalation and
// raises the technical alarm.
func TestScenarioLowSignalQualityHoldsBackEscalation(t *testing.T) {
	s := newSession(t, DefaultRules())
	s.record(at(0), s.e.SetTechnical("ox", "low-signal-quality", true, Low, at(0)))
	s.spo2(0, 16, 84, drivers.FlagLowPerfusion)
	s.expect(
		"t=0 low-signal-quality/ox start active low e1 onset=0 v=-",
		"t=15 spo2-low-medium/ox start active medium e2 onset=0 v=84",
		"t=15 spo2-low-high/ox start active medium e3 onset=0 v=84 held",
	)
	held := s.evs[2]
	if !IsHeldBack(held) || !strings.Contains(held.Text, "held back: low signal quality") || held.Priority != Medium {
		t.Errorf("held event %+v", held)
	}
	if tech := s.evs[0]; tech.Kind != Technical || tech.Value != nil || tech.Condition != "low-signal-quality" || tech.Text != "* low-signal-quality, ox, room 3: active" {
		t.Errorf("technical event %+v", tech)
	}
	// Signal quality recovers while the value stays low: the held alarm
	// escalates to its own priority.
	s.record(at(16), s.e.SetTechnical("ox", "low-signal-quality", false, Low, at(16)))
	s.expect("t=16 low-signal-quality/ox end resolved low e1 onset=0 v=-")
	s.spo2(16, 17, 84, 0)
	s.expect("t=16 spo2-low-high/ox update active high e3 onset=0 v=84")
}

// Low-quality flags on the reading alone hold back escalation too, before
// the technical condition is reported.
func TestLowQualityFlagsOnReadingHoldBack(t *testing.T) {
	s := newSession(t, DefaultRules())
	s.spo2(0, 16, 84, drivers.FlagArtifact)
	s.expect(
		"t=15 spo2-low-medium/ox start active medium e1 onset=0 v=84",
		"t=15 spo2-low-high/ox start active medium e2 onset=0 v=84 held",
	)
	s.spo2(16, 17, 83, 0)
	// The release is applied before the reading is evaluated (so a reading
	// that also raises an alarm raises it at its own priority): the update
	// reports the worst value seen before it.
	s.expect("t=16 spo2-low-high/ox update active high e2 onset=0 v=84")
	// A high alarm already signalling high is not lowered by poor quality.
	s.spo2(17, 20, 83, drivers.FlagLowSignalQuality)
	s.expect()
}

// Acknowledged alarm ends when its condition clears.
func TestScenarioAcknowledgedEndsWhenConditionClears(t *testing.T) {
	s := newSession(t, DefaultRules())
	now := at(0)
	s.record(now, s.e.Observe("bp", "nibp_systolic", 165, true, 0, now))
	s.expect("t=0 systolic-high-medium/bp start active medium e1 onset=0 v=165")
	s.ack("systolic-high-medium/bp", 60)
	s.expect("t=60 systolic-high-medium/bp update acknowledged medium e1 onset=0 v=165")
	now = at(600)
	s.record(now, s.e.Observe("bp", "nibp_systolic", 158, true, 0, now)) // inside, but not by the 5 mmHg margin
	s.expect()
	now = at(1200)
	s.record(now, s.e.Observe("bp", "nibp_systolic", 150, true, 0, now))
	s.expect("t=1200 systolic-high-medium/bp end resolved medium e1 onset=0 v=165")
}

// 3 violations in 60 s fire a SatSeconds alarm even under budget.
func TestScenarioSatSecondsThreeViolations(t *testing.T) {
	rules := []Rule{{Name: "spo2-satseconds", Metric: "spo2", AtOrBelow: limit(90), Priority: Medium,
		SatSeconds: &SatSeconds{Budget: 100}, ClearMargin: 2, ClearDelay: 10 * time.Second}}
	s := newSession(t, rules)
	for _, dip := range []int{0, 20, 40} {
		s.spo2(dip, dip+2, 88, 0) // 2 samples at 88: 2 %·s, far under 100
		s.spo2(dip+2, dip+20, 96, 0)
	}
	s.expect(
		"t=40 spo2-satseconds/ox start active medium e1 onset=40 v=88",
		"t=52 spo2-satseconds/ox end resolved medium e1 onset=40 v=88",
	)
}

func TestSatSecondsBudgetInEngine(t *testing.T) {
	rules := []Rule{{Name: "spo2-satseconds", Metric: "spo2", AtOrBelow: limit(90), Priority: Medium,
		SatSeconds: &SatSeconds{Budget: 25}, ClearMargin: 2, ClearDelay: 10 * time.Second}}
	s := newSession(t, rules)
	s.spo2(0, 10, 85, 0) // 5 %·s per second after the first sample: 30 at t=6
	s.expect("t=6 spo2-satseconds/ox start active medium e1 onset=6 v=85")
	s.spo2(10, 12, 91, 0) // marginal: holds
	s.spo2(12, 14, 89, 0) // below again but under budget: holds, no second start
	s.expect()
}

func TestInvalidReadingsNeitherRaiseNorClear(t *testing.T) {
	s := newSession(t, DefaultRules())
	s.spo2(0, 16, 88, 0)
	s.expect("t=15 spo2-low-medium/ox start active medium e1 onset=0 v=88")
	// Sensor off, searching, NaN and not-valid readings of 100 % prove no
	// recovery; the alarm stays for as long as they last.
	s.spo2(16, 40, 100, drivers.FlagSensorOff)
	s.spo2(40, 60, 100, drivers.FlagSearching)
	for sec := 60; sec < 80; sec++ {
		now := at(float64(sec))
		s.record(now, s.e.Observe("ox", "spo2", math.NaN(), true, 0, now))
		s.record(now, s.e.Observe("ox", "spo2", math.Inf(1), true, 0, now))
		s.record(now, s.e.Observe("ox", "spo2", 100, false, 0, now))
		s.record(now, s.e.Tick(now))
	}
	s.expect()
	if act := s.e.Active(); len(act) != 1 || act[0].State != Active {
		t.Fatalf("Active() = %q", briefs(act))
	}
	s.spo2(80, 91, 97, 0)
	s.expect("t=90 spo2-low-medium/ox end resolved medium e1 onset=0 v=88")
	// Readings of metrics without rules, and unknown metrics, are ignored.
	if evs := s.e.Observe("ox", "perfusion_index", 0.1, true, 0, at(91)); evs != nil {
		t.Errorf("perfusion index raised %q", briefs(evs))
	}
	if evs := s.e.Observe("ox", "no-such-metric", 1, true, 0, at(91)); evs != nil {
		t.Errorf("unknown metric raised %q", briefs(evs))
	}
}

func TestRiseOverBaseline(t *testing.T) {
	s := newSession(t, DefaultRules())
	obs := func(sec float64, metric string, v float64) {
		s.record(at(sec), s.e.Observe("bp", metric, v, true, 0, at(sec)))
	}
	obs(0, "nibp_systolic", 155) // no baseline: the rise rule stays quiet
	s.expect()
	if err := s.e.SetBaseline("bp", "nibp_systolic", 112); err != nil {
		t.Fatal(err)
	}
	if err := s.e.SetBaseline("bp", "nibp_systolic", math.NaN()); err == nil {
		t.Error("NaN baseline accepted")
	}
	obs(600, "nibp_systolic", 152)
	s.expect("t=600 systolic-rise-medium/bp start active medium e1 onset=600 v=152")
	ev := s.evs[0]
	if *ev.Limit != 152 || ev.Condition != "rise_over_baseline" {
		t.Errorf("limit %v condition %q", *ev.Limit, ev.Condition)
	}
	if want := "** nibp_systolic 152 mm[Hg] (limit: rise of 40 mm[Hg] or more over baseline 112 mm[Hg]), bp, room 3: active"; ev.Text != want {
		t.Errorf("text %q\nwant %q", ev.Text, want)
	}
	// A new baseline moves the limit of the existing alarm.
	if err := s.e.SetBaseline("bp", "nibp_systolic", 120); err != nil {
		t.Fatal(err)
	}
	evs, err := s.e.Acknowledge("systolic-rise-medium/bp", "nurse-a", "web", at(700))
	if err != nil || len(evs) != 1 || *evs[0].Limit != 160 {
		t.Errorf("ack after new baseline: %q, %v", briefs(evs), err)
	}
	obs(1200, "nibp_systolic", 150) // rise 30 <= 40 - 5: clears
	s.expect("t=1200 systolic-rise-medium/bp end resolved medium e1 onset=600 v=152")
	s.e.ClearBaseline("bp", "nibp_systolic")
	obs(1800, "nibp_systolic", 159)
	s.expect()
	// Diastolic: +25.
	if err := s.e.SetBaseline("bp", "nibp_diastolic", 70); err != nil {
		t.Fatal(err)
	}
	obs(1800, "nibp_diastolic", 95)
	s.expect("t=1800 diastolic-rise-medium/bp start active medium e2 onset=1800 v=95")
}

func TestTechnicalAlarms(t *testing.T) {
	s := newSession(t, DefaultRules())
	set := func(sec float64, cond string, on bool, p Priority) {
		s.record(at(sec), s.e.SetTechnical("ox", cond, on, p, at(sec)))
	}
	// sensor-off waits 10 s (clinical.md 4); off within it, nothing is raised.
	set(0, "sensor-off", true, Medium)
	s.tick(0, 9)
	set(9, "sensor-off", false, Medium)
	s.tick(9, 30)
	s.expect()
	set(30, "sensor-off", true, Medium)
	s.tick(30, 41)
	s.expect("t=40 sensor-off/ox start active medium e1 onset=30 v=-")
	set(45, "sensor-off", false, Medium)
	s.expect("t=45 sensor-off/ox end resolved medium e1 onset=30 v=-")

	// A device lost during a session: raised at once, then re-assessed high.
	set(50, "disconnected", true, Medium)
	set(60, "disconnected", true, Medium)
	s.expect("t=50 disconnected/ox start active medium e2 onset=50 v=-")
	s.ack("disconnected/ox", 61)
	set(80, "disconnected", true, High)
	s.expect(
		"t=61 disconnected/ox update acknowledged medium e2 onset=50 v=-",
		"t=80 disconnected/ox update active high e2 onset=50 v=-",
	)
	// An invalid priority is taken as medium.
	set(90, "silent", true, 0)
	s.expect("t=90 silent/ox start active medium e3 onset=90 v=-")
	// Off for a condition never raised: nothing.
	set(91, "cuff-error", false, Medium)
	s.expect()
}

func TestTechnicalIDDoesNotCollideWithRule(t *testing.T) {
	rules := []Rule{{Name: "silent", Metric: "spo2", AtOrBelow: limit(90), Priority: Medium}}
	s := newSession(t, rules)
	s.record(at(0), s.e.SetTechnical("ox", "silent", true, Medium, at(0)))
	s.spo2(0, 1, 80, 0)
	s.expect(
		"t=0 technical-silent/ox start active medium e1 onset=0 v=-",
		"t=0 silent/ox start active medium e2 onset=0 v=80",
	)
}

func TestAcknowledgeErrors(t *testing.T) {
	s := newSession(t, DefaultRules())
	if _, err := s.e.Acknowledge("nope/ox", "a", "web", at(0)); !errors.Is(err, ErrUnknownAlarm) {
		t.Errorf("unknown alarm: %v", err)
	}
	s.spo2(0, 1, 88, 0) // pending
	if _, err := s.e.Acknowledge("spo2-low-medium/ox", "a", "web", at(1)); !errors.Is(err, ErrNotAlarming) {
		t.Errorf("pending alarm: %v", err)
	}
}

func TestActiveOrder(t *testing.T) {
	s := newSession(t, DefaultRules())
	s.record(at(0), s.e.Observe("bp", "nibp_systolic", 170, true, 0, at(0)))
	s.record(at(1), s.e.SetTechnical("ox", "disconnected", true, Low, at(1)))
	s.record(at(2), s.e.Observe("bp", "nibp_diastolic", 115, true, 0, at(2)))
	s.record(at(2), s.e.Observe("bp2", "nibp_diastolic", 101, true, 0, at(2)))
	var got []string
	for _, ev := range s.e.Active() {
		got = append(got, ev.AlarmID+" "+ev.Priority.String())
	}
	want := []string{
		"diastolic-high-high/bp high",
		"systolic-high-medium/bp medium",
		"diastolic-high-medium/bp medium",
		"diastolic-high-medium/bp2 medium",
		"disconnected/ox low",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Active()\n got %q\nwant %q", got, want)
	}
}

func TestEngineOptions(t *testing.T) {
	if _, err := NewEngine([]Rule{{Name: "x"}}, Options{}); err == nil {
		t.Error("invalid rule accepted")
	}
	if _, err := NewEngine(nil, Options{MaxPause: -1}); err == nil {
		t.Error("negative MaxPause accepted")
	}
	if _, err := NewEngine(nil, Options{TechnicalDelays: map[string]time.Duration{"silent": -1}}); err == nil {
		t.Error("negative technical delay accepted")
	}
	// Default event ids: the construction time in base 36, then a counter.
	e, err := NewEngine(DefaultRules(), Options{Now: func() time.Time { return time.Unix(0, 36) }, MaxPause: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	a := e.SetTechnical("ox", "disconnected", true, Medium, at(0))
	b := e.SetTechnical("bp", "disconnected", true, Medium, at(0))
	if a[0].EventID != "10-1" || b[0].EventID != "10-2" {
		t.Errorf("default ids %q, %q; want 10-1, 10-2", a[0].EventID, b[0].EventID)
	}
	if until := e.Pause(time.Hour, at(0)); !until.Equal(at(60)) {
		t.Errorf("pause bounded to %v, want the configured minute", until)
	}
	// Session id and route.
	rules := DefaultRules()
	rules[0].Route = "phones"
	e, _ = NewEngine(rules, Options{IDs: counterIDs()})
	e.SetSession("s-1", at(0))
	evs := e.Observe("bp", "nibp_systolic", 185, true, 0, at(0))
	if len(evs) != 2 || evs[0].Session == nil || *evs[0].Session != "s-1" {
		t.Fatalf("session not carried: %+v", evs)
	}
	e.SetSession("", at(0))
	if cur := e.Active(); cur[0].Session != nil {
		t.Error("session kept after SetSession(\"\")")
	}
	if e.Route("spo2-low-medium/ox") != "" {
		t.Error("route of an alarm not yet created")
	}
	e.Observe("ox", "spo2", 97, true, 0, at(0))
	if got := e.Route("spo2-low-medium/ox"); got != "phones" {
		t.Errorf("route %q, want phones", got)
	}
	if n := len(e.Rules()); n != len(rules) {
		t.Errorf("Rules() has %d, want %d", n, len(rules))
	}
	// The engine owns its rules: changing the caller's copy, or the one
	// Rules returns, changes nothing in force.
	*rules[0].AtOrBelow = 99
	*e.Rules()[0].AtOrBelow = 99
	if evs := e.Observe("ox", "spo2", 95, true, 0, at(1)); evs != nil || *e.Rules()[0].AtOrBelow != 90 {
		t.Errorf("rules changed from outside: %q", briefs(evs))
	}
}

// The engine is called from the reading pipeline, the tick loop and the
// acknowledge handlers at once; -race checks it.
func TestEngineConcurrentUse(t *testing.T) {
	e, err := NewEngine(DefaultRules(), Options{IDs: counterIDs()})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			dev := fmt.Sprintf("ox-%d", g%2)
			for i := 0; i < 300; i++ {
				now := at(float64(i))
				e.Observe(dev, "spo2", float64(80+i%20), true, 0, now)
				e.Tick(now)
				e.SetTechnical(dev, "low-signal-quality", i%7 == 0, Low, now)
				_, _ = e.Acknowledge("spo2-low-high/"+dev, "n", "web", now)
				for _, ev := range e.Active() {
					e.ShouldNotify(ev, now)
				}
				if i%50 == 0 {
					e.Pause(time.Minute, now)
				}
			}
		}(g)
	}
	wg.Wait()
}

func BenchmarkObserve(b *testing.B) {
	e, err := NewEngine(DefaultRules(), Options{IDs: counterIDs()})
	if err != nil {
		b.Fatal(err)
	}
	e.Observe("ox", "spo2", 97, true, 0, at(0)) // create the alarms
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		// Steady state: values inside the limits, one a second.
		e.Observe("ox", "spo2", float64(95+i%3), true, 0, at(float64(i)))
	}
}

func BenchmarkObserveAlarming(b *testing.B) {
	e, err := NewEngine(DefaultRules(), Options{IDs: counterIDs()})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		// Alternating raised and resolved occurrences: the emitting path.
		v := 84.0
		if (i/40)%2 == 1 {
			v = 97
		}
		e.Observe("ox", "spo2", v, true, 0, at(float64(i)))
	}
}

// TestNextDue: the engine says when a delay ends, so the agent raises the
// alarm then rather than at its next periodic tick; a Tick at that time
// raises it, a Tick just before does not.
func TestNextDue(t *testing.T) {
	s := newSession(t, DefaultRules())
	if _, ok := s.e.NextDue(); ok {
		t.Fatal("NextDue with no alarm pending")
	}
	onset := at(10.25)
	s.record(onset, s.e.Observe("ox", "spo2", 88, true, 0, onset))
	due, ok := s.e.NextDue()
	if want := onset.Add(15 * time.Second); !ok || !due.Equal(want) {
		t.Fatalf("NextDue = %v %v, want %v (the 15 s delay of spo2-low-medium)", due, ok, want)
	}
	if evs := s.e.Tick(due.Add(-time.Millisecond)); len(evs) != 0 {
		t.Errorf("raised before its delay: %v", evs)
	}
	evs := s.e.Tick(due)
	if len(evs) != 1 || evs[0].Phase != PhaseStart || evs[0].AlarmID != "spo2-low-medium/ox" {
		t.Fatalf("Tick at NextDue = %v", evs)
	}
	// Active, not clearing: only a reading can change it.
	if _, ok := s.e.NextDue(); ok {
		t.Error("NextDue while active and not clearing")
	}
	// Clearing: due at the end of the clear delay (0 for the default rule
	// with no clear_delay, so due at once).
	clear := due.Add(time.Second)
	s.e.Observe("ox", "spo2", 97, true, 0, clear)
	if d, ok := s.e.NextDue(); ok && d.After(clear.Add(time.Minute)) {
		t.Errorf("NextDue while clearing = %v", d)
	}
}

// TestTechnicalOffOnlyOutsideSession: a technical condition the config
// turned off (clock_check: false) raises nothing outside a session, is
// raised when a session starts while it is on, and ends with the session.
func TestTechnicalOffOnlyOutsideSession(t *testing.T) {
	e, err := NewEngine(DefaultRules(), Options{IDs: counterIDs(), OffOutsideSession: []string{"clock-unsynchronised"}})
	if err != nil {
		t.Fatal(err)
	}
	if evs := e.SetTechnical("", "clock-unsynchronised", true, Low, at(0)); len(evs) != 0 {
		t.Fatalf("raised outside a session: %v", evs)
	}
	evs := e.SetSession("s-1", at(1))
	if len(evs) != 1 || evs[0].AlarmID != "clock-unsynchronised" || evs[0].Phase != PhaseStart || evs[0].Priority != Low ||
		evs[0].Session == nil || *evs[0].Session != "s-1" {
		t.Fatalf("session start: %+v", evs)
	}
	// Other technical conditions are never off.
	if evs := e.SetTechnical("ox", "disconnected", true, Medium, at(2)); len(evs) != 1 {
		t.Errorf("disconnected: %v", evs)
	}
	evs = e.SetSession("", at(3))
	if len(evs) != 1 || evs[0].AlarmID != "clock-unsynchronised" || evs[0].Phase != PhaseEnd {
		t.Fatalf("session end: %+v", evs)
	}
	if act := e.Active(); len(act) != 1 || act[0].AlarmID != "disconnected/ox" {
		t.Errorf("active after the session: %+v", act)
	}
}

// TestAcknowledgeEvent: an acknowledgement bound to one occurrence is
// refused once that occurrence has ended and another began.
func TestAcknowledgeEvent(t *testing.T) {
	s := newSession(t, DefaultRules())
	s.spo2(0, 16, 88, 0)
	first := s.evs[0]
	s.spo2(16, 60, 97, 0) // ends, after its clear delay
	s.spo2(60, 80, 88, 0) // a new occurrence
	var second Event
	for _, ev := range s.evs {
		if ev.Phase == PhaseStart && ev.EventID != first.EventID {
			second = ev
		}
	}
	if second.EventID == "" {
		t.Fatalf("no second occurrence: %v", s.log)
	}
	if _, err := s.e.AcknowledgeEvent(first.AlarmID, first.EventID, "nurse-a", "phone link", at(80)); !errors.Is(err, ErrOtherOccurrence) {
		t.Errorf("acknowledging an ended occurrence: %v", err)
	}
	evs, err := s.e.AcknowledgeEvent(second.AlarmID, second.EventID, "nurse-a", "phone link", at(80))
	if err != nil || len(evs) != 1 || evs[0].State != Acknowledged {
		t.Errorf("acknowledging the present occurrence: %v %v", evs, err)
	}
}

func TestSetAdvisory(t *testing.T) {
	e, _ := NewEngine(DefaultRules(), Options{IDs: counterIDs()})
	evs := e.SetAdvisory("", "nibp-missed", true, Low, at(0))
	if len(evs) != 1 || evs[0].Kind != Advisory || evs[0].AlarmID != "nibp-missed" || evs[0].Phase != PhaseStart || evs[0].Priority != Low {
		t.Fatalf("advisory on: %+v", evs)
	}
	if evs := e.SetAdvisory("", "nibp-missed", true, Low, at(1)); len(evs) != 0 {
		t.Errorf("advisory on again: %+v", evs)
	}
	evs = e.SetAdvisory("", "nibp-missed", false, Low, at(2))
	if len(evs) != 1 || evs[0].Phase != PhaseEnd {
		t.Errorf("advisory off: %+v", evs)
	}
}
