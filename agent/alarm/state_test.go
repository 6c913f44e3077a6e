package alarm

import (
	"errors"
	"fmt"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

var t0 = time.Date(2026, 3, 4, 10, 0, 0, 0, time.UTC)

// at is the fake clock: t0 plus s seconds.
func at(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

// counterIDs returns deterministic event ids e1, e2, ...
func counterIDs() func() string {
	n := 0
	return func() string { n++; return "e" + strconv.Itoa(n) }
}

// brief renders an event compactly for the tables:
// "phase state priority eventID onset=<s> v=<value>".
func brief(ev Event) string {
	v := "-"
	if ev.Value != nil {
		v = strconv.FormatFloat(*ev.Value, 'f', -1, 64)
	}
	s := fmt.Sprintf("%s %s %s %s onset=%g v=%s", ev.Phase, ev.State, ev.Priority, ev.EventID,
		ev.Onset.Sub(t0).Seconds(), v)
	if IsHeldBack(ev) {
		s += " held"
	}
	return s
}

func briefs(evs []Event) []string {
	var out []string
	for _, ev := range evs {
		out = append(out, brief(ev))
	}
	return out
}

type step struct {
	at   float64 // seconds after t0
	do   string  // met V | marginal V | clear V | unknown | tick | ack | hold | release | prio low|medium|high
	want State
	evs  []string
	err  error
}

func alarmConfig(p Priority, delay, clearDelay time.Duration, latching bool) AlarmConfig {
	return AlarmConfig{
		ID: "spo2-low/ox", Kind: Physiological, Priority: p,
		Delay: delay, ClearDelay: clearDelay, Latching: latching,
		LowerIsWorse: true, HasValue: true, LimitText: "at or below 90 %",
		Event: Event{Metric: "spo2", Unit: "%", Limit: limit(90), Condition: "below", Room: "3", Device: "ox"},
	}
}

func runSteps(t *testing.T, a *Alarm, steps []step) {
	t.Helper()
	for i, s := range steps {
		now := at(s.at)
		f := strings.Fields(s.do)
		val := 0.0
		if len(f) > 1 {
			val, _ = strconv.ParseFloat(f[1], 64)
		}
		var evs []Event
		var err error
		switch f[0] {
		case "met":
			evs = a.Observe(LevelMet, val, now)
		case "marginal":
			evs = a.Observe(LevelMarginal, val, now)
		case "clear":
			evs = a.Observe(LevelClear, val, now)
		case "unknown":
			evs = a.Observe(LevelUnknown, 0, now)
		case "tick":
			evs = a.Tick(now)
		case "ack":
			evs, err = a.Acknowledge("nurse-a", "web", now)
		case "hold":
			evs = a.HoldBack(true, now)
		case "release":
			evs = a.HoldBack(false, now)
		case "prio":
			p, ok := ParsePriority(f[1])
			if !ok {
				t.Fatalf("step %d: bad priority %q", i, f[1])
			}
			evs = a.SetPriority(p, now)
		default:
			t.Fatalf("step %d: unknown op %q", i, s.do)
		}
		if !errors.Is(err, s.err) || (err == nil) != (s.err == nil) {
			t.Errorf("step %d (%s @%gs): err = %v, want %v", i, s.do, s.at, err, s.err)
		}
		if got := briefs(evs); !reflect.DeepEqual(got, s.evs) {
			t.Errorf("step %d (%s @%gs): events\n got %q\nwant %q", i, s.do, s.at, got, s.evs)
		}
		if a.State() != s.want {
			t.Errorf("step %d (%s @%gs): state = %s, want %s", i, s.do, s.at, a.State(), s.want)
		}
		for _, ev := range evs {
			if ev.Sent != now {
				t.Errorf("step %d: event sent at %v, want %v", i, ev.Sent, now)
			}
			if ev.AlarmID != "spo2-low/ox" {
				t.Errorf("step %d: alarm id %q", i, ev.AlarmID)
			}
		}
	}
}

func ev(s ...string) []string { return s }

func TestAlarmTransitions(t *testing.T) {
	const s = time.Second
	cases := []struct {
		name  string
		cfg   AlarmConfig
		steps []step
	}{
		{"inactive stays inactive on clear, marginal, unknown and tick", alarmConfig(Medium, 15*s, 10*s, false), []step{
			{at: 0, do: "clear 95", want: Inactive},
			{at: 1, do: "marginal 91", want: Inactive},
			{at: 2, do: "unknown", want: Inactive},
			{at: 100, do: "tick", want: Inactive},
		}},
		{"inactive: acknowledge is refused", alarmConfig(Medium, 15*s, 10*s, false), []step{
			{at: 0, do: "ack", want: Inactive, err: ErrNotAlarming},
		}},
		{"inactive -> pending on met, pending -> active when the delay is over", alarmConfig(Medium, 15*s, 10*s, false), []step{
			{at: 0, do: "met 88", want: Pending},
			{at: 14, do: "met 87", want: Pending},
			{at: 15, do: "met 89", want: Active, evs: ev("start active medium e1 onset=0 v=87")},
			{at: 16, do: "met 80", want: Active},
		}},
		{"no delay: inactive -> active at once", alarmConfig(Medium, 0, 10*s, false), []step{
			{at: 0, do: "met 88", want: Active, evs: ev("start active medium e1 onset=0 v=88")},
		}},
		{"pending -> inactive on marginal; the delay restarts", alarmConfig(Medium, 15*s, 10*s, false), []step{
			{at: 0, do: "met 88", want: Pending},
			{at: 5, do: "marginal 91", want: Inactive},
			{at: 6, do: "met 88", want: Pending},
			{at: 20, do: "met 88", want: Pending},
			{at: 21, do: "met 88", want: Active, evs: ev("start active medium e1 onset=6 v=88")},
		}},
		{"pending -> inactive on clear", alarmConfig(Medium, 15*s, 10*s, false), []step{
			{at: 0, do: "met 88", want: Pending},
			{at: 5, do: "clear 95", want: Inactive},
			{at: 30, do: "tick", want: Inactive},
		}},
		{"pending: tick raises once the delay is over with the condition standing", alarmConfig(Medium, 15*s, 10*s, false), []step{
			{at: 0, do: "met 88", want: Pending},
			{at: 10, do: "tick", want: Pending},
			{at: 15, do: "tick", want: Active, evs: ev("start active medium e1 onset=0 v=88")},
		}},
		{"pending: unknown neither drops nor confirms", alarmConfig(Medium, 15*s, 10*s, false), []step{
			{at: 0, do: "met 88", want: Pending},
			{at: 5, do: "unknown", want: Pending},
			{at: 20, do: "tick", want: Pending},
			{at: 21, do: "met 89", want: Active, evs: ev("start active medium e1 onset=0 v=88")},
		}},
		{"pending: acknowledge is refused", alarmConfig(Medium, 15*s, 10*s, false), []step{
			{at: 0, do: "met 88", want: Pending},
			{at: 1, do: "ack", want: Pending, err: ErrNotAlarming},
		}},
		{"active: met, marginal and unknown hold without events", alarmConfig(Medium, 0, 10*s, false), []step{
			{at: 0, do: "met 88", want: Active, evs: ev("start active medium e1 onset=0 v=88")},
			{at: 1, do: "met 86", want: Active},
			{at: 2, do: "marginal 91", want: Active},
			{at: 3, do: "unknown", want: Active},
			{at: 600, do: "tick", want: Active},
		}},
		{"active -> resolved after clear for the clear delay (not latching)", alarmConfig(Medium, 0, 10*s, false), []step{
			{at: 0, do: "met 88", want: Active, evs: ev("start active medium e1 onset=0 v=88")},
			{at: 1, do: "clear 95", want: Active},
			{at: 10, do: "clear 95", want: Active},
			{at: 11, do: "clear 96", want: Inactive, evs: ev("end resolved medium e1 onset=0 v=88")},
		}},
		{"active: clear delay 0 resolves on the first clear value", alarmConfig(Medium, 0, 0, false), []step{
			{at: 0, do: "met 88", want: Active, evs: ev("start active medium e1 onset=0 v=88")},
			{at: 1, do: "clear 95", want: Inactive, evs: ev("end resolved medium e1 onset=0 v=88")},
		}},
		{"active: a marginal value restarts the clear delay", alarmConfig(Medium, 0, 10*s, false), []step{
			{at: 0, do: "met 88", want: Active, evs: ev("start active medium e1 onset=0 v=88")},
			{at: 1, do: "clear 95", want: Active},
			{at: 5, do: "marginal 91", want: Active},
			{at: 6, do: "clear 95", want: Active},
			{at: 15, do: "clear 95", want: Active},
			{at: 16, do: "clear 95", want: Inactive, evs: ev("end resolved medium e1 onset=0 v=88")},
		}},
		{"active: an unknown value restarts the clear delay", alarmConfig(Medium, 0, 10*s, false), []step{
			{at: 0, do: "met 88", want: Active, evs: ev("start active medium e1 onset=0 v=88")},
			{at: 1, do: "clear 95", want: Active},
			{at: 5, do: "unknown", want: Active},
			{at: 11, do: "tick", want: Active},
			{at: 12, do: "clear 95", want: Active},
			{at: 22, do: "tick", want: Inactive, evs: ev("end resolved medium e1 onset=0 v=88")},
		}},
		{"active: tick completes the clear delay", alarmConfig(Medium, 0, 10*s, false), []step{
			{at: 0, do: "met 88", want: Active, evs: ev("start active medium e1 onset=0 v=88")},
			{at: 1, do: "clear 95", want: Active},
			{at: 10.5, do: "tick", want: Active},
			{at: 11, do: "tick", want: Inactive, evs: ev("end resolved medium e1 onset=0 v=88")},
		}},
		{"active -> latched when latching; latched holds on clear, marginal, unknown, tick", alarmConfig(High, 0, 10*s, true), []step{
			{at: 0, do: "met 84", want: Active, evs: ev("start active high e1 onset=0 v=84")},
			{at: 1, do: "clear 95", want: Active},
			{at: 11, do: "clear 95", want: Latched, evs: ev("update latched high e1 onset=0 v=84")},
			{at: 12, do: "clear 96", want: Latched},
			{at: 13, do: "marginal 86", want: Latched},
			{at: 14, do: "unknown", want: Latched},
			{at: 3600, do: "tick", want: Latched},
		}},
		{"latched -> active when the condition returns: same occurrence", alarmConfig(High, 0, 10*s, true), []step{
			{at: 0, do: "met 84", want: Active, evs: ev("start active high e1 onset=0 v=84")},
			{at: 1, do: "clear 95", want: Active},
			{at: 11, do: "clear 95", want: Latched, evs: ev("update latched high e1 onset=0 v=84")},
			{at: 20, do: "met 82", want: Active, evs: ev("update active high e1 onset=0 v=82")},
		}},
		{"latched -> resolved on acknowledge", alarmConfig(High, 0, 10*s, true), []step{
			{at: 0, do: "met 84", want: Active, evs: ev("start active high e1 onset=0 v=84")},
			{at: 1, do: "clear 95", want: Active},
			{at: 11, do: "tick", want: Latched, evs: ev("update latched high e1 onset=0 v=84")},
			{at: 30, do: "ack", want: Inactive, evs: ev("end resolved high e1 onset=0 v=84")},
			{at: 31, do: "ack", want: Inactive, err: ErrNotAlarming},
		}},
		{"active -> acknowledged; met and marginal hold; a second acknowledge is a no-op", alarmConfig(Medium, 0, 10*s, false), []step{
			{at: 0, do: "met 88", want: Active, evs: ev("start active medium e1 onset=0 v=88")},
			{at: 5, do: "ack", want: Acknowledged, evs: ev("update acknowledged medium e1 onset=0 v=88")},
			{at: 6, do: "met 87", want: Acknowledged},
			{at: 7, do: "marginal 91", want: Acknowledged},
			{at: 8, do: "ack", want: Acknowledged},
			{at: 600, do: "tick", want: Acknowledged},
		}},
		{"acknowledged -> resolved when the condition clears, and never latches", alarmConfig(High, 0, 10*s, true), []step{
			{at: 0, do: "met 84", want: Active, evs: ev("start active high e1 onset=0 v=84")},
			{at: 1, do: "ack", want: Acknowledged, evs: ev("update acknowledged high e1 onset=0 v=84")},
			{at: 2, do: "clear 95", want: Acknowledged},
			{at: 12, do: "clear 95", want: Inactive, evs: ev("end resolved high e1 onset=0 v=84")},
		}},
		{"after the end, the condition again is a new occurrence with a new event id", alarmConfig(Medium, 0, 10*s, false), []step{
			{at: 0, do: "met 88", want: Active, evs: ev("start active medium e1 onset=0 v=88")},
			{at: 1, do: "clear 95", want: Active},
			{at: 11, do: "tick", want: Inactive, evs: ev("end resolved medium e1 onset=0 v=88")},
			{at: 20, do: "met 89", want: Active, evs: ev("start active medium e2 onset=20 v=89")},
		}},
		{"the reported value is the occurrence's worst (low limit: the lowest)", alarmConfig(Medium, 15*s, 10*s, false), []step{
			{at: 0, do: "met 89", want: Pending},
			{at: 5, do: "met 86", want: Pending},
			{at: 15, do: "met 88", want: Active, evs: ev("start active medium e1 onset=0 v=86")},
			{at: 16, do: "met 84", want: Active},
			{at: 17, do: "ack", want: Acknowledged, evs: ev("update acknowledged medium e1 onset=0 v=84")},
		}},
		{"a pending occurrence dropped leaves no worst value behind", alarmConfig(Medium, 15*s, 10*s, false), []step{
			{at: 0, do: "met 80", want: Pending},
			{at: 1, do: "clear 95", want: Inactive},
			{at: 2, do: "met 89", want: Pending},
			{at: 17, do: "met 89", want: Active, evs: ev("start active medium e1 onset=2 v=89")},
		}},
		{"held back: a high alarm raised during low signal quality signals medium, and rises on release", alarmConfig(High, 0, 10*s, true), []step{
			{at: 0, do: "hold", want: Inactive},
			{at: 1, do: "met 84", want: Active, evs: ev("start active medium e1 onset=1 v=84 held")},
			{at: 2, do: "hold", want: Active},
			{at: 3, do: "release", want: Active, evs: ev("update active high e1 onset=1 v=84")},
			{at: 4, do: "release", want: Active},
		}},
		{"held back: holding never lowers an alarm already signalling high", alarmConfig(High, 0, 10*s, true), []step{
			{at: 0, do: "met 84", want: Active, evs: ev("start active high e1 onset=0 v=84")},
			{at: 1, do: "hold", want: Active},
			{at: 2, do: "release", want: Active},
		}},
		{"held back: release of an acknowledged held alarm signals again at high", alarmConfig(High, 0, 10*s, true), []step{
			{at: 0, do: "hold", want: Inactive},
			{at: 1, do: "met 84", want: Active, evs: ev("start active medium e1 onset=1 v=84 held")},
			{at: 2, do: "ack", want: Acknowledged, evs: ev("update acknowledged medium e1 onset=1 v=84 held")},
			{at: 3, do: "release", want: Active, evs: ev("update active high e1 onset=1 v=84")},
		}},
		{"held back: release of a latched held alarm raises its priority, still latched", alarmConfig(High, 0, 10*s, true), []step{
			{at: 0, do: "hold", want: Inactive},
			{at: 1, do: "met 84", want: Active, evs: ev("start active medium e1 onset=1 v=84 held")},
			{at: 2, do: "clear 95", want: Active},
			{at: 12, do: "tick", want: Latched, evs: ev("update latched medium e1 onset=1 v=84 held")},
			{at: 13, do: "release", want: Latched, evs: ev("update latched high e1 onset=1 v=84")},
		}},
		{"held back: released while pending, the alarm starts at its own priority", alarmConfig(High, 15*s, 10*s, true), []step{
			{at: 0, do: "hold", want: Inactive},
			{at: 1, do: "met 84", want: Pending},
			{at: 5, do: "release", want: Pending},
			{at: 16, do: "met 84", want: Active, evs: ev("start active high e1 onset=1 v=84")},
		}},
		{"held back: a medium alarm is not an escalation and is not held", alarmConfig(Medium, 0, 10*s, false), []step{
			{at: 0, do: "hold", want: Inactive},
			{at: 1, do: "met 88", want: Active, evs: ev("start active medium e1 onset=1 v=88")},
			{at: 2, do: "release", want: Active},
		}},
		{"priority: same priority changes nothing; inactive takes it for the next occurrence", alarmConfig(Medium, 0, 0, false), []step{
			{at: 0, do: "prio medium", want: Inactive},
			{at: 1, do: "prio high", want: Inactive},
			{at: 2, do: "met 88", want: Active, evs: ev("start active high e1 onset=2 v=88")},
		}},
		{"priority: a rise makes an acknowledged alarm signal again; a fall updates only", alarmConfig(Medium, 0, 0, false), []step{
			{at: 0, do: "met 88", want: Active, evs: ev("start active medium e1 onset=0 v=88")},
			{at: 1, do: "ack", want: Acknowledged, evs: ev("update acknowledged medium e1 onset=0 v=88")},
			{at: 2, do: "prio high", want: Active, evs: ev("update active high e1 onset=0 v=88")},
			{at: 3, do: "prio low", want: Active, evs: ev("update active low e1 onset=0 v=88")},
		}},
		{"clock steps back while pending: the delay restarts from the earlier time", alarmConfig(Medium, 15*s, 10*s, false), []step{
			{at: 100, do: "met 88", want: Pending},
			{at: 50, do: "met 88", want: Pending},
			{at: 64, do: "met 88", want: Pending},
			{at: 65, do: "met 88", want: Active, evs: ev("start active medium e1 onset=50 v=88")},
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			runSteps(t, NewAlarm(c.cfg, counterIDs()), c.steps)
		})
	}
}

func TestAlarmEventFields(t *testing.T) {
	a := NewAlarm(alarmConfig(Medium, 0, 0, false), counterIDs())
	a.SetSession(nil)
	got := a.Observe(LevelMet, 88, at(0))
	v := 88.0
	want := []Event{{
		AlarmID: "spo2-low/ox", EventID: "e1", Phase: PhaseStart, Kind: Physiological, Priority: Medium, State: Active,
		Metric: "spo2", Value: &v, Unit: "%", Limit: limit(90), Condition: "below",
		Text: "** spo2 88 % (limit: at or below 90 %), ox, room 3: active",
		Room: "3", Device: "ox", Onset: at(0), Sent: at(0),
	}}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("start event\n got %+v\nwant %+v", got, want)
	}
	// Events own their value: a later reading must not change an event
	// already handed out.
	a.Observe(LevelMet, 80, at(1))
	if *got[0].Value != 88 {
		t.Errorf("emitted event's value changed to %v", *got[0].Value)
	}
	evs, err := a.Acknowledge("nurse-a", "pushover", at(2))
	if err != nil {
		t.Fatal(err)
	}
	if want := "** spo2 80 % (limit: at or below 90 %), ox, room 3: acknowledged by nurse-a via pushover"; evs[0].Text != want {
		t.Errorf("ack text %q, want %q", evs[0].Text, want)
	}
	cur, ok := a.Current()
	if !ok || cur.State != Acknowledged || cur.EventID != "e1" {
		t.Errorf("Current() = %+v, %v", cur, ok)
	}
	evs = a.Observe(LevelClear, 95, at(3))
	if want := "** spo2 80 % (limit: at or below 90 %), ox, room 3: resolved by nurse-a via pushover"; len(evs) != 1 || evs[0].Text != want {
		t.Errorf("end events %q, want text %q", briefs(evs), want)
	}
	if _, ok := a.Current(); ok {
		t.Error("Current() reports a resolved alarm")
	}
}

func TestAlarmTexts(t *testing.T) {
	hi := NewAlarm(alarmConfig(High, 0, 0, true), counterIDs())
	hi.HoldBack(true, at(0))
	evs := hi.Observe(LevelMet, 84, at(0))
	if want := "** spo2 84 % (limit: at or below 90 %), ox, room 3: active; " + HeldBackNote; evs[0].Text != want {
		t.Errorf("held text %q, want %q", evs[0].Text, want)
	}
	if !IsHeldBack(evs[0]) {
		t.Error("IsHeldBack false for a held event")
	}
	evs = hi.Observe(LevelClear, 95, at(1))
	if want := "** spo2 84 % (limit: at or below 90 %), ox, room 3: latched, condition ended; acknowledge to clear; " + HeldBackNote; evs[0].Text != want {
		t.Errorf("latched text %q, want %q", evs[0].Text, want)
	}
	evs = hi.HoldBack(false, at(2))
	if want := "*** spo2 84 % (limit: at or below 90 %), ox, room 3: latched, condition ended; acknowledge to clear"; evs[0].Text != want || IsHeldBack(evs[0]) {
		t.Errorf("released text %q, want %q", evs[0].Text, want)
	}

	tech := NewAlarm(AlarmConfig{ID: "sensor-off/ox", Kind: Technical, Priority: Low,
		Event: Event{Condition: "sensor-off", Device: "ox", Room: "3", Site: "clinic"}}, counterIDs())
	evs = tech.Observe(LevelMet, 0, at(0))
	want := Event{AlarmID: "sensor-off/ox", EventID: "e1", Phase: PhaseStart, Kind: Technical, Priority: Low, State: Active,
		Condition: "sensor-off", Text: "* sensor-off, ox, room 3: active", Site: "clinic", Room: "3", Device: "ox",
		Onset: at(0), Sent: at(0)}
	if len(evs) != 1 || !reflect.DeepEqual(evs[0], want) {
		t.Errorf("technical event\n got %+v\nwant %+v", evs, want)
	}
}

func TestLevelString(t *testing.T) {
	for l, want := range map[Level]string{LevelUnknown: "unknown", LevelClear: "clear", LevelMarginal: "marginal", LevelMet: "met", 9: "invalid"} {
		if l.String() != want {
			t.Errorf("%d.String() = %q, want %q", l, l.String(), want)
		}
	}
}
