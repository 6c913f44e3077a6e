package session

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"regexp"
	"strings"
	"testing"
)

func TestIDFormatAndUniqueness(t *testing.T) {
	form := regexp.MustCompile(`^s-[a-z2-7]{16}$`)
	seen := map[string]bool{}
	for range 20000 {
		id := NewID()
		if !form.MatchString(id) || !ValidID(id) {
			t.Fatalf("id %q", id)
		}
		if seen[id] {
			t.Fatalf("id %q generated twice", id)
		}
		seen[id] = true
	}
	// Two managers started at the same instant still get different ids:
	// nothing in the id comes from the time.
	a, _ := NewManager("room-1", DefaultProtocol())
	b, _ := NewManager("room-1", DefaultProtocol())
	sa, _, _ := a.Start("", "", at(0))
	sb, _, _ := b.Start("", "", at(0))
	if sa.ID == sb.ID {
		t.Errorf("same id %q", sa.ID)
	}
	for _, bad := range []string{"", "s-", "s-abcdefghijklmnop1", "s-ABCDEFGHIJKLMNOP", "x-abcdefghijklmnop",
		"s-abcdefghijklmno", "s-abcdefghijklmnopq", "s-abcdefghijklmn0p", "s-abcdefghijklmnó"} {
		if ValidID(bad) {
			t.Errorf("ValidID(%q) = true", bad)
		}
	}
}

// fullSession returns an ended session that has every field set.
func fullSession(t *testing.T, ref string) Session {
	t.Helper()
	m := newTestManager(t)
	if _, _, err := m.Start("iv", ref, at(-10)); err != nil {
		t.Fatal(err)
	}
	oximeter(m, 98, 72, at(-5))
	bp(m, 150, 95, at(-5))
	m.Dose(at(0))
	m.Dose(at(5))
	m.Tick(at(40))
	bp(m, 160, 98, at(41))
	m.Tick(at(56))
	m.Tick(at(62))
	bp(m, 150, 90, at(64))
	oximeter(m, 96, 80, at(100))
	s, _, err := m.End(at(100))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestJSONNeverPublishesClinicRef(t *testing.T) {
	const ref = "CHART-0042-Müller"
	s := fullSession(t, ref)

	public, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(public, []byte("CHART-0042")) || bytes.Contains(public, []byte("clinic_ref")) {
		t.Errorf("public JSON has the clinic reference: %s", public)
	}
	// Inside another value (an API response, an MQTT payload) too.
	wrapped, _ := json.Marshal(map[string]any{"session": s, "ptr": &s, "list": []Session{s}})
	if bytes.Contains(wrapped, []byte("CHART-0042")) {
		t.Errorf("wrapped JSON has the clinic reference: %s", wrapped)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(public, &fields); err != nil {
		t.Fatal(err)
	}
	if _, ok := fields["latest"]; ok {
		t.Errorf("public JSON has the stored-only latest values")
	}
	for _, f := range []string{"id", "room", "route", "started", "doses", "ended", "baseline", "baseline_warning", "schedule", "check"} {
		if _, ok := fields[f]; !ok {
			t.Errorf("public JSON lacks %q: %s", f, public)
		}
	}

	stored, err := s.StoredJSON()
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(stored, []byte(ref)) {
		t.Errorf("stored JSON lacks the clinic reference: %s", stored)
	}
	back, err := UnmarshalStored(stored)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, s) {
		t.Errorf("stored round trip differs:\n got %+v\nwant %+v", back, s)
	}
	// The public form reads back too, without the reference.
	var pub Session
	if err := json.Unmarshal(public, &pub); err != nil {
		t.Fatal(err)
	}
	if pub.ClinicRef != "" || pub.ID != s.ID || !reflect.DeepEqual(pub.Check, s.Check) ||
		!reflect.DeepEqual(pub.Schedule, s.Schedule) {
		t.Errorf("public round trip: %+v", pub)
	}
}

// A session printed or logged by mistake does not show the reference.
func TestClinicRefHiddenFromLogsAndPrinting(t *testing.T) {
	const ref = "CHART-0042"
	s := fullSession(t, ref)
	printed := []string{
		fmt.Sprint(s), fmt.Sprintf("%v", s), fmt.Sprintf("%+v", s), fmt.Sprintf("%#v", s),
		fmt.Sprintf("%s", s.ClinicRef), fmt.Sprintf("%q", s.ClinicRef), fmt.Sprintf("%x", s.ClinicRef),
		s.ClinicRef.String(), s.ClinicRef.GoString(),
	}
	for _, h := range []func(*bytes.Buffer) slog.Handler{
		func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
		func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
	} {
		var buf bytes.Buffer
		log := slog.New(h(&buf))
		log.Info("session", "session", s, "ref", s.ClinicRef, "ptr", &s)
		printed = append(printed, buf.String())
	}
	for _, p := range printed {
		if strings.Contains(p, ref) || strings.Contains(p, fmt.Sprintf("%x", ref)) {
			t.Errorf("clinic reference shown: %s", p)
		}
	}
	if !strings.Contains(printed[len(printed)-1], s.ID) {
		t.Errorf("the log lacks the session id: %s", printed[len(printed)-1])
	}
	if s.ClinicRef.Reveal() != ref {
		t.Errorf("Reveal %q", s.ClinicRef.Reveal())
	}
}

func TestUnmarshalStoredRefusesBadRecords(t *testing.T) {
	good := fullSession(t, "A1")
	stored, _ := good.StoredJSON()
	var base map[string]any
	if err := json.Unmarshal(stored, &base); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		field string
		edit  func(m map[string]any)
	}{
		{"id", func(m map[string]any) { m["id"] = "2025-03-14T10:00" }},
		{"room", func(m map[string]any) { m["room"] = "" }},
		{"route", func(m map[string]any) { m["route"] = "oral" }},
		{"clinic_ref", func(m map[string]any) { m["clinic_ref"] = strings.Repeat("x", 65) }},
		{"started", func(m map[string]any) { delete(m, "started") }},
		{"doses", func(m map[string]any) { m["doses"] = []string{"2025-03-14T10:05:00Z", "2025-03-14T10:00:00Z"} }},
		{"doses", func(m map[string]any) { m["doses"] = []string{"2025-03-14T09:00:00Z"} }},
		{"ended", func(m map[string]any) { m["ended"] = "2025-03-14T10:01:00Z" }},
		{"baseline", func(m map[string]any) {
			m["baseline"] = map[string]any{"spo2": map[string]any{"value": 140, "at": "2025-03-14T09:55:00Z"}}
		}},
		{"baseline", func(m map[string]any) { m["baseline"] = map[string]any{"weight": map[string]any{"value": 70}} }},
		{"latest", func(m map[string]any) { m["latest"] = map[string]any{"nibp_systolic": map[string]any{"value": -1}} }},
		{"schedule", func(m map[string]any) {
			m["schedule"] = map[string]any{"missed_count": 0, "missed": []string{"2025-03-14T10:40:00Z"}}
		}},
	}
	for _, tc := range cases {
		m := map[string]any{}
		for k, v := range base {
			m[k] = v
		}
		tc.edit(m)
		data, _ := json.Marshal(m)
		_, err := UnmarshalStored(data)
		var ie *InputError
		if !errors.As(err, &ie) || ie.Field != tc.field {
			t.Errorf("%s: %v", tc.field, err)
		}
	}
	for _, junk := range []string{"", "null", "[]", `{"id":`, `"s-aaaaaaaaaaaaaaaa"`} {
		if _, err := UnmarshalStored([]byte(junk)); err == nil {
			t.Errorf("%q accepted", junk)
		}
	}
}

// After a restart, the stored session continues: the schedule goes on where
// it was, the baselines go back to the alarm engine, a missed-reading
// advisory that was on is raised again.
func TestRestoreContinuesSchedule(t *testing.T) {
	m := newTestManager(t)
	started(t, m, 120, 80)
	m.Dose(at(0))
	m.Tick(at(40))
	bp(m, 130, 85, at(41)) // next due T+56
	oximeter(m, 97, 74, at(42))
	s := mustActive(t, m)
	stored, err := s.StoredJSON()
	if err != nil {
		t.Fatal(err)
	}

	// The agent restarts.
	back, err := UnmarshalStored(stored)
	if err != nil {
		t.Fatal(err)
	}
	m2 := newTestManager(t)
	acts, err := m2.Restore(back)
	if err != nil {
		t.Fatal(err)
	}
	wantKinds(t, "restore", acts, "Baselines,SessionChanged")
	if b, _ := find[Baselines](acts); b.Values["nibp_systolic"].Value != 120 || b.Values["nibp_systolic"].Device != "bp" {
		t.Errorf("baselines %+v", b)
	}
	if due, ok := m2.NextNIBPDue(); !ok || !due.Equal(at(56)) {
		t.Fatalf("next due %v", due)
	}
	wantKinds(t, "T+56", m2.Tick(at(56)), "StartNIBP,SessionChanged")
	wantKinds(t, "T+62", m2.Tick(at(62)), "MissedNIBP(on),SessionChanged")

	// Restarted again while the advisory is on: it is raised again.
	s2 := mustActive(t, m2)
	stored2, _ := s2.StoredJSON()
	back2, err := UnmarshalStored(stored2)
	if err != nil {
		t.Fatal(err)
	}
	m3 := newTestManager(t)
	acts, err = m3.Restore(back2)
	if err != nil {
		t.Fatal(err)
	}
	wantKinds(t, "restore with advisory", acts, "Baselines,MissedNIBP(on),SessionChanged")
	if a, _ := find[MissedNIBP](acts); !a.Due.Equal(at(56)) {
		t.Errorf("advisory due %v", a.Due)
	}
	if acts := m3.Tick(at(63)); acts != nil {
		t.Errorf("T+63: %s", kinds(acts))
	}
	wantKinds(t, "late reading", bp(m3, 125, 80, at(64)), "MissedNIBP(off),SessionChanged,SessionChanged,SessionChanged")
	// The latest values survived both restarts: the end check has them.
	end, _, _ := m3.End(at(125))
	if v := vital(t, end.Check, "spo2"); v.Result != ResultPass || v.Latest == nil || v.Latest.Value != 97 {
		t.Errorf("spo2 %+v", v)
	}
}

// A restart between the baseline reading and the dose keeps the baseline
// blood pressure (it is stored at once).
func TestRestoreBeforeDoseKeepsBaselineBP(t *testing.T) {
	m := newTestManager(t)
	if _, _, err := m.Start("", "", at(-10)); err != nil {
		t.Fatal(err)
	}
	acts := bp(m, 128, 84, at(-5))
	last, ok := find[SessionChanged](acts[len(acts)-1:])
	if !ok {
		t.Fatalf("no SessionChanged after the baseline reading: %s", kinds(acts))
	}
	stored, _ := last.Session.StoredJSON()
	back, err := UnmarshalStored(stored)
	if err != nil {
		t.Fatal(err)
	}
	m2 := newTestManager(t)
	if acts, err := m2.Restore(back); err != nil || kinds(acts) != "SessionChanged" {
		t.Fatalf("restore: %v %s", err, kinds(acts))
	}
	oximeter(m2, 98, 70, at(-1))
	m2.Dose(at(0))
	s := mustActive(t, m2)
	if s.Baseline["nibp_systolic"].Value != 128 || s.Baseline["nibp_diastolic"].Value != 84 || len(s.BaselineMissing) != 0 {
		t.Errorf("baseline %+v missing %v", s.Baseline, s.BaselineMissing)
	}
}

func TestRestoreRefuses(t *testing.T) {
	m := newTestManager(t)
	active, _, _ := m.Start("", "", at(0))
	ended := fullSession(t, "")
	other := active
	other.Room = "room-2"
	bad := active
	bad.ID = "not-an-id"

	fresh := newTestManager(t)
	for _, tc := range []struct {
		name string
		s    Session
		want error
	}{
		{"ended", ended, ErrEnded},
		{"other room", other, ErrWrongRoom},
	} {
		if _, err := fresh.Restore(tc.s); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	if _, err := fresh.Restore(bad); !IsInput(err) {
		t.Errorf("bad id: %v", err)
	}
	if _, err := m.Restore(active); !errors.Is(err, ErrActive) {
		t.Errorf("over an active session: %v", err)
	}
	if _, ok := fresh.Active(); ok {
		t.Error("a refused Restore left a session")
	}
}

func TestSessionChangedCarriesTheSession(t *testing.T) {
	m := newTestManager(t)
	s, acts, _ := m.Start("lozenge", "R-9", at(0))
	ch, ok := find[SessionChanged](acts)
	if !ok || !reflect.DeepEqual(ch.Session, s) || ch.Session.ClinicRef.Reveal() != "R-9" {
		t.Errorf("SessionChanged %+v", ch)
	}
	_, acts, _ = m.End(at(1))
	ch, _ = find[SessionChanged](acts)
	if ch.Session.Ended.IsZero() || ch.Session.Check == nil {
		t.Errorf("SessionChanged at end %+v", ch.Session)
	}
}

func TestBaselineMetrics(t *testing.T) {
	if got := strings.Join(BaselineMetrics(), ","); got != "spo2,pulse_rate,nibp_systolic,nibp_diastolic,nibp_mean" {
		t.Errorf("BaselineMetrics %s", got)
	}
	// Every one is a catalogue metric with a possible value.
	for _, metric := range BaselineMetrics() {
		if !usable(metric, 50) {
			t.Errorf("%s: 50 not usable", metric)
		}
	}
}
